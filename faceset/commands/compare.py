"""``faceset compare RUN [RUN ...] --out DIR [--reference now|micc|facewarehouse|none]``.

Reads the ``--out`` folders of ``faceset evaluate`` (and the per-method folders of
``faceset benchmark``) and writes one table of all their methods (``comparison.md``,
``.csv``, ``.tex``: methods as rows, challenge x median / mean / std as columns), their
cumulative error curves in one figure (``cumulative_errors.png``) and one bar chart per
challenge (``bars_<challenge>.png``). Runs of different protocols or datasets are refused.

``--reference`` adds the published numbers of the original and its peers (the NoW
leaderboard; MICC Florence or FaceWarehouse under the Deep3DFace protocol) as labelled
reference rows with their source: other people's results on other data, never ranked,
plotted or averaged with the measured rows.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from evaluation.references import REFERENCE_SETS
from faceset.commands import CommandOptions

REFERENCES = ("none", *REFERENCE_SETS)


@dataclass
class CompareCommand(CommandOptions):
    """``faceset compare``'s options: runs, the evaluate / benchmark output folders; out, the
    output folder; reference: published rows to add ("none" or a protocol); digits: decimals."""

    runs: list[Path]
    out: Path
    reference: str = "none"
    digits: int = 2

    def run(self) -> int:
        from evaluation.compare import compare_runs

        comparison = compare_runs(self.runs, self.reference)
        written = comparison.write(self.out, self.digits)
        print(comparison.to_markdown(self.digits))
        for result in comparison.results:
            if result.problems:
                names = ", ".join(p["name"] for p in result.problems[:5])
                more = f" and {len(result.problems) - 5} more" if len(result.problems) > 5 else ""
                print(f"{result.label}: {len(result.problems)} missing or failed ({names}{more})")
        print(f"wrote {len(written)} files to {self.out}")
        return 0


def register(subparsers) -> None:
    defaults = CompareCommand   # its class attributes are the field defaults
    parser = subparsers.add_parser(
        "compare", help="one table and figures from several evaluate / benchmark runs",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                        help="output folders of 'faceset evaluate' (or of benchmark methods)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--reference", default=defaults.reference, choices=REFERENCES,
                        help=f"add published reference rows (default {defaults.reference}); 'micc' on "
                             "FaceWarehouse runs gives the FaceWarehouse numbers")
    parser.add_argument("--digits", type=int, default=defaults.digits,
                        help=f"decimals in the tables (default {defaults.digits})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return CompareCommand.from_args(args).run()

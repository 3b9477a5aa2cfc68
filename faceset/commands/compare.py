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
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="one table and figures from several evaluate / benchmark runs",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                        help="output folders of 'faceset evaluate' (or of benchmark methods)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--reference", default="none",
                        choices=("none", "now", "micc", "facewarehouse"),
                        help="add published reference rows (default none); 'micc' on "
                             "FaceWarehouse runs gives the FaceWarehouse numbers")
    parser.add_argument("--digits", type=int, default=2, help="decimals in the tables (default 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evaluation.compare import compare_runs

    comparison = compare_runs(args.runs, args.reference)
    written = comparison.write(args.out, args.digits)
    print(comparison.to_markdown(args.digits))
    for result in comparison.results:
        if result.problems:
            names = ", ".join(p["name"] for p in result.problems[:5])
            more = f" and {len(result.problems) - 5} more" if len(result.problems) > 5 else ""
            print(f"{result.label}: {len(result.problems)} missing or failed ({names}{more})")
    print(f"wrote {len(written)} files to {args.out}")
    return 0

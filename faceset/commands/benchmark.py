"""``faceset benchmark DATASET --methods LIST --out DIR [--quick]``.

Runs reconstruction pipelines on a NoW-layout dataset (the NoW validation set, or a
generated one from ``faceset synth``) and scores each with the NoW protocol; one result
folder per method under ``--out`` (what ``faceset compare`` reads), each subject's
``report.html`` for the ``subject`` method, and ``comparison/`` with the table and figures
of all methods. Photos a method could not use are counted and named (``failures.json``,
the per-image CSV and the printout), never dropped silently. See ``faceset.benchmark``.

    faceset benchmark DATA --methods mean-face,landmarks,fit,subject,aggregate-confidence --out OUT
    faceset benchmark DATA --methods all --checkpoint epoch_20.pth --out OUT
    faceset benchmark DATA --methods mean-face,landmarks,fit,subject --out OUT --quick
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from faceset.commands import CommandOptions, from_args
from faceset.options import METHODS, QUICK_ITERATIONS, QUICK_PHOTOS, QUICK_SUBJECTS, BenchmarkOptions


@dataclass
class BenchmarkCommand(CommandOptions):
    """``faceset benchmark``'s options: dataset, the NoW-layout folder; methods: a comma-separated
    list of ``METHODS`` or "all"; out: the output folder; imagepaths / images: the image list
    and the photos' folder (None: found in the dataset); quick: a tiny run
    (``QUICK_SUBJECTS`` x ``QUICK_PHOTOS``, ``QUICK_ITERATIONS`` steps, unless given);
    options: the run's ``BenchmarkOptions``."""

    dataset: Path
    methods: str
    out: Path
    imagepaths: Optional[Path] = None
    images: Optional[Path] = None
    quick: bool = False
    options: BenchmarkOptions = field(default_factory=BenchmarkOptions)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "BenchmarkCommand":
        return from_args(cls, args, options=from_args(BenchmarkOptions, args, show_progress=not args.quiet))

    def method_list(self) -> list[str]:
        if self.methods.strip() == "all":
            return [m for m in METHODS if m != "rnet" or self.options.checkpoint is not None]
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    def run_options(self) -> BenchmarkOptions:
        """``options`` with --quick's sizes where none was given."""
        if not self.quick:
            return self.options
        return replace(self.options, subjects=self.options.subjects or QUICK_SUBJECTS,
                       photos=self.options.photos or QUICK_PHOTOS,
                       iterations=self.options.iterations or QUICK_ITERATIONS)

    def run(self) -> int:
        from faceset.benchmark import run_benchmark

        outcomes = run_benchmark(self.dataset, self.method_list(), self.out, self.run_options(),
                                 self.imagepaths, self.images)
        failed = {m: len(o.failed) for m, o in outcomes.items() if o.failed}
        if failed:
            print("photos without a prediction: " + ", ".join(f"{m} {n}" for m, n in failed.items())
                  + " (see <method>/failures.json)")
        print(f"results in {self.out}; compare with: faceset compare {self.out}/<method> ... --out DIR")
        return 0


def register(subparsers) -> None:
    from faceset.commands.reconstruct import add_renderer_backend_option

    parser = subparsers.add_parser(
        "benchmark", help="run pipelines on a NoW-layout dataset and score each (NoW protocol)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, metavar="DATASET",
                        help="NoW-layout folder: scans/, scans_lmks_onlypp/ and the photos")
    parser.add_argument("--methods", required=True,
                        help=f"comma-separated among {', '.join(METHODS)}, or 'all' "
                             "(all but rnet unless --checkpoint is given)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--imagepaths", type=Path, default=BenchmarkCommand.imagepaths,
                        help="NoW image list (default: DATASET/imagepathsvalidation.txt when present)")
    parser.add_argument("--images", type=Path, default=BenchmarkCommand.images,
                        help="folder of <subject>/<challenge>/<image> photos (default: "
                             "DATASET/iphone_pictures or DATASET/final_release_version/iphone_pictures)")
    defaults = BenchmarkOptions()
    parser.add_argument("--checkpoint", type=Path, default=defaults.checkpoint,
                        help="R-Net weights for the rnet method")
    parser.add_argument("--bfm", type=Path, default=defaults.bfm, help="BFM folder (default: the embedded model)")
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or auto (default)")
    add_renderer_backend_option(parser, defaults.renderer_backend)
    parser.add_argument("--iters", type=int, default=defaults.iterations, dest="iterations", metavar="ITERS",
                        help="fitting steps for fit and subject (default: the fit's schedule)")
    parser.add_argument("--subjects", type=int, default=defaults.subjects, help="only the first N subjects")
    parser.add_argument("--photos", type=int, default=defaults.photos,
                        help="only the first N photos of each subject")
    parser.add_argument("--quick", action="store_true", default=BenchmarkCommand.quick,
                        help=f"a tiny run: {QUICK_SUBJECTS} subjects x {QUICK_PHOTOS} photos, "
                             f"{QUICK_ITERATIONS} fitting steps (unless given)")
    parser.add_argument("--quiet", action="store_true", default=not defaults.show_progress,
                        help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return BenchmarkCommand.from_args(args).run()

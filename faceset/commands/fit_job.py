"""The fit jobs behind ``faceset reconstruct --subject`` and ``faceset fit``: their options
(``faceset.options.FitFlags``, one per flag), converted once from the parsed arguments
(``FitJob.from_args``), and the run that prints the summary. The job itself is
``faceset.subject.refine_folder``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from faceset.commands import from_args
from faceset.options import AGGREGATE_METHODS, IDENTITY_ENCODERS, FitFlags, ReconstructOptions

FIT_DEFAULTS = FitFlags()


def add_fit_options(parser: argparse.ArgumentParser) -> None:
    """Options of the analysis-by-synthesis fit (``--subject`` and ``faceset fit``), one per
    field of ``FitFlags``."""
    parser.add_argument("--iters", type=int, default=FIT_DEFAULTS.iters,
                        help="total fitting steps over the pyramid levels (default 130)")
    parser.add_argument("--identity", default=FIT_DEFAULTS.identity, choices=IDENTITY_ENCODERS,
                        help="add the identity-feature loss with this face-recognition network")
    parser.add_argument("--arcface", type=Path, default=FIT_DEFAULTS.arcface,
                        help="insightface backbone.pth for --identity arcface "
                             "(default: $FACESET_ARCFACE)")
    parser.add_argument("--no-silhouette", action="store_true", default=FIT_DEFAULTS.no_silhouette,
                        help="the original's photometric term only (the face's interior; by default "
                             "the outline against the photo also counts)")
    parser.add_argument("--no-contrast", action="store_true", default=FIT_DEFAULTS.no_contrast,
                        help="without the log-contrast term (shading compared independently of the "
                             "overall brightness; with --no-silhouette: the original's objective)")
    parser.add_argument("--lpips", action="store_true", default=FIT_DEFAULTS.lpips,
                        help="add LPIPS before / after to fit_report.json (lpips extra; fetches "
                             "AlexNet weights at first use)")
    parser.add_argument("--aggregate", default=FIT_DEFAULTS.aggregate, choices=AGGREGATE_METHODS,
                        help="how one identity is fused over the photos (the subject fit's start; "
                             "per image, fused.obj): mean, confidence (default: landmark-information "
                             "weighted) or cnet (a trained C-Net, --cnet; needs the R-Net it was "
                             "trained with)")
    parser.add_argument("--cnet", default=FIT_DEFAULTS.cnet, metavar="NAME|FILE",
                        help="C-Net for --aggregate cnet: a file, or a name saved by 'faceset "
                             "train-cnet' ($FACESET_CACHE/cnet/NAME.pth)")


def refuse_fit_flags(args: argparse.Namespace, why: str) -> None:
    """Refuse fit options given to a command that does not fit (instead of ignoring them)."""
    given = from_args(FitFlags, args).given()
    if given:
        raise ValueError(f"{', '.join(given)}: option(s) of the fit, but {why} "
                         "(add --subject, or use 'faceset fit')")


@dataclass
class FitJob:
    """One fit job: the photos of ``img_dir`` into ``out``; joint: one shared identity
    (``--subject``), else per photo; resume: refine ``out``'s existing outputs."""

    img_dir: Path
    out: Path
    joint: bool
    model: ReconstructOptions = field(default_factory=ReconstructOptions)
    fit: FitFlags = field(default_factory=FitFlags)
    resume: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, joint: bool) -> "FitJob":
        from faceset.commands.reconstruct import model_options
        fit = from_args(FitFlags, args)
        if (fit.aggregate == "cnet") != (fit.cnet is not None):
            raise ValueError("--aggregate cnet and --cnet NAME|FILE go together (the C-Net fuses "
                             "the identity)")
        return cls(img_dir=args.img_dir, out=args.out, joint=joint, model=model_options(args),
                   fit=fit, resume=getattr(args, "resume", False))

    def subject_options(self):
        """The ``faceset.subject.SubjectOptions`` of this job."""
        from faceset.subject import SubjectOptions
        return SubjectOptions(reconstruct=self.model, flags=self.fit, resume=self.resume)

    def run(self) -> int:
        """Fit, write, print the summary; exit code 1 when some photo failed."""
        import json

        import numpy as np

        from faceset.errors import prepare_output_dir
        from faceset.fit_report import LANDMARK_RMSE_NOTE, REPORT_NAME
        from faceset.subject import AlreadyDone, refine_folder
        prepare_output_dir(self.out)
        try:
            result = refine_folder(self.img_dir, self.out, self.subject_options(), joint=self.joint)
        except AlreadyDone as done:
            print(done)
            return 0
        report = json.loads((Path(self.out) / REPORT_NAME).read_text())
        before = np.mean(report["landmark_rmse_px_before"])
        after = np.mean(report["landmark_rmse_px_after"])
        print(f"fitted {len(result.stems)} photo(s) in {result.fit.seconds:.1f} s "
              f"({'one shared identity' if self.joint else 'per image'}); "
              f"landmark RMSE {before:.2f} -> {after:.2f} px")
        if after > before:
            print(f"  (landmark RMSE rose: {LANDMARK_RMSE_NOTE})")
        for name, lines in result.notes.items():
            for line in lines:
                print(f"  note: {name}: {line}")
        for name, reason in result.failed.items():
            print(f"  skipped {name}: {reason}")
        print(f"outputs in {self.out}")
        return 1 if result.failed else 0

"""``faceset fit IMG_DIR --out OUT [--subject] [--iters N] [--checkpoint ...] [--bfm ...]``."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from faceset.commands.reconstruct import add_photo_job_arguments

    parser = subparsers.add_parser(
        "fit", help="refine reconstructions by analysis-by-synthesis (per photo or per subject)",
        description="Fit coefficients to every photo of IMG_DIR through the differentiable "
                    "renderer (photometric, landmark and prior terms of the original's training "
                    "loss), coarse to fine. Starts from R-Net (--checkpoint), else the landmark "
                    "initialiser, or from OUT/<stem>.mat with --resume. With --subject one "
                    "identity and albedo are shared by all photos. Writes the reconstruct "
                    "outputs plus fit_report.json, fit_losses.png and fit_overlays.png, and "
                    "subject.obj/.mat (--subject: the shared identity) or fused.obj/.mat "
                    "(per photo: the fitted identities fused afterwards). Finished outputs "
                    "are not overwritten without --overwrite (or --resume).")
    add_photo_job_arguments(parser, "all photos show one person: fit one shared identity and albedo",
                            resume=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from faceset.commands.fit_job import FitJob

    if args.iters is not None and args.iters < 3:
        raise ValueError("--iters must be at least 3 (one step per pyramid level)")
    return FitJob.from_args(args, joint=args.subject).run()

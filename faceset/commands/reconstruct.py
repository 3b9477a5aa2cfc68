"""``faceset reconstruct``: per-image reconstruction of a photo folder (or a whole subject).

The parsed arguments become ``faceset.options.ReconstructOptions`` (and, with ``--subject``,
a ``faceset.commands.fit_job.FitJob``) here, once; the defaults of the options come from
those dataclasses.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path

from faceset.options import (ARCHITECTURES, DETECTORS, INIT_CHOICES, LANDMARK_CHOICES,
                             RENDERER_BACKENDS, ReconstructOptions, check_init)

DEFAULTS = ReconstructOptions()


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the commands that run the face model: one per field of
    ``ReconstructOptions`` (``model_options`` converts them)."""
    parser.add_argument("--checkpoint", type=Path, default=DEFAULTS.checkpoint,
                        help="R-Net checkpoint (the original's epoch_20.pth, or one 'faceset train' "
                             "wrote); default: see --init")
    parser.add_argument("--init", default=DEFAULTS.init, choices=INIT_CHOICES,
                        help="initial coefficients: auto (default: the R-Net of --checkpoint, else "
                             "the shipped R-Net when it fits the face model and its sidecar makes it "
                             "the default, as the embedded model's does, else the landmark initialiser), "
                             "rnet (--checkpoint or the shipped R-Net, or an error saying why there "
                             "is none) or landmarks (the landmark initialiser, no network)")
    parser.add_argument("--arch", default=DEFAULTS.arch, choices=ARCHITECTURES,
                        help=f"R-Net backbone of --checkpoint (default {DEFAULTS.arch}, the original's; "
                             "as 'faceset train --arch' wrote it)")
    parser.add_argument("--bfm", type=Path, default=DEFAULTS.bfm,
                        help="BFM folder (01_MorphableModel.mat, Exp_Pca.bin and the original's "
                             "helper files; converted on first use) or BFM_model_front.mat; "
                             "default: the embedded procedural model")
    parser.add_argument("--device", default=DEFAULTS.device, help="cpu, cuda or auto (default)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                        help=f"photos per batch (default {DEFAULTS.batch_size})")
    add_renderer_backend_option(parser, DEFAULTS.renderer_backend)
    parser.add_argument("--face", type=int, default=DEFAULTS.face_index, dest="face_index", metavar="N",
                        help="with several faces in a photo: 0 = the largest (default), 1 = the "
                             "next...; the choice is noted in the summary")
    parser.add_argument("--detector", default=DEFAULTS.detector, choices=DETECTORS,
                        help="face detector for photos without a detection file: mediapipe (default, "
                             "offline, 478 dense points; dlib where it finds no face), dlib (offline) "
                             "or insightface (extra; downloads its models at first use)")
    parser.add_argument("--landmarks", default=DEFAULTS.landmarks, choices=LANDMARK_CHOICES,
                        help="landmark targets: auto (default: mediapipe's 478 points where every "
                             "photo has them, else the 68) or 68 (the original's iBUG points)")
    parser.add_argument("--slide-contour", action="store_true", default=DEFAULTS.slide_contour,
                        help="the landmark initialiser's jaw-line points slide along the silhouette")
    parser.add_argument("--no-exif-focal", dest="exif_focal", action="store_false",
                        default=DEFAULTS.exif_focal,
                        help="the original's camera for every photo, instead of each photo's own "
                             "from its EXIF focal length where present")
    parser.add_argument("--overwrite", action="store_true", default=DEFAULTS.overwrite,
                        help="redo photos whose outputs exist")


def add_renderer_backend_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--renderer-backend`` (also ``--renderer``): the option ``renderer_backend`` of every
    options dataclass, handed to ``recon.render`` as its ``backend``."""
    parser.add_argument("--renderer-backend", "--renderer", dest="renderer_backend", default=default,
                        choices=RENDERER_BACKENDS, metavar="BACKEND",
                        help=f"rasterizer backend: {', '.join(RENDERER_BACKENDS)} (default {default}: "
                             "nvdiffrast on CUDA when installed, else torch)")


def model_options(args: argparse.Namespace) -> ReconstructOptions:
    """The ``add_model_options`` arguments as ReconstructOptions (checked)."""
    options = ReconstructOptions(**{f.name: getattr(args, f.name) for f in fields(ReconstructOptions)})
    if options.face_index < 0:
        raise ValueError(f"--face must be 0 or more, got {options.face_index}")
    check_init(options)
    return options


def add_photo_job_arguments(parser: argparse.ArgumentParser, subject_help: str,
                            resume: bool = False) -> None:
    """What ``reconstruct`` and ``fit`` share: IMG_DIR, --out, --subject (``subject_help``),
    with ``resume`` ``faceset fit``'s --resume, then the fit and the model options."""
    from faceset.commands.fit_job import add_fit_options

    parser.add_argument("img_dir", type=Path, metavar="IMG_DIR")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--subject", action="store_true", help=subject_help)
    if resume:
        parser.add_argument("--resume", action="store_true",
                            help="start from OUT/<stem>.mat where it exists and refine the outputs "
                                 "in place (an unusable .mat is reported and that photo starts "
                                 "from scratch)")
    add_fit_options(parser)
    add_model_options(parser)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reconstruct", help="reconstruct every photo of a folder",
        description="Reconstruct every *.jpg/*.png of IMG_DIR (using IMG_DIR/detections/<stem>.txt "
                    "when present, else dlib). Writes <stem>.obj/.mat/.png like the original, plus "
                    "<stem>_canonical.obj and <stem>_transform.json. With --subject, fuses one "
                    "identity across all photos and fits it jointly.")
    add_photo_job_arguments(parser, "all photos show one person: aggregate and fit one identity")
    parser.set_defaults(func=run)


@dataclass
class ReconstructCommand:
    """``faceset reconstruct IMG_DIR --out OUT`` without ``--subject``."""

    img_dir: Path
    out: Path
    options: ReconstructOptions = field(default_factory=ReconstructOptions)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ReconstructCommand":
        from faceset.commands.fit_job import refuse_fit_flags
        refuse_fit_flags(args, "reconstruct without --subject fits nothing")
        return cls(img_dir=args.img_dir, out=args.out, options=model_options(args))

    def run(self) -> int:
        from faceset.errors import prepare_output_dir
        from faceset.pipeline import reconstruct_folder
        prepare_output_dir(self.out)
        report = reconstruct_folder(self.img_dir, self.out, self.options)
        print(report.summary())
        print(f"outputs in {self.out}")
        return 1 if report.failed else 0


def run(args: argparse.Namespace) -> int:
    if args.subject:
        from faceset.commands.fit_job import FitJob
        return FitJob.from_args(args, joint=True).run()
    return ReconstructCommand.from_args(args).run()

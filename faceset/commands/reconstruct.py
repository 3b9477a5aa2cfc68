"""``faceset reconstruct``: per-image reconstruction of a photo folder (or a whole subject)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the commands that run the face model."""
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the original's R-Net checkpoint (epoch_20.pth); default: "
                             "landmark initialiser, no network")
    parser.add_argument("--arch", default="resnet50", choices=("resnet50", "resnet18", "mobilenet_v3_small"),
                        help="R-Net backbone of --checkpoint (default resnet50, the original's; "
                             "as 'faceset train --arch' wrote it)")
    parser.add_argument("--bfm", type=Path, default=None,
                        help="BFM folder (01_MorphableModel.mat, Exp_Pca.bin and the original's "
                             "helper files; converted on first use) or BFM_model_front.mat; "
                             "default: the embedded procedural model")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per batch (default 8)")
    parser.add_argument("--renderer", default="auto", choices=("auto", "torch", "nvdiffrast", "pytorch3d"),
                        help="rasterizer backend (default: nvdiffrast on CUDA when installed, else torch)")
    parser.add_argument("--face", type=int, default=0, dest="face_index", metavar="N",
                        help="with several faces in a photo: 0 = the largest (default), 1 = the "
                             "next...; the choice is noted in the summary")
    parser.add_argument("--detector", default="mediapipe", choices=("mediapipe", "dlib", "insightface"),
                        help="face detector for photos without a detection file: mediapipe (default, "
                             "offline, 478 dense points; dlib where it finds no face), dlib (offline) "
                             "or insightface (extra; downloads its models at first use)")
    parser.add_argument("--overwrite", action="store_true", help="redo photos whose outputs exist")


def add_fit_options(parser: argparse.ArgumentParser) -> None:
    """Options of the analysis-by-synthesis fit (``--subject`` and ``faceset fit``)."""
    parser.add_argument("--iters", type=int, default=None,
                        help="total fitting steps over the pyramid levels (default 130)")
    parser.add_argument("--identity", default="none", choices=("none", "dlib", "arcface"),
                        help="add the identity-feature loss with this face-recognition network")
    parser.add_argument("--arcface", type=Path, default=None,
                        help="insightface backbone.pth for --identity arcface "
                             "(default: $FACESET_ARCFACE)")
    parser.add_argument("--no-silhouette", action="store_true",
                        help="the original's photometric term only (the face's interior; by default "
                             "the outline against the photo also counts)")
    parser.add_argument("--no-contrast", action="store_true",
                        help="without the log-contrast term (shading compared independently of the "
                             "overall brightness; with --no-silhouette: the original's objective)")
    parser.add_argument("--lpips", action="store_true",
                        help="add LPIPS before / after to fit_report.json (lpips extra; fetches "
                             "AlexNet weights at first use)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reconstruct", help="reconstruct every photo of a folder",
        description="Reconstruct every *.jpg/*.png of IMG_DIR (using IMG_DIR/detections/<stem>.txt "
                    "when present, else dlib). Writes <stem>.obj/.mat/.png like the original, plus "
                    "<stem>_canonical.obj and <stem>_transform.json. With --subject, fuses one "
                    "identity across all photos and fits it jointly.")
    parser.add_argument("img_dir", type=Path, metavar="IMG_DIR")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--subject", action="store_true",
                        help="all photos show one person: aggregate and fit one identity")
    add_fit_options(parser)
    add_model_options(parser)
    parser.set_defaults(func=run)


def options_from_args(args):
    from faceset.pipeline import ReconstructOptions
    return ReconstructOptions(checkpoint=args.checkpoint, bfm=args.bfm, device=args.device,
                              batch_size=args.batch_size, overwrite=args.overwrite,
                              backend=args.renderer, face_index=args.face_index,
                              detector=args.detector, arch=getattr(args, "arch", "resnet50"))


def run(args) -> int:
    from faceset.errors import prepare_output_dir
    if args.face_index < 0:
        raise ValueError(f"--face must be 0 or more, got {args.face_index}")
    prepare_output_dir(args.out)
    if args.subject:
        from faceset.subject import run_subject_command
        return run_subject_command(args)
    from faceset.pipeline import reconstruct_folder
    report = reconstruct_folder(args.img_dir, args.out, options_from_args(args))
    print(report.summary())
    print(f"outputs in {args.out}")
    return 1 if report.failed else 0

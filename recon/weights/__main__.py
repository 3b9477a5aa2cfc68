"""``python -m recon.weights add CHECKPOINT --arch ARCH --command "faceset train ..."``: make
a trained R-Net the shipped default for the face model it was trained with (the embedded
one unless ``--bfm``), in this package folder (or ``--folder``); ``python -m recon.weights
show [--bfm DIR]`` says which R-Net the face model gets and, when none, why."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from recon.constants import RNET_ARCHITECTURES
from recon.weights import add_shipped_rnet, find_shipped_rnet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recon.weights", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="ship a trained R-Net checkpoint")
    add.add_argument("checkpoint", type=Path, help="epoch_<N>.pth, or a 'faceset train' folder "
                                                   "(its epoch_latest.pth / newest epoch)")
    add.add_argument("--arch", required=True, choices=RNET_ARCHITECTURES)
    add.add_argument("--command", required=True, help="the training command line, as run")
    add.add_argument("--date", default=None, help="training date YYYY-MM-DD (default: the "
                                                  "checkpoint file's modification date)")
    add.add_argument("--name", default=None, help="file stem (default rnet_<arch>_<model name>)")
    add.add_argument("--not-default", default=None, metavar="WHY", dest="auto_note",
                     help="ship it for --init rnet only (--init auto keeps the landmark "
                          "initialiser), saying why")
    add.add_argument("--refit-pose", action="store_true",
                     help="its pose is coarse: jobs re-fit each photo's pose and expression to the "
                          "detected landmarks for its identity")
    show = sub.add_parser("show", help="which shipped R-Net a face model gets")
    for p in (add, show):
        p.add_argument("--bfm", type=Path, default=None, help="BFM folder (default: the embedded model)")
        p.add_argument("--folder", type=Path, default=None, help="weights folder (default: the package's)")
    args = parser.parse_args(argv)

    from recon.models import load_face_model
    face_model = load_face_model(args.bfm, "cpu")
    if args.action == "show":
        found, reason = find_shipped_rnet(face_model, args.folder)
        print(found.describe() + f": {found.path}" if found else f"none for {face_model.name}: {reason}")
        return 0 if found else 1
    checkpoint, extra = args.checkpoint, {}
    if checkpoint.is_dir():
        from recon.training.checkpoint import resume_path
        config = checkpoint / "train_config.json"
        if config.is_file():
            extra["train_config"] = json.loads(config.read_text())
        checkpoint = resume_path(checkpoint)
        if checkpoint is None:
            parser.error(f"{args.checkpoint}: no epoch_*.pth in this folder")
    try:
        date = args.date or datetime.date.fromtimestamp(checkpoint.stat().st_mtime).isoformat()
        shipped = add_shipped_rnet(checkpoint, args.arch, face_model, args.command, date,
                                   folder=args.folder, name=args.name, extra=extra,
                                   auto_note=args.auto_note, refit_pose=args.refit_pose)
    except (OSError, ValueError) as err:
        print(f"recon.weights add: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {shipped.path} ({shipped.path.stat().st_size / 2 ** 20:.1f} MB) and "
          f"{shipped.path.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

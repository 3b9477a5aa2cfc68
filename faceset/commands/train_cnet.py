"""``faceset train-cnet DATA_DIR [...] --checkpoint RNET (--name NAME | --out FILE)``: train
the image-set confidence network with R-Net frozen (``aggregation.cnet_training``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceset.commands.reconstruct import add_renderer_backend_option
from recon.constants import RNET_ARCHITECTURES as ARCHES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-cnet", help="train C-Net (identity fusion over photo sets) with R-Net frozen",
        description="Train the confidence network that fuses a person's identity and albedo "
                    "over their photos, label-free: for sets of 2-8 photos of one person, each "
                    "photo's R-Net coefficients with identity and albedo replaced by the "
                    "confidence-weighted mean go through the original's hybrid loss, summed "
                    "over the set. DATA_DIR: a photo folder of one person (photos with "
                    "landmarks/<stem>.txt) or a folder of such folders ('faceset synth' output: "
                    "<s>/images). A killed run resumes from its output file.")
    parser.add_argument("data_dirs", type=Path, nargs="+", metavar="DATA_DIR")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="the R-Net checkpoint (kept frozen; its features feed the C-Net)")
    parser.add_argument("--arch", default="resnet50", choices=ARCHES,
                        help="that R-Net's backbone (default resnet50)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--name", help="save as $FACESET_CACHE/cnet/NAME.pth (load it by NAME)")
    target.add_argument("--out", type=Path, help="save to this .pth file")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps, one set each (default 2000)")
    parser.add_argument("--min-photos", type=int, default=2, help="smallest set (default 2)")
    parser.add_argument("--max-photos", type=int, default=8, help="largest set (default 8)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--vertex-weight", type=float, default=0.0,
                        help="supervised term (per mm^2) on persons whose truth/subject.mat holds "
                             "model_vertices_mm ('faceset synth --realism photo'); default 0: label-free")
    parser.add_argument("--identity", default="none", choices=("none", "dlib", "arcface"),
                        help="network of the identity-feature term (default none)")
    parser.add_argument("--arcface", type=Path, default=None, help="backbone.pth for --identity arcface")
    parser.add_argument("--bfm", type=Path, default=None,
                        help="BFM folder or BFM_model_front.mat; default: the embedded model")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    add_renderer_backend_option(parser, "auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50, help="steps per log line (default 50)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from aggregation.cnet import resolve_cnet
    from aggregation.cnet_training import CNetTrainConfig, CNetTrainer
    from recon.models import load_face_model
    from recon.rnet import load_checkpoint

    out = args.out if args.out is not None else resolve_cnet(args.name)
    device = torch.device(args.device)
    face_model = load_face_model(args.bfm, device)
    rnet = load_checkpoint(args.checkpoint, args.arch, device, sizes=face_model.coeff_sizes)
    config = CNetTrainConfig(
        data_dirs=list(args.data_dirs), out=out, steps=args.steps,
        set_size=(args.min_photos, args.max_photos), lr=args.lr, seed=args.seed,
        identity=args.identity, arcface=args.arcface, renderer_backend=args.renderer_backend,
        vertex_weight=args.vertex_weight, log_every=args.log_every)
    trainer = CNetTrainer(config, rnet, face_model, progress=args.progress)
    windows = trainer.run(args.progress)
    if windows:
        print(f"C-Net steps {trainer.steps_done + 1}-{windows[-1]['step']}: loss "
              f"{windows[0]['all']:.4g} (first window) -> {windows[-1]['all']:.4g} (last); wrote {out}")
    else:
        print(f"{out}: all {args.steps} steps are done already")
    return 0

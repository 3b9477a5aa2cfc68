"""``faceset train DATA_DIR [DATA_DIR ...] --out CKPT_DIR [...]``: train R-Net (SPEC 5-7)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train R-Net on photo folders with the original's hybrid loss",
        description="Train the coefficient regressor on photo folders whose photos have "
                    "landmarks/<stem>.txt (68 points, y-down pixels, as 'faceset synth' writes "
                    "them) and optionally "
                    "mask/<name> skin masks (computed when absent). Loss, optimiser, schedule "
                    "and augmentation are the original's. Writes CKPT_DIR/epoch_<N>.pth and "
                    "epoch_latest.pth in the original's checkpoint format, loss_log.jsonl and "
                    "train_config.json (with --val also val_log.jsonl and loss_curves.png); "
                    "a CKPT_DIR with checkpoints resumes automatically. "
                    "Several GPUs or machines: launch with torchrun "
                    "(torchrun --nproc-per-node N -m faceset train ...).")
    parser.add_argument("data_dirs", type=Path, nargs="+", metavar="DATA_DIR",
                        help="photo folders")
    parser.add_argument("--out", type=Path, required=True, metavar="CKPT_DIR",
                        help="checkpoint folder (resumed when it holds checkpoints)")
    parser.add_argument("--epochs", type=int, default=20, help="total epochs (default 20)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per step over all processes (default 32)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    parser.add_argument("--lr-decay-epochs", type=int, default=10,
                        help="multiply the learning rate by 0.2 every this many epochs (default 10)")
    parser.add_argument("--arch", default="resnet50", choices=("resnet50", "resnet18", "mobilenet_v3_small"),
                        help="R-Net backbone (default resnet50, the original's; resnet18 and "
                             "mobilenet_v3_small are small ones for CPU training)")
    parser.add_argument("--init", type=Path, default=None,
                        help="torchvision ImageNet weights for the backbone "
                             "(resnet50-0676ba61.pth, as the original); default: random")
    parser.add_argument("--bfm", type=Path, default=None,
                        help="BFM folder or BFM_model_front.mat; default: the embedded model")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--renderer", default="auto",
                        choices=("auto", "torch", "nvdiffrast", "pytorch3d"),
                        help="rasterizer backend (default: nvdiffrast on CUDA when installed)")
    parser.add_argument("--identity", default="dlib", choices=("dlib", "arcface", "none"),
                        help="network of the identity-feature loss (default dlib, offline; "
                             "arcface is the original's)")
    parser.add_argument("--arcface", type=Path, default=None,
                        help="insightface backbone.pth for --identity arcface "
                             "(default: $FACESET_ARCFACE)")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="turn off shift / scale / rotation / flip augmentation")
    parser.add_argument("--workers", type=int, default=4,
                        help="data loading processes (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of init, order and augmentation")
    parser.add_argument("--log-every", type=int, default=100,
                        help="iterations per loss_log.jsonl line (default 100)")
    parser.add_argument("--val", type=Path, nargs="+", default=[], metavar="VAL_DIR",
                        help="photo folders (with landmarks/) scored after every epoch into "
                             "val_log.jsonl, plotted with the training loss in loss_curves.png")
    parser.add_argument("--vertex-weight", type=float, default=0.0,
                        help="weight (per mm^2) of a supervised 3-D vertex term on photos whose "
                             "truth/subject.mat holds model_vertices_mm ('faceset synth --realism "
                             "photo'); default 0: the original's loss only")
    parser.add_argument("--landmark3d-weight", type=float, default=0.0,
                        help="weight (per mm^2) of a supervised 3-D term on the 68 landmark "
                             "vertices, on the same photos (default 0)")
    parser.add_argument("--max-iters", type=int, default=None,
                        help="stop every epoch after this many iterations (smoke runs, timing)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from faceset.errors import prepare_output_dir
    from recon.losses import LossWeights
    from recon.training import TrainConfig, train

    prepare_output_dir(args.out, "checkpoint folder")

    config = TrainConfig(
        data_dirs=list(args.data_dirs), out=args.out, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_decay_epochs=args.lr_decay_epochs,
        arch=args.arch, augment=args.augment, weights=LossWeights(), identity=args.identity,
        arcface=args.arcface, bfm=args.bfm, init=args.init, device=args.device,
        renderer=args.renderer, workers=args.workers, seed=args.seed,
        log_every=args.log_every, max_iters_per_epoch=args.max_iters, val_dirs=list(args.val),
        vertex_weight=args.vertex_weight, landmark3d_weight=args.landmark3d_weight)
    try:
        result = train(config, progress=args.progress)
    except KeyboardInterrupt:
        from faceset.errors import Interrupted
        from recon.training.checkpoint import epoch_checkpoints
        done = max(epoch_checkpoints(args.out), default=0)
        raise Interrupted(done, args.epochs, "epochs") from None
    if result.checkpoint is not None:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.last_losses.items())
        print(f"trained epochs {result.first_epoch}-{result.last_epoch} "
              f"({result.iterations} iterations); last window: {losses}; wrote {result.checkpoint}")
    return 0

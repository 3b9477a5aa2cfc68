"""``faceset train DATA_DIR [DATA_DIR ...] --out CKPT_DIR [...]``: train R-Net (SPEC 5-7)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from faceset.commands import from_args

if TYPE_CHECKING:
    from recon.training.config import TrainConfig


def register(subparsers) -> None:
    from faceset.commands.reconstruct import add_renderer_backend_option
    from recon.training.config import ARCH_CHOICES, IDENTITY_CHOICES, TrainConfig

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
    defaults = TrainConfig   # its class attributes are the field defaults (no instance: no torch)
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help=f"total epochs (default {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help=f"images per step over all processes (default {defaults.batch_size})")
    parser.add_argument("--lr", type=float, default=defaults.lr,
                        help=f"Adam learning rate (default {defaults.lr:g})")
    parser.add_argument("--lr-decay-epochs", type=int, default=defaults.lr_decay_epochs,
                        help=f"multiply the learning rate by {defaults.lr_decay_gamma:g} every this many "
                             f"epochs (default {defaults.lr_decay_epochs})")
    parser.add_argument("--arch", default=defaults.arch, choices=ARCH_CHOICES,
                        help=f"R-Net backbone (default {defaults.arch}, the original's)")
    parser.add_argument("--init", type=Path, default=defaults.init,
                        help="torchvision ImageNet weights for the backbone "
                             "(resnet50-0676ba61.pth, as the original); default: random")
    parser.add_argument("--bfm", type=Path, default=defaults.bfm,
                        help="BFM folder or BFM_model_front.mat; default: the embedded model")
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or auto (default)")
    add_renderer_backend_option(parser, defaults.renderer_backend)
    parser.add_argument("--identity", default=defaults.identity, choices=IDENTITY_CHOICES,
                        help=f"network of the identity-feature loss (default {defaults.identity}, offline; "
                             "arcface is the original's)")
    parser.add_argument("--arcface", type=Path, default=defaults.arcface,
                        help="insightface backbone.pth for --identity arcface "
                             "(default: $FACESET_ARCFACE)")
    parser.add_argument("--no-augment", dest="augment", action="store_false", default=defaults.augment,
                        help="turn off shift / scale / rotation / flip augmentation")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help=f"data loading processes (default {defaults.workers})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of init, order and augmentation")
    parser.add_argument("--log-every", type=int, default=defaults.log_every,
                        help=f"iterations per loss_log.jsonl line (default {defaults.log_every})")
    parser.add_argument("--val", type=Path, nargs="+", default=[], metavar="VAL_DIR", dest="val_dirs",
                        help="photo folders (with landmarks/) scored after every epoch into "
                             "val_log.jsonl, plotted with the training loss in loss_curves.png")
    parser.add_argument("--vertex-weight", type=float, default=defaults.vertex_weight,
                        help="weight (per mm^2) of a supervised 3-D vertex term on photos whose "
                             "truth/subject.mat holds model_vertices_mm ('faceset synth --realism "
                             "photo'); default 0: the original's loss only")
    parser.add_argument("--landmark3d-weight", type=float, default=defaults.landmark3d_weight,
                        help="weight (per mm^2) of a supervised 3-D term on the 68 landmark "
                             "vertices, on the same photos (default 0)")
    parser.add_argument("--supervise-origin", dest="translation_free_supervision", action="store_false",
                        default=defaults.translation_free_supervision,
                        help="the supervised terms also count the shape's offset in the canonical "
                             "frame (default: the residual's mean over the skin is removed first)")
    parser.add_argument("--max-iters", type=int, default=defaults.max_iters_per_epoch,
                        dest="max_iters_per_epoch", metavar="N",
                        help="stop every epoch after this many iterations (smoke runs, timing)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        default=TrainCommand.progress, help="no progress bars")
    parser.set_defaults(func=run)


@dataclass
class TrainCommand:
    """``faceset train``: the run's ``recon.training.TrainConfig`` (every field the parser
    has a flag for; the others at their defaults) and whether to show progress bars."""

    config: "TrainConfig"
    progress: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrainCommand":
        from recon.training.config import TrainConfig
        return cls(config=from_args(TrainConfig, args), progress=args.progress)

    def run(self) -> int:
        from faceset.errors import prepare_output_dir
        from recon.training import train

        config = self.config
        prepare_output_dir(config.out, "checkpoint folder")
        try:
            result = train(config, progress=self.progress)
        except KeyboardInterrupt:
            from faceset.errors import Interrupted
            from recon.training.checkpoint import epoch_checkpoints
            done = max(epoch_checkpoints(config.out), default=0)
            raise Interrupted(done, config.epochs, "epochs") from None
        if result.checkpoint is not None:
            losses = ", ".join(f"{k} {v:.4g}" for k, v in result.last_losses.items())
            print(f"trained epochs {result.first_epoch}-{result.last_epoch} "
                  f"({result.iterations} iterations); last window: {losses}; wrote {result.checkpoint}")
        return 0


def run(args: argparse.Namespace) -> int:
    return TrainCommand.from_args(args).run()

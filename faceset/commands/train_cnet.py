"""``faceset train-cnet DATA_DIR [...] --checkpoint RNET (--name NAME | --out FILE)``: train
the image-set confidence network with R-Net frozen (``aggregation.cnet_training``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceset.commands import CommandOptions
from faceset.commands.reconstruct import add_renderer_backend_option
from recon.constants import RNET_ARCHITECTURES as ARCHES

IDENTITY_CHOICES = ("none", "dlib", "arcface")


@dataclass
class TrainCnetCommand(CommandOptions):
    """``faceset train-cnet``'s options. data_dirs: a person's photo folder or a folder of
    them; checkpoint / arch: the frozen R-Net; name or out: where the C-Net goes
    (``$FACESET_CACHE/cnet/NAME.pth`` or a file; exactly one); bfm / device /
    renderer_backend: as ``reconstruct``; the rest is ``aggregation.cnet_training.CNetTrainConfig``
    with the set size as min_photos..max_photos. The defaults are CNetTrainConfig's."""

    data_dirs: list[Path]
    checkpoint: Path
    arch: str = "resnet50"
    name: Optional[str] = None
    out: Optional[Path] = None
    steps: int = 2000
    min_photos: int = 2
    max_photos: int = 8
    lr: float = 1e-3
    vertex_weight: float = 0.0
    identity: str = "none"
    arcface: Optional[Path] = None
    bfm: Optional[Path] = None
    device: str = "cpu"
    renderer_backend: str = "auto"
    seed: int = 0
    log_every: int = 50
    progress: bool = True

    def train_config(self, out: Path):
        """The ``CNetTrainConfig`` of this run, saving to ``out``."""
        from aggregation.cnet_training import CNetTrainConfig
        return CNetTrainConfig(
            data_dirs=list(self.data_dirs), out=out, steps=self.steps,
            set_size=(self.min_photos, self.max_photos), lr=self.lr, seed=self.seed,
            identity=self.identity, arcface=self.arcface, renderer_backend=self.renderer_backend,
            vertex_weight=self.vertex_weight, log_every=self.log_every)

    def run(self) -> int:
        import torch
        from aggregation.cnet import resolve_cnet
        from aggregation.cnet_training import CNetTrainer
        from recon.models import load_face_model
        from recon.rnet import load_checkpoint

        out = self.out if self.out is not None else resolve_cnet(self.name)
        device = torch.device(self.device)
        face_model = load_face_model(self.bfm, device)
        rnet = load_checkpoint(self.checkpoint, self.arch, device, sizes=face_model.coeff_sizes)
        trainer = CNetTrainer(self.train_config(out), rnet, face_model, progress=self.progress)
        windows = trainer.run(self.progress)
        if windows:
            print(f"C-Net steps {trainer.steps_done + 1}-{windows[-1]['step']}: loss "
                  f"{windows[0]['all']:.4g} (first window) -> {windows[-1]['all']:.4g} (last); wrote {out}")
        else:
            print(f"{out}: all {self.steps} steps are done already")
        return 0


def register(subparsers) -> None:
    defaults = TrainCnetCommand   # its class attributes are the field defaults
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
    parser.add_argument("--arch", default=defaults.arch, choices=ARCHES,
                        help=f"that R-Net's backbone (default {defaults.arch})")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--name", help="save as $FACESET_CACHE/cnet/NAME.pth (load it by NAME)")
    target.add_argument("--out", type=Path, help="save to this .pth file")
    parser.add_argument("--steps", type=int, default=defaults.steps,
                        help=f"optimiser steps, one set each (default {defaults.steps})")
    parser.add_argument("--min-photos", type=int, default=defaults.min_photos,
                        help=f"smallest set (default {defaults.min_photos})")
    parser.add_argument("--max-photos", type=int, default=defaults.max_photos,
                        help=f"largest set (default {defaults.max_photos})")
    parser.add_argument("--lr", type=float, default=defaults.lr,
                        help=f"Adam learning rate (default {defaults.lr:g})")
    parser.add_argument("--vertex-weight", type=float, default=defaults.vertex_weight,
                        help="supervised term (per mm^2) on persons whose truth/subject.mat holds "
                             "model_vertices_mm ('faceset synth --realism photo'); default 0: label-free")
    parser.add_argument("--identity", default=defaults.identity, choices=IDENTITY_CHOICES,
                        help=f"network of the identity-feature term (default {defaults.identity})")
    parser.add_argument("--arcface", type=Path, default=defaults.arcface,
                        help="backbone.pth for --identity arcface")
    parser.add_argument("--bfm", type=Path, default=defaults.bfm,
                        help="BFM folder or BFM_model_front.mat; default: the embedded model")
    parser.add_argument("--device", default=defaults.device, help=f"cpu or cuda (default {defaults.device})")
    add_renderer_backend_option(parser, defaults.renderer_backend)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--log-every", type=int, default=defaults.log_every,
                        help=f"steps per log line (default {defaults.log_every})")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=defaults.progress)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return TrainCnetCommand.from_args(args).run()

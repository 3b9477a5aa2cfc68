"""Training configuration: the original's defaults (SPEC 7) and loss weights (SPEC 5)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from recon.losses import LossWeights

from recon.constants import RNET_ARCHITECTURES as ARCH_CHOICES

IDENTITY_CHOICES = ("dlib", "arcface", "none")


def _original_weights() -> "LossWeights":
    """The original's loss weights (imported here: this module stays free of torch, so the
    CLI reads its defaults before torch loads)."""
    from recon.losses import LossWeights
    return LossWeights()


@dataclass
class TrainConfig:
    """Everything a training run needs.

    Optimiser and schedule are the original's: Adam (lr 1e-4, betas (0.9, 0.999)) over the
    R-Net, StepLR x0.2 every 10 epochs stepped once per epoch, 20 epochs of batch 32
    (under torchrun each process takes batch_size // WORLD_SIZE), augmentation on.
    identity: the feature network of the ``feat`` term: "dlib" (offline default, weights in
    face-recognition-models), "arcface" (the original's; ``arcface`` = backbone.pth) or
    "none" (term off). bfm: BFM folder or BFM_model_front.mat; None = embedded model.
    init: torchvision ImageNet ResNet weights for the backbone (the original's
    resnet50-0676ba61.pth; ``fc`` keys dropped); None = random init.
    max_iters_per_epoch: stop each epoch early (smoke runs and timing); None = full epochs.
    val_dirs: photo folders scored after every epoch (no augmentation, the network in eval
    mode, no gradient) into ``val_log.jsonl``; empty = no validation pass.
    vertex_weight, landmark3d_weight: weights (per mm^2) of the supervised shape terms on
    photos whose generator wrote the truth (``recon.training.supervision``); 0 = off, the
    original's loss. translation_free_supervision: those terms ignore the shapes' offset in the
    canonical frame (``ShapeSupervision``); False keeps it.
    """

    data_dirs: list[Path]
    out: Path
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_decay_epochs: int = 10
    lr_decay_gamma: float = 0.2
    arch: str = "resnet50"
    augment: bool = True
    weights: LossWeights = field(default_factory=_original_weights)
    identity: str = "dlib"
    arcface: Optional[Path] = None
    bfm: Optional[Path] = None
    init: Optional[Path] = None
    device: str = "auto"
    renderer_backend: str = "auto"   # recon.render backend name (see recon.constants.RENDERER_BACKENDS)
    workers: int = 4
    seed: int = 0
    log_every: int = 100
    save_latest_every: int = 5000
    max_iters_per_epoch: Optional[int] = None
    val_dirs: list[Path] = field(default_factory=list)
    vertex_weight: float = 0.0
    landmark3d_weight: float = 0.0
    translation_free_supervision: bool = True

    @property
    def supervised(self) -> bool:
        return self.vertex_weight > 0 or self.landmark3d_weight > 0

    def validate(self) -> "TrainConfig":
        if not self.data_dirs:
            raise ValueError("give at least one photo folder to train on")
        if self.arch not in ARCH_CHOICES:
            raise ValueError(f"arch must be one of {ARCH_CHOICES}, got {self.arch!r}")
        if self.identity not in IDENTITY_CHOICES:
            raise ValueError(f"identity must be one of {IDENTITY_CHOICES}, got {self.identity!r}")
        for name in ("epochs", "batch_size", "lr_decay_epochs", "log_every", "save_latest_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("vertex_weight", "landmark3d_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.max_iters_per_epoch is not None and self.max_iters_per_epoch < 1:
            raise ValueError(f"max_iters_per_epoch must be >= 1, got {self.max_iters_per_epoch}")
        return self

    def to_dict(self) -> dict:
        """JSON-friendly copy (paths as strings), written to ``<out>/train_config.json``."""
        data = asdict(self)
        return {k: ([str(p) for p in v] if k in ("data_dirs", "val_dirs") else
                    str(v) if isinstance(v, Path) else v) for k, v in data.items()}

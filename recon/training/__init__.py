"""R-Net training with the original's hybrid loss (SPEC 5-7): data, augmentation, loss,
checkpoints, the loop and torchrun support. ``train(TrainConfig(...))`` runs it.

The names below load their module on first use (PEP 562), so that ``recon.training.config``
(the CLI's defaults) can be read without importing torch."""

from __future__ import annotations

import importlib

_HOMES = {"AugmentParams": "augment", "augment": "augment", "draw_params": "augment",
          "load_training_state": "checkpoint", "resume_path": "checkpoint",
          "save_checkpoint": "checkpoint", "TrainConfig": "config", "FaceTrainingSet": "data",
          "discover": "data", "read_landmark_file": "data", "TrainResult": "loop",
          "Trainer": "loop", "train": "loop", "BatchLoss": "objective", "HybridLoss": "objective"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)

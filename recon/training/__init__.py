"""R-Net training with the original's hybrid loss (SPEC 5-7): data, augmentation, loss,
checkpoints, the loop and torchrun support. ``train(TrainConfig(...))`` runs it."""

from .augment import AugmentParams, augment, draw_params
from .checkpoint import load_training_state, resume_path, save_checkpoint
from .config import TrainConfig
from .data import FaceTrainingSet, discover, read_landmark_file
from .loop import TrainResult, Trainer, train
from .objective import BatchLoss, HybridLoss

__all__ = ["AugmentParams", "BatchLoss", "FaceTrainingSet", "HybridLoss", "TrainConfig",
           "TrainResult", "Trainer", "augment", "discover", "draw_params",
           "load_training_state", "read_landmark_file", "resume_path", "save_checkpoint",
           "train"]

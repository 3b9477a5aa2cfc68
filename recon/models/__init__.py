"""Morphable models: the user's BFM09 (``bfm``) or the embedded procedural one."""

from __future__ import annotations

import os
from typing import Optional

import torch

from ..face_model import FaceModel
from ..morphable import MorphableModel


def load_model(bfm: Optional[str | os.PathLike] = None) -> MorphableModel:
    """BFM09 from a folder or ``BFM_model_front.mat`` when given, else the embedded model."""
    if bfm is not None:
        from .bfm import load_bfm
        return load_bfm(bfm)
    from .procedural import build_embedded_model
    return build_embedded_model()


def load_face_model(bfm: Optional[str | os.PathLike], device: torch.device) -> FaceModel:
    """``load_model(bfm)`` as a FaceModel (the original's camera and lighting) on ``device``."""
    return FaceModel(load_model(bfm)).to(device)

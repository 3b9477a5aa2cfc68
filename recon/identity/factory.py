"""The identity encoder factory; the perceptual identity loss itself (SPEC 5, ``feat``) is
``recon.losses.identity_loss``."""

from __future__ import annotations

import os
from typing import Optional

import torch

from .encoder import ArcFaceIdentityEncoder, DlibIdentityEncoder, IdentityEncoder

ENCODER_KINDS = ("dlib", "arcface")


def load_identity_encoder(kind: str = "dlib", weights: Optional[str | os.PathLike] = None,
                          device: torch.device | str = "cpu") -> IdentityEncoder:
    """A frozen identity encoder on ``device``.

    kind "dlib": dlib's ResNet; ``weights`` a dlib ``.dat`` file, default the one in the
    ``face-recognition-models`` package. kind "arcface": insightface iResNet-50;
    ``weights`` the ``backbone.pth``, default ``$FACESET_ARCFACE`` (a missing file is one
    error saying where to get it).
    """
    if kind == "dlib":
        from .dlib_resnet import DlibFaceResNet
        encoder: IdentityEncoder = DlibIdentityEncoder(DlibFaceResNet.from_dlib_file(weights))
    elif kind == "arcface":
        from .iresnet import load_arcface_backbone
        encoder = ArcFaceIdentityEncoder(load_arcface_backbone(weights))
    else:
        raise ValueError(f"unknown identity encoder {kind!r}; one of {ENCODER_KINDS}")
    return encoder.to(device)


def configured_identity_encoder(identity: str, arcface: Optional[str | os.PathLike],
                                device: torch.device | str) -> Optional[IdentityEncoder]:
    """The encoder a training run's ``identity`` option names ("dlib", "arcface" with its
    ``arcface`` backbone file, or "none": no identity term, None)."""
    if identity == "none":
        return None
    return load_identity_encoder(identity, arcface if identity == "arcface" else None, device)

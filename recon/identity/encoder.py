"""Frozen identity encoders: aligned crop + landmarks -> L2-normalised identity features.

Both encoders do what the original's perceptual loss does (SPEC 1.3, 5): a similarity M
from the 68 landmarks, computed without gradient, a differentiable bilinear warp of the
image with M (torch ``grid_sample``; gradients flow to the pixels), then a frozen network
in eval mode and an L2 normalisation.

* ``DlibIdentityEncoder``: dlib's face recognition ResNet on dlib's 150x150 face chip
  (the offline default, weights in ``face-recognition-models``).
* ``ArcFaceIdentityEncoder``: insightface ArcFace iResNet-50 on the ArcFace 112x112
  alignment, input 2x - 1 (the original's network; the user supplies ``backbone.pth``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from recon.preprocess.arcface_align import estimate_norm_torch, warp_affine

from .chip import dlib_chip_matrix
from .dlib_resnet import (DLIB_CHIP_PADDING, DLIB_CHIP_SIZE, DLIB_DESCRIPTOR_DIM,
                          DlibFaceResNet)
from .iresnet import ARCFACE_FEATURE_DIM, ARCFACE_INPUT_SIZE, IResNet


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images must be float (B, 3, H, W) RGB in [0, 1], got "
                         f"{tuple(images.shape)} {images.dtype}")


def _check_landmarks(landmarks: torch.Tensor, batch: int) -> None:
    if landmarks.ndim != 3 or landmarks.shape != (batch, 68, 2):
        raise ValueError(f"landmarks must be (B={batch}, 68, 2) y-down pixels, got "
                         f"{tuple(landmarks.shape)}")


class IdentityEncoder(nn.Module):
    """Base class: a frozen network behind a landmark-driven differentiable warp.

    Subclasses set ``kind``, ``feature_dim``, ``input_size`` and implement
    ``alignment_matrices`` and ``embed``. Parameters never require gradients and the
    network stays in eval mode (``train()`` keeps it there), as the original's.
    """

    kind: str = ""
    feature_dim: int = 0
    input_size: int = 0

    def freeze(self) -> "IdentityEncoder":
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> "IdentityEncoder":
        # Frozen feature extractor: batch-norm statistics must never update.
        return super().train(False)

    def alignment_matrices(self, landmarks: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) y-down landmarks of the images -> (B, 2, 3) image -> network-input
        pixel matrices, without gradient."""
        raise NotImplementedError

    def embed(self, aligned: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) aligned [0, 1] RGB -> (B, feature_dim) raw network features."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, landmarks: Optional[torch.Tensor] = None,
                matrices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Identity features of a batch of face crops.

        Args:
            images: (B, 3, H, W) float RGB in [0, 1] (e.g. the 224 aligned crops or the
                renders), any device; gradients flow back to it.
            landmarks: (B, 68, 2) float iBUG landmarks of those images, y-down pixels with
                centres at integers; used (detached) to compute the alignment.
            matrices: (B, 2, 3) image -> network-input pixel matrices, instead of
                landmarks (e.g. the M of the target reused for the render).
        Returns:
            (B, feature_dim) float features of unit L2 norm, images' dtype.
        """
        _check_images(images)
        if matrices is None:
            if landmarks is None:
                raise ValueError("give landmarks or matrices for the alignment")
            _check_landmarks(landmarks, images.shape[0])
            matrices = self.alignment_matrices(landmarks)
        if matrices.shape != (images.shape[0], 2, 3):
            raise ValueError(f"matrices must be (B={images.shape[0]}, 2, 3), got "
                             f"{tuple(matrices.shape)}")
        aligned = warp_affine(images, matrices.detach().to(images.device), self.input_size)
        return F.normalize(self.embed(aligned), dim=-1)


class DlibIdentityEncoder(IdentityEncoder):
    """dlib's face recognition ResNet on dlib's face chip (150x150, padding 0.25).

    Features are dlib's 128-d descriptors, L2-normalised. The chip is dlib's
    ``get_face_chip`` geometry sampled bilinearly (dlib truncates the chip to 8 bits; we
    keep floats so gradients flow).
    """

    kind = "dlib"
    feature_dim = DLIB_DESCRIPTOR_DIM
    input_size = DLIB_CHIP_SIZE

    def __init__(self, network: Optional[DlibFaceResNet] = None,
                 padding: float = DLIB_CHIP_PADDING):
        super().__init__()
        self.network = network if network is not None else DlibFaceResNet.from_dlib_file()
        self.padding = padding
        self.freeze()

    def alignment_matrices(self, landmarks: torch.Tensor) -> torch.Tensor:
        return dlib_chip_matrix(landmarks, self.input_size, self.padding)

    def embed(self, aligned: torch.Tensor) -> torch.Tensor:
        return self.network(aligned)


class ArcFaceIdentityEncoder(IdentityEncoder):
    """insightface ArcFace iResNet on the original's 112x112 alignment, input 2x - 1."""

    kind = "arcface"
    feature_dim = ARCFACE_FEATURE_DIM
    input_size = ARCFACE_INPUT_SIZE

    def __init__(self, network: IResNet):
        super().__init__()
        self.network = network
        self.freeze()

    def alignment_matrices(self, landmarks: torch.Tensor) -> torch.Tensor:
        # The original estimates M on the CPU in float64 from the 5 derived points.
        return estimate_norm_torch(landmarks.detach().to(torch.float64))

    def embed(self, aligned: torch.Tensor) -> torch.Tensor:
        return self.network(aligned * 2.0 - 1.0)

"""ArcFace 112x112 alignment matrix and a batched affine warp (SPEC 6.4).

``estimate_norm`` is the original's: 5 points from the 68 landmarks of the 224 crop, a
least-squares similarity (rotation, uniform scale, translation; skimage
``SimilarityTransform.estimate`` semantics, i.e. Umeyama without reflection) onto the ArcFace
template, the top 2x3 of it; the identity when the fit is singular. In 2D the Umeyama
solution is the complex least-squares fit q ~ a p + b with a = s e^{i theta}, which is what
we solve (closed form, no SVD).

``warp_affine`` has kornia 0.5.5 semantics (the version the original uses): M maps source
pixels to destination pixels (y-down, pixel centres at integers), bilinear sampling, zero
padding, ``align_corners=True``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from recon import constants as C
from recon.standard_landmarks import five_point_template

# The original stores its ArcFace template as float32; we use those exact values.
ARCFACE_TEMPLATE = np.asarray(C.ARCFACE_TEMPLATE_112, dtype=np.float32).astype(np.float64)
ARCFACE_SIZE = C.ARCFACE_SIZE


def _five_points(landmarks: np.ndarray) -> np.ndarray:
    if landmarks.shape[-2] == 68:
        return five_point_template(landmarks)
    if landmarks.shape[-2] == 5:
        return landmarks
    raise ValueError(f"landmarks must be (..., 68, 2) or (..., 5, 2), got {landmarks.shape}")


def similarity_lstsq(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares 2D similarity mapping ``source`` points onto ``target`` points.

    Args:
        source, target: (K, 2) float points (same pixel convention).
    Returns:
        (3, 3) float64 matrix [[a, -b, tx], [b, a, ty], [0, 0, 1]]; all-NaN when the source
        points coincide (no scale can be fitted), as skimage gives.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    p = source - source.mean(0)
    q = target - target.mean(0)
    spread = (p ** 2).sum()
    if not spread > 0:
        return np.full((3, 3), np.nan)
    # a + ib = sum(conj(p) q) / sum |p|^2 with p, q as complex numbers x + iy.
    a = (p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]).sum() / spread
    b = (p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum() / spread
    linear = np.array([[a, -b], [b, a]])
    translation = target.mean(0) - linear @ source.mean(0)
    return np.array([[a, -b, translation[0]], [b, a, translation[1]], [0.0, 0.0, 1.0]])


def estimate_norm(landmarks: np.ndarray) -> np.ndarray:
    """The original's ArcFace alignment matrix.

    Args:
        landmarks: (68, 2) or (5, 2) y-down pixels of the 224 crop.
    Returns:
        (2, 3) float64 matrix mapping crop pixels to ArcFace 112 pixels (y-down); the
        identity's top rows when the fit is singular or not finite.
    """
    five = _five_points(np.asarray(landmarks, dtype=np.float64))
    matrix = similarity_lstsq(five, ARCFACE_TEMPLATE)
    if not np.isfinite(matrix).all() or np.linalg.det(matrix) == 0:
        matrix = np.eye(3)
    return matrix[:2]


def estimate_norm_torch(landmarks: torch.Tensor) -> torch.Tensor:
    """Batched ``estimate_norm``.

    Args:
        landmarks: (B, 68, 2) or (B, 5, 2) float y-down pixels of the 224 crop.
    Returns:
        (B, 2, 3) matrices, landmarks' dtype and device, crop -> ArcFace 112 pixels; identity
        rows for items whose points coincide.
    """
    if landmarks.ndim != 3 or landmarks.shape[1] not in (5, 68) or landmarks.shape[2] != 2:
        raise ValueError(f"landmarks must be (B, 68|5, 2), got {tuple(landmarks.shape)}")
    if landmarks.shape[1] == 68:
        landmarks = five_point_template(landmarks)
    target = torch.as_tensor(ARCFACE_TEMPLATE, dtype=landmarks.dtype, device=landmarks.device)
    p = landmarks - landmarks.mean(1, keepdim=True)
    q = target - target.mean(0)
    spread = (p ** 2).sum((1, 2))
    valid = spread > 0
    safe = torch.where(valid, spread, torch.ones_like(spread))
    a = (p[..., 0] * q[:, 0] + p[..., 1] * q[:, 1]).sum(1) / safe
    b = (p[..., 0] * q[:, 1] - p[..., 1] * q[:, 0]).sum(1) / safe
    a = torch.where(valid, a, torch.ones_like(a))
    b = torch.where(valid, b, torch.zeros_like(b))
    linear = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (B, 2, 2)
    mean_source = landmarks.mean(1)
    translation = target.mean(0) - (linear @ mean_source.unsqueeze(-1)).squeeze(-1)
    translation = torch.where(valid.unsqueeze(-1), translation, torch.zeros_like(translation))
    return torch.cat([linear, translation.unsqueeze(-1)], dim=-1)


def warp_affine(images: torch.Tensor, matrices: torch.Tensor,
                out_size: tuple[int, int] | int = ARCFACE_SIZE) -> torch.Tensor:
    """Warp images by source->destination affine matrices (kornia 0.5.5 ``warp_affine``).

    Args:
        images: (B, C, H, W) float, any device.
        matrices: (B, 2, 3) float, maps source pixel (x, y) (y-down, centres at integers) to
            destination pixel coordinates.
        out_size: (height, width) of the output, or one int for a square.
    Returns:
        (B, C, out_h, out_w), images' dtype: out(x, y) = bilinear sample of the source at
        M^{-1}(x, y); samples beyond the border blend with zeros.
    """
    if images.ndim != 4 or matrices.shape != (images.shape[0], 2, 3):
        raise ValueError(f"warp_affine needs (B, C, H, W) images and (B, 2, 3) matrices, got "
                         f"{tuple(images.shape)} and {tuple(matrices.shape)}")
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    height, width = images.shape[-2:]
    matrices = matrices.to(images.dtype)
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=images.dtype, device=images.device)
    full = torch.cat([matrices, bottom.expand(matrices.shape[0], 1, 3)], dim=1)
    inverse = torch.linalg.inv(full)[:, :2]                                     # dst -> src
    ys, xs = torch.meshgrid(torch.arange(out_h, dtype=images.dtype, device=images.device),
                            torch.arange(out_w, dtype=images.dtype, device=images.device),
                            indexing="ij")
    destination = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)            # (h, w, 3)
    source = torch.einsum("bij,hwj->bhwi", inverse, destination)                # (B, h, w, 2)
    # align_corners=True: pixel centre 0 -> -1, centre (size - 1) -> +1.
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)],
                         dtype=images.dtype, device=images.device)
    grid = source * scale - 1.0
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

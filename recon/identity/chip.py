"""Face chips for dlib's recognition network: the alignment dlib's ``get_face_chip`` uses.

``get_face_chip_details`` (dlib ``image_transforms/interpolation.h``) fits a least-squares
similarity from a mean-face template (51 points of the iBUG 68, lower lip and eyebrows left
out, with ``padding`` added around a unit square, times the chip size) to the detected
landmarks. The chip is then sampled through a rectangle built from that similarity: centred
at the image of chip point (size/2, size/2), ``size * scale - 1`` wide, rotated by the
similarity's angle, with chip pixel 0 on one edge and pixel ``size - 1`` on the other. That
rectangle makes the per-pixel step ``(size * scale - 1) / (size - 1)``, slightly different
from the fitted scale; we keep it, so the chips match dlib's. Pixels are sampled
bilinearly at integer centres (the convention of ``recon.types``).
"""

from __future__ import annotations

import numpy as np
import torch

# dlib's mean face, points 17..67 of the iBUG 68 in a unit square (x right, y down).
_MEAN_FACE_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
)
_MEAN_FACE_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
)
# The landmarks dlib fits: 27..67 without the lower lip (55-59, 65-67).
DLIB_CHIP_LANDMARKS = tuple(i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67))


def dlib_chip_template(size: int, padding: float) -> np.ndarray:
    """(K, 2) float64 chip-pixel positions of ``DLIB_CHIP_LANDMARKS`` (x right, y down)."""
    index = np.asarray(DLIB_CHIP_LANDMARKS) - 17
    unit = np.stack([np.asarray(_MEAN_FACE_X)[index], np.asarray(_MEAN_FACE_Y)[index]], 1)
    return (padding + unit) / (2.0 * padding + 1.0) * size


def fit_similarity(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares similarity (rotation, uniform scale, translation) source -> target.

    In 2D the Umeyama fit (no reflection) is the complex least-squares q ~ z p + t.

    Args:
        source: (K, 2) or (B, K, 2) float points; target: (B, K, 2), same units.
    Returns:
        linear (B, 2, 2) = [[a, -b], [b, a]] and translation (B, 2), target's dtype.
    Raises:
        ValueError when the source points of an item coincide.
    """
    source = source.to(target.dtype).expand_as(target)
    p = source - source.mean(1, keepdim=True)
    q = target - target.mean(1, keepdim=True)
    spread = (p ** 2).sum((1, 2))
    if not bool((spread > 0).all()):
        raise ValueError("cannot fit a similarity: the source points coincide")
    a = (p[..., 0] * q[..., 0] + p[..., 1] * q[..., 1]).sum(1) / spread
    b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(1) / spread
    linear = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)
    translation = target.mean(1) - (linear @ source.mean(1).unsqueeze(-1)).squeeze(-1)
    return linear, translation


def dlib_chip_matrix(landmarks: torch.Tensor, size: int = 150,
                     padding: float = 0.25) -> torch.Tensor:
    """The affine map of dlib's ``get_face_chip(img, shape, size, padding)``.

    Args:
        landmarks: (B, 68, 2) float iBUG landmarks, y-down pixels of the image.
        size: chip side in pixels; padding: dlib's chip padding (fraction of the face).
    Returns:
        (B, 2, 3) float64 matrices mapping image pixels to chip pixels (y-down, centres
        at integers), computed without gradient (as the original computes its M).
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (B, 68, 2), got {tuple(landmarks.shape)}")
    points = landmarks.detach().to(torch.float64)[:, list(DLIB_CHIP_LANDMARKS)]
    template = torch.as_tensor(dlib_chip_template(size, padding), device=points.device)
    linear, translation = fit_similarity(template, points)                 # chip -> image
    scale = torch.linalg.vector_norm(linear[:, :, 0], dim=1)               # |M (1, 0)|
    rotation = linear / scale[:, None, None]
    centre = (linear @ torch.full((2, 1), size / 2.0, dtype=torch.float64,
                                  device=points.device)).squeeze(-1) + translation
    # chip pixel 0 -> rect edge, pixel size-1 -> other edge of a (size*scale - 1) rect.
    step = (size * scale - 1.0) / (size - 1.0)
    chip_linear = rotation * step[:, None, None]
    chip_translation = centre - (chip_linear @ torch.full(
        (2, 1), (size - 1) / 2.0, dtype=torch.float64, device=points.device)).squeeze(-1)
    # Invert chip -> image into image -> chip.
    inverse_linear = torch.linalg.inv(chip_linear)
    inverse_translation = -(inverse_linear @ chip_translation.unsqueeze(-1)).squeeze(-1)
    return torch.cat([inverse_linear, inverse_translation.unsqueeze(-1)], dim=-1)

"""Training augmentation of the original (SPEC 6.7): shift, scale, rotation, flip.

One affine map A = T(+c) Scale Rot Shift Flip T(-c) moves the aligned crop, its skin mask
and its 68 landmarks together; the image and mask are resampled with PIL BICUBIC, as the
original (its mask asks for bilinear but gets bicubic, SPEC 12 D4).

Pixel convention. PIL's ``Image.transform`` works in continuous coordinates in which pixel
column j covers [j, j + 1], and the original builds A there with c = (w // 2, h // 2) =
(112, 112), the exact image centre. It then applies the same A to its landmarks, whose
pixel centres sit at integers, so its landmarks land half a pixel times (A - I) away from
the content (one full pixel in x on every flipped image). We keep A and the image warp as
the original's and move the landmarks with the conjugate T(-0.5) A T(+0.5) that holds in
our convention (``recon.types``: y-down, pixel centres at integers), so every landmark
stays on its image feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from recon import constants as C

SHIFT_PIXELS = 10        # integer shift drawn from [-10, 10] px on each axis (shift_pixs)
SCALE_DELTA = 0.1        # scale drawn from 1 +- 0.1 (scale_delta)
ROTATION_DEGREES = 10.0  # rotation drawn from +-10 degrees (rot_angle)
FLIP_PROBABILITY = 0.5   # horizontal flip with probability 0.5
PIL_HALF_PIXEL = 0.5     # PIL pixel j covers [j, j + 1]; our pixel centre j is PIL's j + 0.5


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the augmentation.

    shift_x, shift_y: integer pixels (applied after the flip, before rotation and scale);
    scale: unitless factor about the image centre; angle_deg: rotation in degrees,
    positive = counter-clockwise as the image is seen (y down); flip: mirror left-right.
    """

    shift_x: int = 0
    shift_y: int = 0
    scale: float = 1.0
    angle_deg: float = 0.0
    flip: bool = False


def draw_params(rng: np.random.Generator) -> AugmentParams:
    """A random AugmentParams with the original's ranges (SPEC 6.7)."""
    shift_x, shift_y = (int(v) for v in rng.integers(-SHIFT_PIXELS, SHIFT_PIXELS + 1, size=2))
    scale = 1.0 + SCALE_DELTA * rng.uniform(-1.0, 1.0)
    angle = ROTATION_DEGREES * rng.uniform(-1.0, 1.0)
    flip = bool(rng.random() < FLIP_PROBABILITY)
    return AugmentParams(shift_x, shift_y, scale, angle, flip)


def _translation(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


def affine_matrix(params: AugmentParams, size: int = C.IMAGE_SIZE) -> np.ndarray:
    """3x3 float64 map of PIL continuous coordinates (pixel j covers [j, j+1]) of the
    input crop to the output crop: A = T(+c) Scale Rot Shift Flip T(-c), c = size // 2."""
    centre = size // 2
    theta = math.radians(params.angle_deg)
    # y points down, so a counter-clockwise turn on screen is this matrix.
    rotation = np.array([[math.cos(theta), math.sin(theta), 0.0],
                         [-math.sin(theta), math.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    scale = np.diag([params.scale, params.scale, 1.0])
    flip = np.diag([-1.0 if params.flip else 1.0, 1.0, 1.0])
    shift = _translation(params.shift_x, params.shift_y)
    return (_translation(centre, centre) @ scale @ rotation @ shift @ flip
            @ _translation(-centre, -centre))


def landmark_matrix(params: AugmentParams, size: int = C.IMAGE_SIZE) -> np.ndarray:
    """3x3 float64: ``affine_matrix`` in our pixel convention (centres at integers, y down)."""
    half = PIL_HALF_PIXEL
    return _translation(-half, -half) @ affine_matrix(params, size) @ _translation(half, half)


def warp_image(image: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Warp a square crop with PIL BICUBIC (zero fill outside).

    image: (S, S) or (S, S, 3) uint8. Returns the same shape and dtype.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.shape[0] != image.shape[1]:
        raise ValueError(f"augmentation needs a square uint8 (S, S[, 3]) crop, got "
                         f"{image.dtype} {image.shape}")
    size = image.shape[0]
    inverse = np.linalg.inv(affine_matrix(params, size))
    warped = Image.fromarray(np.ascontiguousarray(image)).transform(
        (size, size), Image.Transform.AFFINE, data=tuple(inverse[:2].reshape(-1)),
        resample=Image.Resampling.BICUBIC)
    return np.asarray(warped)


def transform_landmarks(landmarks: np.ndarray, params: AugmentParams,
                        size: int = C.IMAGE_SIZE) -> np.ndarray:
    """Move (68, 2) y-down crop landmarks with the image; on a flip, also relabel them with
    the 68-point mirror permutation (new[i] = old[perm[i]]) so index i stays the same
    facial point. Returns (68, 2) float64."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"augmentation needs (68, 2) landmarks, got {points.shape}")
    matrix = landmark_matrix(params, size)
    moved = points @ matrix[:2, :2].T + matrix[:2, 2]
    return moved[list(C.FLIP_PERM_68)] if params.flip else moved


def augment(image: np.ndarray, mask: np.ndarray, landmarks: np.ndarray,
            params: AugmentParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply one augmentation to a crop, its mask and its landmarks.

    image: (S, S, 3) uint8 RGB; mask: (S, S) uint8; landmarks: (68, 2) y-down crop pixels.
    Returns the three transformed (same shapes; landmarks float64).
    """
    size = image.shape[0]
    return (warp_image(image, params), warp_image(mask, params),
            transform_landmarks(landmarks, params, size))

"""Per-photo cameras inside the aligned crop: the photo's real focal length, not 1015 px.

The original renders every aligned 224 crop with one pinhole (focal 1015 px, principal
point at the crop centre, camera 10 dm from the origin): a face about 1 m away. A phone
selfie is taken from 30-60 cm with a wide lens, a portrait from metres away; the
perspective differs (at 30 cm the nose is ~13 % larger than the cheeks, at 1 m ~4 %), and
a fit that assumes the wrong camera puts that difference into the face's shape.

The crop is a scaled, shifted copy of the photo (``recon.preprocess.align.CropTransform``,
no rotation), so a photo camera of focal F pixels with principal point p is, in crop
pixels, a camera of focal s F with principal point T(p). The renderer and the face model
keep their one ``Camera``; a per-image camera is applied to camera-space points instead:

    x' = x + (a / k) z,   y' = y + (b / k) z,   z' = z / k,
    k = f_i / f,   a = (cx_i - cx) / f,   b = (cy_i - cy) / f

projects through the shared camera (u = f x'/z' + cx) exactly as the image's own camera
projects the original point (u = f_i x/z + cx_i). Depth is scaled by one factor per image,
which keeps the z-order and perspective-correct interpolation of the image's camera and
puts a face at the depth its focal length implies (a selfie's 3-4 dm at a wide focal)
back near the shared camera's distance, inside the renderer's near and far planes.

Intrinsics of a batch are an (M, 3) tensor ``[focal, center_x, center_y]`` in crop pixels,
principal point **y-up** like ``Camera.center_y``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import torch

from .preprocess.photo import exif_focal_35mm, focal_from_35mm
from .types import Camera, FaceGeometry



def default_intrinsics(camera: Camera, count: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(count, 3) intrinsics of the shared camera itself (the identity adaptation)."""
    row = torch.tensor([camera.focal_x, camera.center_x, camera.center_y], dtype=dtype, device=device)
    return row.expand(count, 3).clone()


def adapt_camera_points(points: torch.Tensor, camera: Camera, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera-space points that the shared ``camera`` projects as each image's own camera.

    points: (M, N, 3) camera space of ``camera`` (z = depth > 0, model units);
    intrinsics: (M, 3) ``[focal, center_x, center_y_up]`` crop pixels (square pixels).
    Returns (M, N, 3), differentiable in both; depth scaled by f / f_i (module docstring).
    """
    if points.ndim != 3 or intrinsics.shape != (points.shape[0], 3):
        raise ValueError(f"points must be (M, N, 3) and intrinsics (M, 3), got {tuple(points.shape)} "
                         f"and {tuple(intrinsics.shape)}")
    intrinsics = intrinsics.to(points)
    k = (intrinsics[:, 0] / camera.focal_x)[:, None]
    a = ((intrinsics[:, 1] - camera.center_x) / camera.focal_x)[:, None]
    b = ((intrinsics[:, 2] - camera.center_y) / camera.focal_y)[:, None]
    x, y, z = points.unbind(-1)
    return torch.stack([x + (a / k) * z, y + (b / k) * z, z / k], dim=-1)


def with_intrinsics(geometry: FaceGeometry, camera: Camera, landmark_ids: torch.Tensor,
                    intrinsics: Optional[torch.Tensor]) -> FaceGeometry:
    """``geometry`` seen through each image's own camera: camera-space points adapted
    (``adapt_camera_points``) and the 68 landmarks projected again; world points, normals
    and colours do not depend on the camera. ``intrinsics`` None: unchanged."""
    if intrinsics is None:
        return geometry
    adapted = adapt_camera_points(geometry.camera, camera, intrinsics)
    return replace(geometry, camera=adapted, landmarks=camera.project(adapted[:, landmark_ids]))


def crop_intrinsics(transform, photo_focal_px: float, principal_point: Optional[tuple[float, float]] = None) -> np.ndarray:
    """(3,) ``[focal, center_x, center_y_up]`` of a photo camera in its aligned crop's pixels.

    transform: the photo's ``CropTransform``; photo_focal_px: the photo's focal length in
    photo pixels; principal_point: y-down photo pixels (default: the photo's centre).
    """
    if not np.isfinite(photo_focal_px) or photo_focal_px <= 0:
        raise ValueError(f"focal length must be positive, got {photo_focal_px}")
    if principal_point is None:
        principal_point = ((transform.w0 - 1) / 2, (transform.h0 - 1) / 2)
    centre = transform.to_crop(np.array([principal_point], dtype=np.float64))[0]
    return np.array([photo_focal_px * transform.s, centre[0], transform.target_size - 1 - centre[1]])


def exif_focal_px(image) -> Optional[float]:
    """The photo's focal length in pixels of the image as stored, from EXIF, or None."""
    focal_35mm = exif_focal_35mm(image)
    return None if focal_35mm is None else focal_from_35mm(focal_35mm, *image.size)

"""Camera space -> clip space, the one projection every renderer backend shares (SPEC 4).

The original renders with an OpenGL-style matrix that, for its default camera, acts on
(x, -y, z_cam, 1) as

    [[9.0625, 0, 0, 0], [0, 9.0625, 0, 0], [0, 0, 2, -15], [0, 0, 1, 0]]

(9.0625 = focal / (size / 2) = 1015 / 112; z range 5..15 maps to NDC z -1..1). Here the
same matrix is built from any `Camera`: focal lengths, principal point, image size and the
near / far planes. A principal point away from the image centre becomes an NDC offset
proportional to depth (an off-centre frustum).

Rasterizer pixel convention (nvdiffrast's): pixel (row i, column j) samples NDC
(x, y) = (-1 + (2j + 1) / W, -1 + (2i + 1) / H); row 0 is NDC y = -1. Because y is negated
before the matrix, row 0 is the top of the image, as in the y-down convention of
`recon.types`. Exactly as in the original, a camera-space point lands at rasterizer column
fx x / z + cx - 0.5 and row H - cy - 0.5 - fy y / z, while `Camera.project` puts it at
column fx x / z + cx and row H - 1 - cy - fy y / z: half a pixel apart (SPEC 12 D2), kept.
"""

from __future__ import annotations

import torch

from ..types import Camera


def projection_matrix(camera: Camera, dtype: torch.dtype = torch.float64,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """The (4, 4) matrix M with clip = M @ (x, -y, z_cam, 1) for ``camera``.

    Returns a (4, 4) tensor of ``dtype`` on ``device``. For the default camera it is exactly
    [[9.0625, 0, 0, 0], [0, 9.0625, 0, 0], [0, 0, 2, -15], [0, 0, 1, 0]].
    """
    half_w, half_h = camera.width / 2.0, camera.height / 2.0
    near, far = float(camera.znear), float(camera.zfar)
    if not 0.0 < near < far:
        raise ValueError(f"camera needs 0 < znear < zfar, got znear={near}, zfar={far}")
    # Principal point offsets in NDC units; y is measured on the negated axis (y-up cy).
    offset_x = (camera.center_x - half_w) / half_w
    offset_y = -(camera.center_y - half_h) / half_h
    depth_scale = (far + near) / (far - near)
    depth_offset = -2.0 * far * near / (far - near)
    return torch.tensor([[camera.focal_x / half_w, 0.0, offset_x, 0.0],
                         [0.0, camera.focal_y / half_h, offset_y, 0.0],
                         [0.0, 0.0, depth_scale, depth_offset],
                         [0.0, 0.0, 1.0, 0.0]], dtype=dtype, device=device)


def clip_space(camera_points: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Camera-space points to homogeneous clip-space positions for the rasterizer.

    camera_points: (B, V, 3) float, camera space of `recon.types` (x right, y up, z = positive
        depth, model units).
    Returns (B, V, 4) float, same dtype and device: (x_c, y_c, z_c, w) with w = z_cam, so
    that NDC = (x_c, y_c, z_c) / w, NDC z in [-1, 1] between camera.znear and camera.zfar,
    and image row 0 at the top (see the module docstring). Differentiable.
    """
    if camera_points.ndim != 3 or camera_points.shape[-1] != 3:
        raise ValueError(f"clip_space: camera_points must be (B, V, 3), got {tuple(camera_points.shape)}")
    matrix = projection_matrix(camera, camera_points.dtype, camera_points.device)
    flipped = torch.cat([camera_points[..., :1], -camera_points[..., 1:2], camera_points[..., 2:3],
                         torch.ones_like(camera_points[..., :1])], dim=-1)
    return flipped @ matrix.T


def ndc_to_pixel(ndc: torch.Tensor, size: int) -> torch.Tensor:
    """NDC coordinate along one axis -> rasterizer pixel coordinate (pixel centres at integers).

    ndc: any shape, float. size: W for x, H for y. Inverse of -1 + (2 p + 1) / size.
    """
    return (ndc + 1.0) * (size / 2.0) - 0.5


def pixel_to_ndc(pixel: torch.Tensor, size: int) -> torch.Tensor:
    """Rasterizer pixel coordinate -> NDC along one axis: -1 + (2 p + 1) / size."""
    return (2.0 * pixel + 1.0) / size - 1.0

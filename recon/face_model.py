"""Face model maths of the original (SPEC 3): shape, albedo, pose, camera, normals, SH light."""

from __future__ import annotations

import torch

from . import constants as C
from .morphable import MorphableModel
from .types import Camera, Coeffs, FaceGeometry


def _axis_rotations(angles: torch.Tensor, derivative: bool = False):
    """Rx, Ry, Rz (each (B, 3, 3)) for angles (B, 3), or their derivatives d/dx, d/dy, d/dz."""
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
    if derivative:
        one = zero
        cx, sx, cy, sy, cz, sz = -sx, cx, -sy, cy, -sz, cz
    rot_x = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).view(-1, 3, 3)
    rot_y = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    rot_z = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rot_x, rot_y, rot_z


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """R = Rz·Ry·Rx from Euler angles.

    angles: (B, 3) float, radians (x, y, z), rotations about the fixed world axes.
    Returns (B, 3, 3); a column vector p rotates as R @ p.
    """
    rot_x, rot_y, rot_z = _axis_rotations(angles)
    return rot_z @ rot_y @ rot_x


def rotation_derivatives(angles: torch.Tensor) -> torch.Tensor:
    """dR/d(angle_k) of ``rotation_matrix``: (B, 3) -> (B, 3, 3, 3), last index k."""
    rot_x, rot_y, rot_z = _axis_rotations(angles)
    d_x, d_y, d_z = _axis_rotations(angles, derivative=True)
    return torch.stack([rot_z @ rot_y @ d_x, rot_z @ d_y @ rot_x, d_z @ rot_y @ rot_x], dim=-1)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The original's 9 SH irradiance basis values (SPEC 3.10 table), including a_k·c_k.

    normals: (..., 3) unit vectors (x, y, z). Returns (..., 9).
    """
    a, c = C.SH_A, C.SH_C
    x, y, z = normals.unbind(-1)
    return torch.stack([
        torch.full_like(x, a[0] * c[0]),
        -a[1] * c[1] * y,
        a[1] * c[1] * z,
        -a[1] * c[1] * x,
        a[2] * c[2] * x * y,
        -a[2] * c[2] * y * z,
        0.5 * a[2] * c[2] / 3 ** 0.5 * (3 * z ** 2 - 1),
        -a[2] * c[2] * x * z,
        0.5 * a[2] * c[2] * (x ** 2 - y ** 2),
    ], dim=-1)


def shade(albedo: torch.Tensor, normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Lit colour = albedo · irradiance (SPEC 3.10), no clamping.

    albedo: (B, N, 3) in [0, 1]; normals: (B, N, 3) unit, world axes;
    gamma: (B, 27) channel-major SH coefficients without the 0.8 DC offset.
    Returns (B, N, 3).
    """
    light = gamma.view(-1, 3, 9).clone()
    light[:, :, 0] = light[:, :, 0] + C.INIT_LIGHT_DC
    irradiance = torch.einsum("bnk,bck->bnc", sh_basis(normals), light)
    return albedo * irradiance


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor,
                   point_buf: torch.Tensor) -> torch.Tensor:
    """Per-vertex unit normals as the original computes them (SPEC 3.9).

    vertices: (B, N, 3); triangles: (F, 3) int64; point_buf: (N, 8) int64 incident
    triangles padded with F (which selects an appended zero normal). Returns (B, N, 3).
    """
    v1, v2, v3 = (vertices[:, triangles[:, k]] for k in range(3))
    face_normals = torch.nn.functional.normalize(torch.cross(v1 - v2, v2 - v3, dim=-1), dim=-1)
    padded = torch.cat([face_normals, face_normals.new_zeros(face_normals.shape[0], 1, 3)], dim=1)
    summed = padded[:, point_buf].sum(dim=2)
    return torch.nn.functional.normalize(summed, dim=-1)


def front_triangle_flags(triangles: torch.Tensor, front_triangles: torch.Tensor) -> torch.Tensor:
    """(F + 1,) bool indexed by a rasterizer's triangle id + 1 (0 = background): whether
    that triangle of ``triangles`` is one of ``front_triangles`` (same vertices, any order).
    With it one render of the whole mesh also gives the front-face mask."""
    size = int(torch.cat([triangles, front_triangles]).max()) + 1   # vertex count bound
    def keyed(tris: torch.Tensor) -> torch.Tensor:
        ordered = tris.sort(dim=1).values
        return (ordered[:, 0] * size + ordered[:, 1]) * size + ordered[:, 2]
    flags = torch.isin(keyed(triangles), keyed(front_triangles))
    return torch.cat([flags.new_zeros(1), flags])


class FaceModel(torch.nn.Module):
    """A MorphableModel with the original's camera and lighting, as a torch module.

    ``compute(coeffs)`` gives the FaceGeometry of a batch; the module's buffers follow
    ``.to(device)``. ``recenter`` subtracts the mean-shape centroid once, as the original.
    """

    def __init__(self, model: MorphableModel, camera: Camera = Camera(), recenter: bool = True):
        super().__init__()
        model.validate()
        self.name = model.name
        self.camera = camera
        mean_shape = model.mean_shape.float()
        if recenter:
            mean_shape = mean_shape - mean_shape.mean(dim=0, keepdim=True)
        self.register_buffer("mean_shape", mean_shape.reshape(-1))
        self.register_buffer("id_basis", model.id_basis.float())
        self.register_buffer("exp_basis", model.exp_basis.float())
        self.register_buffer("mean_albedo", model.mean_albedo.float().reshape(-1))
        self.register_buffer("tex_basis", model.tex_basis.float())
        self.register_buffer("triangles", model.triangles.long())
        self.register_buffer("front_triangles", model.front_triangles.long())
        self.register_buffer("front_vertex_ids", model.front_vertex_ids.long())
        self.register_buffer("front_triangle_flags", front_triangle_flags(self.triangles, self.front_triangles))
        self.register_buffer("point_buf", model.point_buf.long())
        self.register_buffer("landmark_ids", model.landmark_ids.long())
        self.register_buffer("skin_mask", model.skin_mask.bool())
        self.uvs = model.uvs
        self.coeff_sizes = model.coeff_sizes

    @property
    def n_vertices(self) -> int:
        return self.mean_shape.shape[0] // 3

    def shape(self, id_coeffs: torch.Tensor, exp_coeffs: torch.Tensor) -> torch.Tensor:
        """(B, n_id), (B, n_exp) -> canonical shape (B, N, 3) in model units (dm)."""
        flat = self.mean_shape + id_coeffs @ self.id_basis.T + exp_coeffs @ self.exp_basis.T
        return flat.view(flat.shape[0], -1, 3)

    def albedo(self, tex_coeffs: torch.Tensor) -> torch.Tensor:
        """(B, n_tex) -> albedo (B, N, 3), 0-255 model values divided by 255."""
        flat = (self.mean_albedo + tex_coeffs @ self.tex_basis.T) / C.TEXTURE_SCALE
        return flat.view(flat.shape[0], -1, 3)

    def pose(self, shape: torch.Tensor, angles: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """World vertices R·S + t. shape (B,N,3); angles (B,3) radians; trans (B,3) dm."""
        return shape @ rotation_matrix(angles).transpose(1, 2) + trans[:, None, :]

    def compute(self, coeffs: Coeffs, with_color: bool = True) -> FaceGeometry:
        """Everything the renderer and losses need for a batch (see FaceGeometry)."""
        self._check(coeffs)
        canonical = self.shape(coeffs.id, coeffs.exp)
        world = self.pose(canonical, coeffs.angle, coeffs.trans)
        camera_points = self.camera.to_camera_space(world)
        landmarks = self.camera.project(camera_points[:, self.landmark_ids])
        rotation = rotation_matrix(coeffs.angle)
        normals = vertex_normals(canonical, self.triangles, self.point_buf) @ rotation.transpose(1, 2)
        albedo = self.albedo(coeffs.tex)
        color = shade(albedo, normals, coeffs.gamma) if with_color else albedo
        return FaceGeometry(canonical=canonical, world=world, camera=camera_points,
                            normals=normals, albedo=albedo, color=color, landmarks=landmarks)

    def _check(self, coeffs: Coeffs) -> None:
        got = coeffs.sizes()
        if got != self.coeff_sizes:
            raise ValueError(f"coefficient sizes {got} do not match the {self.name} model's "
                             f"{self.coeff_sizes}")

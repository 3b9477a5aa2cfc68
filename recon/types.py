"""The small set of types that carries everything through faceset.

Image coordinate convention (everywhere inside the code): pixel coordinates with x to the
right and **y down**, origin at the centre of the top-left pixel, i.e. pixel (row i,
column j) has centre (x=j, y=i). This is the convention of the detection files and of the
``lm68`` saved in ``.mat`` files. The original mixes y-up and y-down internally; its
y-up values convert with ``y_down = H - 1 - y_up``, at file boundaries only.

World / model space: x to the subject's left (image right), y up, z towards the camera,
in model units (decimetres for BFM09 and the embedded model). Camera space: x, y as world,
z = positive depth (distance - z_world), as in the original.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Callable, Optional, TypeVar

import torch

from . import constants as C

Batch = TypeVar("Batch", bound="TensorBatch")


class TensorBatch:
    """What the dataclasses of batch-first tensors share (``Coeffs``, ``FaceGeometry``,
    ``recon.render.RenderOutput``): every field is a tensor with the batch first."""

    @property
    def batch_size(self) -> int:
        return getattr(self, fields(self)[0].name).shape[0]

    def map(self: Batch, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """Apply ``fn`` to every field (e.g. ``lambda t: t.to(device)``)."""
        return type(self)(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def __getitem__(self: Batch, index) -> Batch:
        """Select batch items; an int keeps the batch dimension."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self.map(lambda t: t[index])

    def detach(self: Batch) -> Batch:
        return self.map(torch.Tensor.detach)

    def to(self: Batch, device: torch.device | str) -> Batch:
        return self.map(lambda t: t.to(device))


@dataclass
class Coeffs(TensorBatch):
    """Named coefficient groups of a batch; every field is (B, K) float.

    id (B, n_id), exp (B, n_exp), tex (B, n_tex): PCA coefficients in units of standard
    deviations; angle (B, 3): Euler angles x, y, z in radians (R = Rz Ry Rx);
    gamma (B, 27): SH lighting, channel-major (9 R, 9 G, 9 B), without the 0.8 DC offset;
    trans (B, 3): translation in model units.

    Examples:
        >>> coeffs = Coeffs.zeros(2)                 # the original's BFM09 sizes
        >>> coeffs.to_vector().shape
        torch.Size([2, 257])
        >>> coeffs[1].batch_size, coeffs.sizes()["exp"]
        (1, 64)
    """

    id: torch.Tensor
    exp: torch.Tensor
    tex: torch.Tensor
    angle: torch.Tensor
    gamma: torch.Tensor
    trans: torch.Tensor

    GROUPS = C.COEFF_GROUPS

    @staticmethod
    def sizes_for(n_id: int = C.BFM_ID_DIM, n_exp: int = C.BFM_EXP_DIM,
                  n_tex: int = C.BFM_TEX_DIM) -> dict[str, int]:
        """Group sizes of the flat vector; the defaults give the original 257 layout."""
        return {"id": n_id, "exp": n_exp, "tex": n_tex, "angle": C.ANGLE_DIM,
                "gamma": C.GAMMA_DIM, "trans": C.TRANS_DIM}

    @classmethod
    def zeros(cls, batch: int, sizes: Optional[dict[str, int]] = None,
              device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "Coeffs":
        sizes = sizes or cls.sizes_for()
        return cls(**{g: torch.zeros(batch, sizes[g], device=device, dtype=dtype)
                      for g in cls.GROUPS})

    @classmethod
    def from_vector(cls, vector: torch.Tensor, sizes: Optional[dict[str, int]] = None) -> "Coeffs":
        """Split a (B, D) vector laid out id | exp | tex | angle | gamma | trans."""
        sizes = sizes or cls.sizes_for()
        total = sum(sizes[g] for g in cls.GROUPS)
        if vector.ndim != 2 or vector.shape[1] != total:
            raise ValueError(f"coefficient vector must be (B, {total}), got {tuple(vector.shape)}")
        parts = torch.split(vector, [sizes[g] for g in cls.GROUPS], dim=1)
        return cls(**dict(zip(cls.GROUPS, parts)))

    def to_vector(self) -> torch.Tensor:
        """(B, D) vector in the original's order (257 for BFM09 sizes)."""
        return torch.cat([getattr(self, g) for g in self.GROUPS], dim=1)

    def sizes(self) -> dict[str, int]:
        return {g: getattr(self, g).shape[1] for g in self.GROUPS}

    def replace(self, **changes: torch.Tensor) -> "Coeffs":
        return dataclasses.replace(self, **changes)

    @classmethod
    def cat(cls, items: list["Coeffs"]) -> "Coeffs":
        return cls(**{g: torch.cat([getattr(c, g) for c in items]) for g in cls.GROUPS})

    def to_numpy_dict(self) -> dict:
        return {g: getattr(self, g).detach().cpu().float().numpy() for g in self.GROUPS}

    @classmethod
    def from_numpy_dict(cls, values: dict, dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu") -> "Coeffs":
        """Coeffs from a group name -> array mapping (e.g. ``recon.io.read_coeffs_mat``).

        values: every group of ``GROUPS`` as a (K,) array (one item: batch 1) or (B, K);
        other keys (``lm68``) are ignored. The arrays are copied into ``dtype`` tensors.

        Examples:
            >>> import numpy as np
            >>> values = {g: np.zeros(n) for g, n in Coeffs.sizes_for(80, 64, 80).items()}
            >>> Coeffs.from_numpy_dict(values).gamma.shape
            torch.Size([1, 27])
        """
        missing = [g for g in cls.GROUPS if g not in values]
        if missing:
            raise ValueError(f"coefficient group(s) missing: {', '.join(missing)}")
        tensors = {g: torch.tensor(values[g], dtype=dtype, device=device) for g in cls.GROUPS}
        return cls(**{g: t[None] if t.ndim == 1 else t for g, t in tensors.items()})

    def neutral(self) -> "Coeffs":
        """The same identity and albedo with expression, pose and lighting zero: the
        canonical (unposed, neutral-expression) face of each batch item. Sizes, dtype and
        device are kept; id and tex are the same tensors (not copies: a copy may change
        their memory layout, and with it the last bit of a matrix product).

        Examples:
            >>> coeffs = Coeffs.zeros(1).replace(exp=torch.ones(1, 64), id=torch.ones(1, 80))
            >>> neutral = coeffs.neutral()
            >>> float(neutral.exp.abs().sum()), float(neutral.id.sum())
            (0.0, 80.0)
        """
        zero = {g: torch.zeros_like(getattr(self, g)) for g in ("exp", "angle", "gamma", "trans")}
        return self.replace(**zero)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera of the original: at (0, 0, distance) looking down -z, y up.

    ``focal_x``, ``focal_y`` in pixels; ``center_x``, ``center_y`` is the principal point in
    the original's **y-up** pixel convention (column, H - 1 - row); the defaults are the
    original's 1015 / 112 / 10 / 224x224. Landmark projection follows the original exactly:
    u = fx X/Z + cx, v_up = fy Y/Z + cy, returned as y-down (u, H - 1 - v_up). The
    rasterizer samples pixel centres of nvdiffrast, which sit half a pixel away from this
    projection (SPEC 12 D2); the renderer keeps the original's behaviour.
    """

    focal_x: float = C.FOCAL
    focal_y: float = C.FOCAL
    center_x: float = C.CENTER
    center_y: float = C.CENTER
    distance: float = C.CAMERA_DISTANCE
    width: int = C.IMAGE_SIZE
    height: int = C.IMAGE_SIZE
    znear: float = C.ZNEAR
    zfar: float = C.ZFAR

    @classmethod
    def from_intrinsics(cls, K, width: int, height: int,
                        distance: float = C.CAMERA_DISTANCE) -> "Camera":
        """From an OpenCV-style 3x3 intrinsics matrix (y-down principal point)."""
        K = torch.as_tensor(K, dtype=torch.float64)
        if K.shape != (3, 3):
            raise ValueError(f"intrinsics must be 3x3, got {tuple(K.shape)}")
        return cls(focal_x=float(K[0, 0]), focal_y=float(K[1, 1]), center_x=float(K[0, 2]),
                   center_y=float(height - 1 - K[1, 2]), distance=distance,
                   width=width, height=height)

    def scaled(self, scale: float) -> "Camera":
        """The camera of an image resized by ``scale`` (e.g. a pyramid level): focal lengths,
        principal point and size times ``scale``, the size rounded and at least 1 pixel.

        With the rasterizer's pixel-centre convention, a render with this camera equals the
        area-downsampled full-size render (for integer 1/scale).

        Examples:
            >>> half = Camera().scaled(0.5)
            >>> half.focal_x, half.center_x, half.width, half.distance
            (507.5, 56.0, 112, 10.0)
        """
        return dataclasses.replace(
            self, focal_x=self.focal_x * scale, focal_y=self.focal_y * scale,
            center_x=self.center_x * scale, center_y=self.center_y * scale,
            width=max(1, round(self.width * scale)), height=max(1, round(self.height * scale)))

    def to_camera_space(self, world: torch.Tensor) -> torch.Tensor:
        """(..., 3) world points -> camera space with z = distance - z_world (positive depth)."""
        return torch.cat([world[..., :2], self.distance - world[..., 2:3]], dim=-1)

    def project(self, cam_points: torch.Tensor) -> torch.Tensor:
        """(..., 3) camera-space points -> (..., 2) y-down pixel coordinates (x, y)."""
        z = cam_points[..., 2]
        u = self.focal_x * cam_points[..., 0] / z + self.center_x
        v_up = self.focal_y * cam_points[..., 1] / z + self.center_y
        return torch.stack([u, (self.height - 1) - v_up], dim=-1)

    def intrinsics(self) -> torch.Tensor:
        """3x3 OpenCV-style matrix (y-down principal point) of this camera."""
        return torch.tensor([[self.focal_x, 0.0, self.center_x],
                             [0.0, self.focal_y, self.height - 1 - self.center_y],
                             [0.0, 0.0, 1.0]], dtype=torch.float64)


@dataclass
class FaceGeometry(TensorBatch):
    """What the face model computes from Coeffs (all batch-first, N vertices).

    canonical (B,N,3): identity+expression shape before pose, model units, world axes;
    world (B,N,3): posed R·S + t; camera (B,N,3): camera space (z = positive depth);
    normals (B,N,3): unit vertex normals rotated by R (world axes, as the original lights);
    albedo (B,N,3): reflectance in [0,1] nominally; color (B,N,3): lit colour (unclamped);
    landmarks (B,68,2): projected landmark vertices, y-down pixels.
    """

    canonical: torch.Tensor
    world: torch.Tensor
    camera: torch.Tensor
    normals: torch.Tensor
    albedo: torch.Tensor
    color: torch.Tensor
    landmarks: torch.Tensor

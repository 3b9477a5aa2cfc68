"""PyTorch3D backend: rasterization by `pytorch3d.renderer.mesh.rasterize_meshes`.

Imported only when used. PyTorch3D replaces the visibility pass only; interpolate and
antialias reuse the built-in implementations, which read the same rast layout.

Not exercised here: PyTorch3D cannot be installed next to torch 2.14 (easypytorch3d pins
torch 2.12.1), so this backend is written from PyTorch3D's documented API and its
agreement test (tests/test_render_backends.py) skips where PyTorch3D is absent.

Conventions mapped here (PyTorch3D's documented NDC): +X left, +Y up, pixel (row i, col j)
at X = 1 - (2j + 1) / W, Y = 1 - (2i + 1) / H for a square image; for H != W the shorter
side spans [-1, 1] and the longer one is scaled by max/min. nvdiffrast's pixel (i, j)
samples x = -1 + (2j + 1) / W, y = -1 + (2i + 1) / H, so the vertices are passed as
X = -x/w, Y = -y/w (times the aspect scale) and Z = w, the view depth PyTorch3D uses for
perspective-correct barycentrics and for the depth test (z/w increases with w, so the
nearest triangle is the same).
"""

from __future__ import annotations

import torch

from . import torch_backend
from .base import Rasterizer


def is_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("pytorch3d") is not None


def _import():
    try:
        from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
        from pytorch3d.structures import Meshes
    except ImportError as error:
        raise ImportError("the pytorch3d renderer backend needs PyTorch3D "
                          "(pip install easypytorch3d, or a PyTorch3D build for your torch)") from error
    return rasterize_meshes, Meshes


class PyTorch3DRasterizer(Rasterizer):
    """PyTorch3D visibility with nvdiffrast's rast layout (u, v, z/w, id + 1); inputs
    checked by `Rasterizer`."""

    def __init__(self, bin_size: int | None = None, max_faces_per_bin: int | None = None) -> None:
        super().__init__()
        # PyTorch3D's own defaults (None: heuristic coarse-to-fine bins on CUDA, naive on
        # CPU); dense meshes may need a larger max_faces_per_bin, or bin_size=0 (naive).
        self.bin_size = bin_size
        self.max_faces_per_bin = max_faces_per_bin

    def _rasterize(self, clip_pos: torch.Tensor, tris: torch.Tensor, resolution) -> torch.Tensor:
        """(B, V, 4) clip, (F, 3) int, (H, W) -> rast (B, H, W, 4) of clip_pos's dtype.

        Triangles with a vertex at w <= 0 are dropped (as the built-in backend does); pixels
        whose z/w falls outside [-1, 1] are cleared.
        """
        height, width = resolution
        rasterize_meshes, Meshes = _import()
        tris = tris.to(device=clip_pos.device, dtype=torch.int64)
        batch, num_tris = clip_pos.shape[0], tris.shape[0]
        w = clip_pos[..., 3:4]
        aspect = torch.tensor([width, height], dtype=clip_pos.dtype, device=clip_pos.device)
        aspect = aspect / min(height, width)
        screen = -clip_pos[..., :2] / w.clamp(min=1e-12) * aspect
        verts = torch.cat([screen, w], dim=-1).float()
        # Drop triangles touching w <= 0 by pointing them at a degenerate triple.
        faces = tris[None].expand(batch, -1, -1)
        behind = (clip_pos[..., 3] <= 0)[torch.arange(batch, device=tris.device)[:, None], tris].any(-1)
        faces = torch.where(behind[..., None], torch.zeros_like(faces), faces)
        meshes = Meshes(verts=verts, faces=faces)      # padded (N, V, 3) / (N, F, 3) form
        pix_to_face, _, bary, _ = rasterize_meshes(
            meshes, image_size=(height, width), blur_radius=0.0, faces_per_pixel=1,
            bin_size=self.bin_size, max_faces_per_bin=self.max_faces_per_bin,
            perspective_correct=True, clip_barycentric_coords=False, cull_backfaces=False)
        face = pix_to_face[..., 0]
        bary = bary[..., 0, :].to(clip_pos.dtype)
        covered = face >= 0
        local = face - torch.arange(batch, device=face.device)[:, None, None] * num_tris
        local = torch.where(covered, local, torch.zeros_like(local))
        depth = self._depth(clip_pos, tris, local, bary)
        covered = covered & (depth >= -1) & (depth <= 1)
        rast = torch.stack([bary[..., 0], bary[..., 1], depth.detach(),
                            (local + 1).to(clip_pos.dtype)], dim=-1)
        return rast * covered[..., None].to(rast.dtype)

    @staticmethod
    def _depth(clip_pos, tris, local, bary):
        """z/w at each pixel from the clip-space barycentrics: sum b z / sum b w."""
        batch = clip_pos.shape[0]
        corner = clip_pos[torch.arange(batch, device=tris.device)[:, None, None, None], tris[local]]
        numerator = (bary * corner[..., 2]).sum(-1)
        denominator = (bary * corner[..., 3]).sum(-1)
        return numerator / torch.where(denominator == 0, torch.ones_like(denominator), denominator)

    def _interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
        return torch_backend.interpolate(attr, rast, tris)

    def topology_hash(self, tris: torch.Tensor) -> torch_backend.Topology:
        return torch_backend.build_topology(tris)

    def _antialias(self, color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
                   tris: torch.Tensor, topology_hash: torch_backend.Topology) -> torch.Tensor:
        return torch_backend.antialias(color, rast, clip_pos, tris, topology=topology_hash)

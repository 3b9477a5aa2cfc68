"""Differentiable rendering: nvdiffrast's three calls, on any device, behind one interface.

    rast  = rasterize(clip_pos, tris, (H, W))            # (B, H, W, 4)
    image = interpolate(colors, rast, tris)              # (B, H, W, C)
    image = antialias(image, rast, clip_pos, tris)       # optional silhouette gradients

``backend=`` picks the implementation: "torch" (built in, CPU and CUDA), "nvdiffrast"
(CUDA; context "cuda" or "gl"), "pytorch3d" (where installed) or "auto" (nvdiffrast on CUDA
when installed, else torch). The outputs have one layout whatever the backend, so a rast
from one can be interpolated by another. `clip_space` is the original's projection, shared
by all backends; `MeshRenderer` renders `FaceGeometry` (mask, image, depth).

Conventions (nvdiffrast's): clip_pos (B, V, 4) homogeneous clip space, NDC = xyz / w;
pixel (row i, column j) samples NDC (-1 + (2j + 1) / W, -1 + (2i + 1) / H) (with
`clip_space`, row 0 is the top of the image); rast holds (u, v, z/w, triangle_id + 1),
0 everywhere on background; u, v are perspective-correct barycentrics with the surface
point at u p0 + v p1 + (1 - u - v) p2; the smallest z/w wins; no back-face culling.
"""

from __future__ import annotations

import torch

from typing import Any, Optional

from .backends import BACKENDS, TorchRasterizer, get_rasterizer, make_rasterizer, resolve_backend
from .base import Rasterizer
from .mesh_renderer import MeshRenderer, RenderOutput
from .projection import clip_space, projection_matrix
from .texture import bake_texture
from .torch_backend import Topology, build_topology

__all__ = ["rasterize", "interpolate", "antialias", "antialias_construct_topology_hash",
           "clip_space", "projection_matrix", "MeshRenderer", "RenderOutput", "Rasterizer",
           "get_rasterizer", "make_rasterizer", "resolve_backend", "BACKENDS", "TorchRasterizer",
           "Topology", "build_topology", "bake_texture"]


def rasterize(clip_pos: torch.Tensor, tris: torch.Tensor, resolution: tuple[int, int],
              backend: str = "auto", nvdiffrast_context: str = "cuda") -> torch.Tensor:
    """Which triangle covers each pixel, with barycentrics and depth (instance mode).

    clip_pos: (B, V, 4) float clip-space positions (see `clip_space`).
    tris: (F, 3) integer vertex indices, shared by every batch item.
    resolution: (H, W) pixels.
    Returns rast (B, H, W, 4), float (float32 for nvdiffrast / pytorch3d, clip_pos's dtype
    for torch): u, v (perspective-correct barycentrics of vertices 0 and 1, unitless),
    z/w (NDC depth in [-1, 1]) and triangle_id + 1 (0 = background). u and v are
    differentiable in clip_pos; z/w and the id carry no gradient (as nvdiffrast).
    Clipping (torch and pytorch3d backends): a triangle with any vertex at w <= 0 is skipped
    whole, pixels keep only z/w in [-1, 1]; nvdiffrast clips triangles exactly.
    The backend's rasterizer (and nvdiffrast's context) is made once per device and reused.

    Examples:
        >>> pos = torch.tensor([[[-1.0, -1.0, 0.0, 1.0], [1.2, -1.0, 0.0, 1.0], [-1.0, 1.2, 0.0, 1.0]]])
        >>> rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (4, 4), backend="torch")
        >>> rast.shape
        torch.Size([1, 4, 4, 4])
        >>> rast[0, ..., 3]          # triangle id + 1 where covered: x + y <= 0.2 in NDC
        tensor([[1., 1., 1., 1.],
                [1., 1., 1., 0.],
                [1., 1., 0., 0.],
                [1., 0., 0., 0.]])
    """
    return get_rasterizer(backend, clip_pos.device, nvdiffrast_context).rasterize(
        clip_pos, tris, resolution)


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor,
                backend: str = "auto") -> torch.Tensor:
    """Per-vertex attributes to pixels: u a0 + v a1 + (1 - u - v) a2 of the covering triangle.

    attr: (B, V, C) or (V, C) float, any units; a batch of 1 broadcasts.
    rast: (B, H, W, 4) from `rasterize`; tris: (F, 3) int as given to `rasterize`.
    Returns (B, H, W, C) float, 0 on background pixels; differentiable in attr and, through
    rast's u, v, in the clip-space positions.

    Examples:
        >>> pos = torch.tensor([[[-1.0, -1.0, 0.0, 1.0], [1.2, -1.0, 0.0, 1.0], [-1.0, 1.2, 0.0, 1.0]]])
        >>> tris = torch.tensor([[0, 1, 2]])
        >>> rast = rasterize(pos, tris, (4, 4), backend="torch")
        >>> x = interpolate(pos[0, :, :1], rast, tris, backend="torch")   # NDC x of each pixel
        >>> x[0, :2, :, 0]        # pixel centres sit at NDC -1 + (2j + 1) / W; 0 off the triangle
        tensor([[-0.7500, -0.2500,  0.2500,  0.7500],
                [-0.7500, -0.2500,  0.2500,  0.0000]])
    """
    return get_rasterizer(backend, rast.device).interpolate(attr, rast, tris)


def antialias_construct_topology_hash(tris: torch.Tensor, backend: str = "auto") -> Any:
    """The edge topology of ``tris`` (F, 3) int that `antialias` needs, built once per mesh
    (nvdiffrast's ``antialias_construct_topology_hash``); for the backend ``backend`` on
    tris's device. Without one, `antialias` builds it and keeps it for the same tris.

    Examples:
        >>> topology = antialias_construct_topology_hash(torch.tensor([[0, 1, 2], [2, 1, 3]]), "torch")
        >>> topology.wing      # across each edge, the other triangle's far vertex (own vertex: border)
        tensor([[3, 1, 2],
                [2, 1, 0]])
    """
    return get_rasterizer(backend, tris.device).topology_hash(tris)


def antialias(color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor, tris: torch.Tensor,
              topology_hash: Optional[Any] = None, backend: str = "auto") -> torch.Tensor:
    """Analytic silhouette antialiasing (nvdiffrast's method), for visibility gradients.

    For each horizontally or vertically adjacent pixel pair with different triangle ids,
    the nearer triangle's silhouette edge (an edge with no partner, or whose partner
    folds to the same side) that crosses the segment between the two pixel centres blends
    the two pixel colours in proportion to how far the crossing is from the midpoint.
    color: (B, H, W, C) float image (e.g. from `interpolate`); rast (B, H, W, 4), clip_pos
    (B, V, 4) and tris (F, 3) exactly as rasterized; topology_hash: from
    `antialias_construct_topology_hash` with the same backend (None: built here, and kept
    while the same tris come). Returns (B, H, W, C), differentiable in color and in
    clip_pos (through the crossing positions). Shared edges must use the same vertex
    indices in both triangles, or they count as silhouettes.

    Examples:
        >>> pos = torch.tensor([[[-0.9, -0.9, 0.0, 1.0], [0.8, -0.7, 0.0, 1.0], [-0.6, 0.9, 0.0, 1.0]]])
        >>> tris = torch.tensor([[0, 1, 2]])
        >>> rast = rasterize(pos, tris, (8, 8), backend="torch")
        >>> mask = (rast[..., 3:] > 0).float()
        >>> soft = antialias(mask, rast, pos, tris, backend="torch")
        >>> bool(((soft > 0) & (soft < 1)).any()), bool(torch.equal(soft.round(), soft))
        (True, False)
    """
    return get_rasterizer(backend, rast.device).antialias(color, rast, clip_pos, tris, topology_hash)

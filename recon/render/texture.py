"""Baking per-vertex attributes into a UV texture with the rasterizer (UV space as the screen)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .backends import get_rasterizer

SEAM_DILATION_PASSES = 4  # texel rings filled around the covered area (bilinear lookups at seams)


def bake_texture(uvs: torch.Tensor, triangles: torch.Tensor, colors: torch.Tensor,
                 size: int, dilation_passes: int = SEAM_DILATION_PASSES) -> torch.Tensor:
    """Rasterize a mesh in UV space: a (size, size, C) texture image, row 0 = v 1.

    uvs: (N, 2) float texture coordinates in [0, 1], (u right, v up) as in ``.obj`` files.
    triangles: (F, 3) int vertex indices. colors: (N, C) float per-vertex values (e.g. albedo
    in [0, 1]). Returns (size, size, C) of colors' dtype and device, not clamped; texels no
    triangle covers take the mean of their covered neighbours, ring by ring
    (``dilation_passes`` rings), so bilinear lookups at UV seams do not pick up black.
    Runs on the built-in torch backend (any device).

    Examples:
        >>> uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> texture = bake_texture(uvs, torch.tensor([[0, 1, 2]]), torch.eye(3), size=8)
        >>> texture.shape
        torch.Size([8, 8, 3])
        >>> [round(float(v), 3) for v in texture[7, 0]]   # bottom-left texel: near vertex 0
        [0.875, 0.062, 0.062]
    """
    if uvs.ndim != 2 or uvs.shape[1] != 2:
        raise ValueError(f"bake_texture: uvs must be (N, 2), got {tuple(uvs.shape)}")
    if colors.ndim != 2 or colors.shape[0] != uvs.shape[0]:
        raise ValueError(f"bake_texture: colors must be ({uvs.shape[0]}, C), got {tuple(colors.shape)}")
    uvs = uvs.to(colors.device, colors.dtype)
    clip = torch.stack([2 * uvs[:, 0] - 1, 1 - 2 * uvs[:, 1], torch.zeros_like(uvs[:, 0]),
                        torch.ones_like(uvs[:, 0])], dim=-1)[None]
    triangles = triangles.to(colors.device)
    rasterizer = get_rasterizer("torch", colors.device)
    rast = rasterizer.rasterize(clip, triangles, (size, size))
    image = rasterizer.interpolate(colors[None], rast, triangles)[0]
    return dilate(image, rast[0, ..., 3] > 0, dilation_passes)


def dilate(image: torch.Tensor, covered: torch.Tensor, passes: int) -> torch.Tensor:
    """Fill uncovered texels from covered neighbours, one ring per pass.

    image: (H, W, C) float; covered: (H, W) bool. Each pass gives every uncovered texel with
    a covered 3x3 neighbour the mean of those neighbours. Returns (H, W, C).
    """
    values = image.permute(2, 0, 1)[None] * covered[None, None]
    weight = covered[None, None].to(image.dtype)
    for _ in range(passes):
        summed = F.avg_pool2d(values, 3, 1, 1) * 9
        count = F.avg_pool2d(weight, 3, 1, 1) * 9
        fill = (weight == 0) & (count > 0)
        values = torch.where(fill, summed / count.clamp(min=1e-9), values)
        weight = torch.where(fill, torch.ones_like(weight), weight)
    return values[0].permute(1, 2, 0)

"""What every rasterizer backend shares: the input checks, run once at the door of each of
the three calls, and the `Rasterizer` base class whose public methods run them and then the
backend's own ``_rasterize`` / ``_interpolate`` / ``_antialias``."""

from __future__ import annotations

from typing import Any, Optional

import torch

from .torch_backend import broadcast_attr


def check_clip_pos(clip_pos: torch.Tensor) -> None:
    if not isinstance(clip_pos, torch.Tensor) or clip_pos.ndim != 3 or clip_pos.shape[-1] != 4:
        raise ValueError(f"clip_pos must be a (B, V, 4) tensor, got "
                         f"{tuple(clip_pos.shape) if isinstance(clip_pos, torch.Tensor) else type(clip_pos)}")
    if not clip_pos.is_floating_point():
        raise ValueError(f"clip_pos must be floating point, got {clip_pos.dtype}")


def check_tris(tris: torch.Tensor, num_vertices: int) -> None:
    if not isinstance(tris, torch.Tensor) or tris.ndim != 2 or tris.shape[1] != 3:
        raise ValueError(f"tris must be an (F, 3) integer tensor, got "
                         f"{tuple(tris.shape) if isinstance(tris, torch.Tensor) else type(tris)}")
    if tris.is_floating_point() or tris.dtype == torch.bool:
        raise ValueError(f"tris must hold integer vertex indices, got {tris.dtype}")
    if tris.numel() and (int(tris.min()) < 0 or int(tris.max()) >= num_vertices):
        raise ValueError(f"tris index vertices outside [0, {num_vertices}): "
                         f"min {int(tris.min())}, max {int(tris.max())}")


def check_resolution(resolution) -> tuple[int, int]:
    height, width = (int(r) for r in resolution)
    if height <= 0 or width <= 0:
        raise ValueError(f"resolution must be two positive integers (H, W), got {resolution}")
    return height, width


def check_rast(rast: torch.Tensor) -> None:
    if not isinstance(rast, torch.Tensor) or rast.ndim != 4 or rast.shape[-1] != 4:
        raise ValueError(f"rast must be (B, H, W, 4) as returned by rasterize, got "
                         f"{tuple(rast.shape) if isinstance(rast, torch.Tensor) else type(rast)}")


def check_color(color: torch.Tensor, rast: torch.Tensor) -> None:
    if not isinstance(color, torch.Tensor) or color.ndim != 4 or color.shape[:3] != rast.shape[:3]:
        raise ValueError(f"color must be (B, H, W, C) matching rast {tuple(rast.shape[:3])}, "
                         f"got {tuple(color.shape) if isinstance(color, torch.Tensor) else type(color)}")


class Rasterizer:
    """nvdiffrast's three calls for one backend; see `recon.render` for the contracts.

    The public methods check their inputs (the same checks for every backend) and call the
    backend's ``_rasterize``, ``_interpolate`` (attr already (B, V, C)) and ``_antialias``.
    ``topology_hash`` gives what ``antialias`` needs about a triangle list (nvdiffrast's
    topology hash, or the built-in `Topology`); without one, ``antialias`` builds it and
    keeps it for as long as the same triangles come.
    """

    def __init__(self) -> None:
        self._topology: Optional[tuple[torch.Tensor, Any]] = None

    def rasterize(self, clip_pos: torch.Tensor, tris: torch.Tensor, resolution) -> torch.Tensor:
        check_clip_pos(clip_pos)
        check_tris(tris, clip_pos.shape[1])
        return self._rasterize(clip_pos, tris, check_resolution(resolution))

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
        check_rast(rast)
        attr = broadcast_attr(attr, rast.shape[0])
        check_tris(tris, attr.shape[1])
        return self._interpolate(attr, rast, tris)

    def antialias(self, color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
                  tris: torch.Tensor, topology_hash: Optional[Any] = None) -> torch.Tensor:
        check_rast(rast)
        check_clip_pos(clip_pos)
        check_tris(tris, clip_pos.shape[1])
        check_color(color, rast)
        if topology_hash is None:
            topology_hash = self._cached_topology(tris.to(device=rast.device, dtype=torch.int64))
        return self._antialias(color, rast, clip_pos, tris, topology_hash)

    def topology_hash(self, tris: torch.Tensor) -> Any:
        """What ``antialias`` needs to know about ``tris`` (F, 3) int, built once per mesh."""
        raise NotImplementedError

    def _cached_topology(self, tris: torch.Tensor) -> Any:
        if self._topology is None or not (self._topology[0].shape == tris.shape
                                          and torch.equal(self._topology[0], tris)):
            self._topology = (tris, self.topology_hash(tris))
        return self._topology[1]

    def _rasterize(self, clip_pos: torch.Tensor, tris: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError

    def _interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _antialias(self, color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
                   tris: torch.Tensor, topology_hash: Any) -> torch.Tensor:
        raise NotImplementedError

"""Choosing a rasterizer backend by name; every backend has the same three methods."""

from __future__ import annotations

from typing import Optional, Protocol

import torch

from . import nvdiffrast_backend, pytorch3d_backend, torch_backend

BACKENDS = ("auto", "torch", "nvdiffrast", "pytorch3d")


class Rasterizer(Protocol):
    def rasterize(self, clip_pos: torch.Tensor, tris: torch.Tensor, resolution) -> torch.Tensor: ...
    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor) -> torch.Tensor: ...
    def antialias(self, color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
                  tris: torch.Tensor) -> torch.Tensor: ...


class TorchRasterizer:
    """The built-in backend; caches the edge topology of the last triangle list for antialias."""

    def __init__(self, max_pairs: int = torch_backend.DEFAULT_MAX_PAIRS) -> None:
        self.max_pairs = max_pairs
        self._topology: Optional[tuple[torch.Tensor, torch_backend.Topology]] = None

    def rasterize(self, clip_pos: torch.Tensor, tris: torch.Tensor, resolution) -> torch.Tensor:
        return torch_backend.rasterize(clip_pos, tris, resolution, max_pairs=self.max_pairs)

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
        return torch_backend.interpolate(attr, rast, tris)

    def antialias(self, color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
                  tris: torch.Tensor) -> torch.Tensor:
        tris = tris.to(device=rast.device, dtype=torch.int64)
        if self._topology is None or not (self._topology[0].shape == tris.shape
                                          and torch.equal(self._topology[0], tris)):
            self._topology = (tris, torch_backend.build_topology(tris))
        return torch_backend.antialias(color, rast, clip_pos, tris, topology=self._topology[1])


def resolve_backend(name: str, device: torch.device | str) -> str:
    """The concrete backend for ``name`` on ``device``.

    "auto" picks nvdiffrast for CUDA tensors when nvdiffrast is installed, otherwise the
    built-in torch backend (PyTorch3D only when asked for by name).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown renderer backend {name!r}; choose one of {BACKENDS}")
    if name != "auto":
        return name
    if torch.device(device).type == "cuda" and nvdiffrast_backend.is_available():
        return "nvdiffrast"
    return "torch"


def make_rasterizer(name: str = "auto", device: torch.device | str = "cpu",
                    nvdiffrast_context: str = "cuda") -> Rasterizer:
    """A rasterizer object for backend ``name`` ("auto", "torch", "nvdiffrast", "pytorch3d").

    nvdiffrast_context: "cuda" (RasterizeCudaContext) or "gl" (RasterizeGLContext).
    """
    concrete = resolve_backend(name, device)
    if concrete == "torch":
        return TorchRasterizer()
    if concrete == "nvdiffrast":
        return nvdiffrast_backend.NvdiffrastRasterizer(context=nvdiffrast_context)
    return pytorch3d_backend.PyTorch3DRasterizer()

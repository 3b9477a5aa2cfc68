"""Choosing a rasterizer backend by name; every backend is a `Rasterizer` (base.py) with the
same three calls, and one of each is kept per backend, device and context (`get_rasterizer`),
as nvdiffrast keeps its context: created once, not on every call."""

from __future__ import annotations

import functools

import torch

from .. import constants as C
from . import nvdiffrast_backend, pytorch3d_backend, torch_backend
from .base import Rasterizer

BACKENDS = C.RENDERER_BACKENDS


class TorchRasterizer(Rasterizer):
    """The built-in backend (any device); max_pairs bounds the rasterizer's memory."""

    def __init__(self, max_pairs: int = torch_backend.DEFAULT_MAX_PAIRS) -> None:
        super().__init__()
        self.max_pairs = max_pairs

    def _rasterize(self, clip_pos: torch.Tensor, tris: torch.Tensor, resolution) -> torch.Tensor:
        return torch_backend.rasterize(clip_pos, tris, resolution, max_pairs=self.max_pairs)

    def _interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
        return torch_backend.interpolate(attr, rast, tris)

    def topology_hash(self, tris: torch.Tensor) -> torch_backend.Topology:
        return torch_backend.build_topology(tris.to(torch.int64))

    def _antialias(self, color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
                   tris: torch.Tensor, topology_hash: torch_backend.Topology) -> torch.Tensor:
        return torch_backend.antialias(color, rast, clip_pos, tris, topology=topology_hash)


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
    """A new rasterizer object for backend ``name`` ("auto", "torch", "nvdiffrast", "pytorch3d").

    nvdiffrast_context: "cuda" (RasterizeCudaContext) or "gl" (RasterizeGLContext).
    Most callers want `get_rasterizer`, which keeps one per backend and device.
    """
    concrete = resolve_backend(name, device)
    if concrete == "torch":
        return TorchRasterizer()
    if concrete == "nvdiffrast":
        return nvdiffrast_backend.NvdiffrastRasterizer(context=nvdiffrast_context)
    return pytorch3d_backend.PyTorch3DRasterizer()


def get_rasterizer(name: str = "auto", device: torch.device | str = "cpu",
                   nvdiffrast_context: str = "cuda") -> Rasterizer:
    """The rasterizer of backend ``name`` for ``device``: made on first use, then reused
    (an nvdiffrast context is expensive to create; the antialias topology is kept)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _cached_rasterizer(resolve_backend(name, device), device, nvdiffrast_context)


@functools.lru_cache(maxsize=None)
def _cached_rasterizer(concrete: str, device: torch.device, nvdiffrast_context: str) -> Rasterizer:
    return make_rasterizer(concrete, device, nvdiffrast_context)

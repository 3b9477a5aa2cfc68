"""nvdiffrast backend (what the original renders with): CUDA tensors only.

`nvdiffrast.torch` is imported on first use, never at module import, so the package works
where nvdiffrast is absent. Install with ``pip install diffrp-nvdiffrast`` (a wheel of
nvdiffrast's sources); its CUDA plugin compiles on first use (needs nvcc and ninja).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from .base import Rasterizer

CONTEXTS = ("cuda", "gl")


def is_available() -> bool:
    """True when nvdiffrast can be imported and CUDA is present."""
    import importlib.util
    return torch.cuda.is_available() and importlib.util.find_spec("nvdiffrast") is not None


def _import():
    try:
        import nvdiffrast.torch as dr
    except ImportError as error:
        raise ImportError("the nvdiffrast renderer backend needs nvdiffrast: "
                          "pip install diffrp-nvdiffrast (CUDA + nvcc required)") from error
    return dr


def _load_plugin(dr, gl: bool) -> None:
    """Build / load nvdiffrast's plugin, working around newer torch versions.

    nvdiffrast imports its JIT-built plugin by module name after building it, but recent
    torch (2.11 seen) loads extensions without registering them in sys.modules, so that
    import fails although the build succeeded. Then register the built module and retry.
    """
    try:
        dr.ops._get_plugin(gl=gl)
    except ModuleNotFoundError as error:
        name = error.name or ""
        if not name.startswith("nvdiffrast_plugin"):
            raise
        import sys
        import torch.utils.cpp_extension as extension
        sys.modules[name] = extension._import_module_from_library(
            name, extension._get_build_directory(name, False), True)
        dr.ops._get_plugin(gl=gl)


def _require_cuda(name: str, tensor: torch.Tensor) -> None:
    if tensor.device.type != "cuda":
        raise ValueError(f"nvdiffrast backend: {name} must be a CUDA tensor, got device {tensor.device}")


class NvdiffrastRasterizer(Rasterizer):
    """nvdiffrast's three calls behind this package's interface (inputs checked by `Rasterizer`).

    context: "cuda" (RasterizeCudaContext, nvdiffrast >= 0.3) or "gl" (RasterizeGLContext,
    needs EGL; the original's default). The context is created on the first call, on the
    device of the first tensors, and reused (``recon.render`` keeps one rasterizer per
    backend, device and context).
    """

    def __init__(self, context: str = "cuda") -> None:
        super().__init__()
        if context not in CONTEXTS:
            raise ValueError(f"nvdiffrast context must be one of {CONTEXTS}, got {context!r}")
        self.context_kind = context
        self._context: Optional[Any] = None

    def _context_for(self, device: torch.device):
        if self._context is None:
            dr = _import()
            _load_plugin(dr, gl=self.context_kind == "gl")
            if self.context_kind == "cuda":
                self._context = dr.RasterizeCudaContext(device=device)
            else:
                self._context = dr.RasterizeGLContext(output_db=False, device=device)
        return self._context

    def _rasterize(self, clip_pos: torch.Tensor, tris: torch.Tensor, resolution) -> torch.Tensor:
        """(B, V, 4) clip, (F, 3) int, (H, W) -> rast (B, H, W, 4) float32 (u, v, z/w, id + 1)."""
        _require_cuda("clip_pos", clip_pos)
        dr = _import()
        rast, _ = dr.rasterize(self._context_for(clip_pos.device), clip_pos.float().contiguous(),
                               tris.to(device=clip_pos.device, dtype=torch.int32).contiguous(),
                               resolution, grad_db=False)
        return rast

    def _interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
        """(B, V, C) attributes -> (B, H, W, C) float32 image of attributes."""
        _require_cuda("rast", rast)
        dr = _import()
        out, _ = dr.interpolate(attr.float().contiguous(), rast.float().contiguous(),
                                tris.to(device=rast.device, dtype=torch.int32).contiguous())
        return out

    def topology_hash(self, tris: torch.Tensor):
        """nvdiffrast's ``antialias_construct_topology_hash`` of tris (F, 3) on CUDA."""
        _require_cuda("tris", tris)
        return _import().antialias_construct_topology_hash(tris.to(torch.int32).contiguous())

    def _antialias(self, color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
                   tris: torch.Tensor, topology_hash) -> torch.Tensor:
        """nvdiffrast.antialias with the given topology hash."""
        _require_cuda("color", color)
        tris32 = tris.to(device=rast.device, dtype=torch.int32).contiguous()
        return _import().antialias(color.float().contiguous(), rast.float().contiguous(),
                                   clip_pos.float().contiguous(), tris32, topology_hash=topology_hash)

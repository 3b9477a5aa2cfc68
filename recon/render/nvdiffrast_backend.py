"""nvdiffrast backend (what the original renders with): CUDA tensors only.

`nvdiffrast.torch` is imported on first use, never at module import, so the package works
where nvdiffrast is absent. Install with ``pip install diffrp-nvdiffrast`` (a wheel of
nvdiffrast's sources); its CUDA plugin compiles on first use (needs nvcc and ninja).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from .torch_backend import check_clip_pos, check_rast, check_resolution, check_tris

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


class NvdiffrastRasterizer:
    """nvdiffrast's three calls behind this package's interface.

    context: "cuda" (RasterizeCudaContext, nvdiffrast >= 0.3) or "gl" (RasterizeGLContext,
    needs EGL; the original's default). The context is created lazily on the first call,
    on the device of the first tensors, and reused.
    """

    def __init__(self, context: str = "cuda") -> None:
        if context not in CONTEXTS:
            raise ValueError(f"nvdiffrast context must be one of {CONTEXTS}, got {context!r}")
        self.context_kind = context
        self._context: Optional[Any] = None
        self._topology: Optional[tuple[torch.Tensor, Any]] = None

    def _context_for(self, device: torch.device):
        if self._context is None:
            dr = _import()
            _load_plugin(dr, gl=self.context_kind == "gl")
            if self.context_kind == "cuda":
                self._context = dr.RasterizeCudaContext(device=device)
            else:
                self._context = dr.RasterizeGLContext(output_db=False, device=device)
        return self._context

    def rasterize(self, clip_pos: torch.Tensor, tris: torch.Tensor, resolution) -> torch.Tensor:
        """(B, V, 4) clip, (F, 3) int, (H, W) -> rast (B, H, W, 4) float32 (u, v, z/w, id + 1)."""
        check_clip_pos(clip_pos)
        check_tris(tris, clip_pos.shape[1])
        _require_cuda("clip_pos", clip_pos)
        dr = _import()
        rast, _ = dr.rasterize(self._context_for(clip_pos.device), clip_pos.float().contiguous(),
                               tris.to(device=clip_pos.device, dtype=torch.int32).contiguous(),
                               check_resolution(resolution), grad_db=False)
        return rast

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
        """(B, V, C) or (V, C) attributes -> (B, H, W, C) float32 image of attributes."""
        check_rast(rast)
        _require_cuda("rast", rast)
        if attr.ndim == 2:
            attr = attr[None]
        if attr.shape[0] == 1 and rast.shape[0] != 1:
            attr = attr.expand(rast.shape[0], -1, -1)
        dr = _import()
        out, _ = dr.interpolate(attr.float().contiguous(), rast.float().contiguous(),
                                tris.to(device=rast.device, dtype=torch.int32).contiguous())
        return out

    def antialias(self, color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor,
                  tris: torch.Tensor) -> torch.Tensor:
        """nvdiffrast.antialias; the topology hash is cached for an unchanged tris tensor."""
        check_rast(rast)
        _require_cuda("color", color)
        dr = _import()
        tris32 = tris.to(device=rast.device, dtype=torch.int32).contiguous()
        if self._topology is None or not (self._topology[0].shape == tris32.shape
                                          and torch.equal(self._topology[0], tris32)):
            self._topology = (tris32, dr.antialias_construct_topology_hash(tris32))
        return dr.antialias(color.float().contiguous(), rast.float().contiguous(),
                            clip_pos.float().contiguous(), tris32, topology_hash=self._topology[1])

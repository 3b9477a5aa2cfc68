"""Backends agree with the built-in one on the same scene (skipped where a backend is absent).

nvdiffrast needs CUDA and `diffrp-nvdiffrast`; PyTorch3D needs a build matching the
installed torch. Neither exists on the CPU development machine, so these run on GPU
machines (see benchmarks/render_gpu_check.py for the full agreement report).
"""

from __future__ import annotations

import pytest
import torch

from recon.render import make_rasterizer, resolve_backend
from recon.render import nvdiffrast_backend, pytorch3d_backend

needs_nvdiffrast = pytest.mark.skipif(not nvdiffrast_backend.is_available(),
                                      reason="nvdiffrast or CUDA not available")
needs_pytorch3d = pytest.mark.skipif(not pytorch3d_backend.is_available(),
                                     reason="PyTorch3D not installed")


def soup(device, seed: int = 0, batch: int = 2, verts: int = 50, faces: int = 40):
    gen = torch.Generator().manual_seed(seed)
    ndc = torch.rand(batch, verts, 3, generator=gen) * 2.4 - 1.2
    ndc[..., 2] *= 0.7
    w = 1 + 2 * torch.rand(batch, verts, 1, generator=gen)
    pos = torch.cat([ndc * w, w], dim=-1).to(device)
    return pos, torch.randint(0, verts, (faces, 3), generator=gen).to(device)


def agreement(name: str, device: str, resolution=(48, 64)):
    pos, tris = soup(device)
    attr = torch.rand(pos.shape[0], pos.shape[1], 3, device=device)
    weight = torch.rand(pos.shape[0], *resolution, 3, device=device)
    rasterizers = [make_rasterizer(backend, device) for backend in ("torch", name)]
    with torch.no_grad():
        ids = [r.rasterize(pos, tris, resolution)[..., 3] for r in rasterizers]
    # Gradients are compared where both picked the same triangle: nvdiffrast snaps vertices
    # to 1/16 pixel before its coverage test, so near-edge pixels may differ.
    weight = weight * (ids[0] == ids[1]).unsqueeze(-1)
    outputs = []
    for rasterizer in rasterizers:
        p, a = pos.clone().requires_grad_(), attr.clone().requires_grad_()
        rast = rasterizer.rasterize(p, tris, resolution)
        image = rasterizer.interpolate(a, rast, tris)
        (image * weight).sum().backward()
        outputs.append((rast.detach(), image.detach(), p.grad, a.grad))
    return outputs


def check_agreement(outputs):
    (r_t, i_t, gp_t, ga_t), (r_o, i_o, gp_o, ga_o) = outputs
    same = (r_t[..., 3] == r_o[..., 3]) & (r_t[..., 3] > 0)
    assert (r_t[..., 3] != r_o[..., 3]).float().mean() < 0.02         # near-edge pixels only
    assert (r_t[..., :2] - r_o[..., :2])[same].abs().max() < 1e-4
    assert (i_t - i_o)[same].abs().max() < 1e-4
    assert (ga_t - ga_o).norm() / ga_o.norm() < 0.01
    assert (gp_t - gp_o).norm() / gp_o.norm() < 0.01


@needs_nvdiffrast
@pytest.mark.gpu
def test_nvdiffrast_agrees_with_torch_backend():
    check_agreement(agreement("nvdiffrast", "cuda"))


@needs_pytorch3d
def test_pytorch3d_agrees_with_torch_backend():
    check_agreement(agreement("pytorch3d", "cuda" if torch.cuda.is_available() else "cpu"))


def test_auto_backend_on_cpu_is_torch():
    assert resolve_backend("auto", "cpu") == "torch"


def test_missing_optional_backend_says_what_to_install():
    if nvdiffrast_backend.is_available():
        pytest.skip("nvdiffrast is installed here")
    pos, tris = soup("cpu")
    with pytest.raises((ImportError, ValueError), match="nvdiffrast"):
        make_rasterizer("nvdiffrast", "cpu").rasterize(pos, tris, (8, 8))

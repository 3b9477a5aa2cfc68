"""Backend agreement and speed on a GPU: built-in torch rasterizer vs nvdiffrast.

Runs, on CUDA, the same scenes through both backends and reports how far they agree:
pixel coverage, triangle ids, barycentrics (u, v), z/w, interpolated attributes, gradients
of an image loss with respect to clip-space positions and attributes, and antialias output
and gradients; then times rasterize + interpolate forward + backward for a 35.7k-vertex
face-density mesh at 224^2, batch 1 and 8, for both backends.

    python benchmarks/render_gpu_check.py --out results_dir [--contexts cuda,gl] [--no-timing]

Without CUDA or without nvdiffrast the nvdiffrast part is skipped (with a line that says so)
and the torch backend alone is checked and timed on the available device.
Writes render_gpu_check.json and render_gpu_check.md into --out.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon.io import write_text_atomic  # noqa: E402
from recon.render import clip_space  # noqa: E402
from recon.render.backends import TorchRasterizer  # noqa: E402
from recon.types import Camera  # noqa: E402


def random_soup(batch: int, verts: int, faces: int, device, seed: int = 0):
    """Random overlapping triangles, both windings, some partly outside, w in [1, 3]."""
    gen = torch.Generator().manual_seed(seed)
    ndc = torch.rand(batch, verts, 3, generator=gen) * 2.4 - 1.2
    ndc[..., 2] = ndc[..., 2] * 0.7
    w = 1 + 2 * torch.rand(batch, verts, 1, generator=gen)
    pos = torch.cat([ndc * w, w], dim=-1)
    tris = torch.randint(0, verts, (faces, 3), generator=gen)
    return pos.to(device), tris.to(device)


@functools.lru_cache(maxsize=1)
def _face_model(resolution: int):
    from recon.face_model import FaceModel
    from recon.models.procedural import build_embedded_model
    return FaceModel(build_embedded_model(resolution=resolution))


def face_scene(batch: int, device, resolution: int = 180):
    """The embedded face model at BFM09 density (180 -> 35,820 vertices), posed per item;
    a 189^2 face-sized grid cap when the embedded model cannot be built."""
    from recon.types import Coeffs
    try:
        model = _face_model(resolution)
    except Exception as error:  # the check must still run on the renderer alone
        print(f"embedded model unavailable ({error}); using the grid cap", flush=True)
        from render_meshes import dome_grid
        vertices, tris = dome_grid()
        pos = clip_space(vertices[None].expand(batch, -1, -1).contiguous(), Camera())
        return pos.to(device), tris.to(device)
    coeffs = Coeffs.zeros(batch, model.coeff_sizes)
    gen = torch.Generator().manual_seed(batch)
    coeffs = coeffs.replace(id=0.7 * torch.randn(batch, coeffs.id.shape[1], generator=gen),
                            angle=0.3 * (torch.rand(batch, 3, generator=gen) - 0.5),
                            trans=0.2 * (torch.rand(batch, 3, generator=gen) - 0.5))
    with torch.no_grad():
        geometry = model.compute(coeffs)
    return clip_space(geometry.camera, Camera()).to(device), model.triangles.to(device)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def compare_scene(name, pos, tris, resolution, torch_r, nv_r) -> dict:
    """Agreement numbers between the two rasterizers on one scene."""
    gen = torch.Generator().manual_seed(1)
    attr = torch.rand(pos.shape[0], pos.shape[1], 3, generator=gen).to(pos.device)
    weight = torch.rand(pos.shape[0], *resolution, 3, generator=gen).to(pos.device)
    results = {}
    with torch.no_grad():
        ids = [r.rasterize(pos, tris, resolution)[..., 3] for r in (torch_r, nv_r)]
    # nvdiffrast snaps vertices to a 1/16-pixel grid before its coverage test, so pixel
    # centres within ~1/32 px of an edge may pick the other triangle: gradients are also
    # compared over the pixels where both backends picked the same triangle.
    agree = (ids[0] == ids[1]).unsqueeze(-1).to(weight.dtype)
    outputs = {}
    for label, rasterizer in (("torch", torch_r), ("nvdiffrast", nv_r)):
        for masked in (False, True):
            p = pos.clone().requires_grad_()
            a = attr.clone().requires_grad_()
            rast = rasterizer.rasterize(p, tris, resolution)
            image = rasterizer.interpolate(a, rast, tris)
            (image * weight * (agree if masked else 1.0)).sum().backward()
            outputs[label, masked] = (rast.detach(), image.detach(), p.grad, a.grad)
    results["grad_pos_rel_diff_same_id_pixels"] = _relative(outputs["torch", True][2],
                                                            outputs["nvdiffrast", True][2])
    results["grad_attr_rel_diff_same_id_pixels"] = _relative(outputs["torch", True][3],
                                                             outputs["nvdiffrast", True][3])
    outputs = {label: outputs[label, False] for label in ("torch", "nvdiffrast")}
    (r_t, i_t, gp_t, ga_t), (r_n, i_n, gp_n, ga_n) = outputs["torch"], outputs["nvdiffrast"]
    cov_t, cov_n = r_t[..., 3] > 0, r_n[..., 3] > 0
    both = cov_t & cov_n
    same_id = both & (r_t[..., 3] == r_n[..., 3])
    results["pixels"] = int(cov_t.numel())
    results["covered_nvdiffrast"] = int(cov_n.sum())
    results["coverage_mismatch"] = int((cov_t != cov_n).sum())
    results["id_mismatch_where_both_cover"] = int((both & ~same_id).sum())
    results["max_abs_uv_diff_same_id"] = float((r_t[..., :2] - r_n[..., :2])[same_id].abs().max())
    results["max_abs_zw_diff_same_id"] = float((r_t[..., 2] - r_n[..., 2])[same_id].abs().max())
    results["max_abs_interp_diff_same_id"] = float((i_t - i_n)[same_id].abs().max())
    results["grad_pos_rel_diff"] = _relative(gp_t, gp_n)
    results["grad_attr_rel_diff"] = _relative(ga_t, ga_n)
    # Antialias on nvdiffrast's rast for both, so only the antialias step is compared.
    aa = {}
    for label, rasterizer in (("torch", torch_r), ("nvdiffrast", nv_r)):
        p = pos.clone().requires_grad_()
        color = i_n.clone().requires_grad_()
        out = rasterizer.antialias(color, r_n, p, tris)
        (out * weight).sum().backward()
        aa[label] = (out.detach(), p.grad, color.grad)
    results["antialias_max_abs_diff"] = float((aa["torch"][0] - aa["nvdiffrast"][0]).abs().max())
    results["antialias_pixels_changed_nvdiffrast"] = int(((aa["nvdiffrast"][0] - i_n).abs().sum(-1) > 0).sum())
    results["antialias_pixels_changed_torch"] = int(((aa["torch"][0] - i_n).abs().sum(-1) > 0).sum())
    results["antialias_grad_pos_rel_diff"] = _relative(aa["torch"][1], aa["nvdiffrast"][1])
    results["antialias_grad_color_rel_diff"] = _relative(aa["torch"][2], aa["nvdiffrast"][2])
    return {name: results}


def time_backend(rasterizer, pos, tris, resolution, repeats: int = 20) -> float:
    """Mean ms per image of rasterize + interpolate forward + backward."""
    attr = torch.rand(pos.shape[0], pos.shape[1], 3, device=pos.device, requires_grad=True)
    p = pos.clone().requires_grad_()

    def step():
        rast = rasterizer.rasterize(p, tris, resolution)
        rasterizer.interpolate(attr, rast, tris).sum().backward()

    for _ in range(3):
        step()
    if pos.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if pos.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / repeats / pos.shape[0]


def nvdiffrast_rasterizer(context: str):
    try:
        from recon.render.nvdiffrast_backend import NvdiffrastRasterizer, is_available
        if not is_available():
            return None, "nvdiffrast or CUDA not available"
        rasterizer = NvdiffrastRasterizer(context=context)
        probe, tris = random_soup(1, 3, 1, "cuda")
        start = time.perf_counter()
        rasterizer.rasterize(probe, tris, (8, 8))
        return rasterizer, f"ready in {time.perf_counter() - start:.1f} s (includes plugin build)"
    except Exception as error:  # report any build / context failure and carry on
        return None, f"{type(error).__name__}: {error}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--contexts", default="cuda",
                        help="comma-separated nvdiffrast contexts to check: cuda, gl")
    parser.add_argument("--no-timing", action="store_true", help="skip the speed measurements")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "torch": torch.__version__}
    torch_r = TorchRasterizer()
    contexts = [c for c in args.contexts.split(",") if c]
    nv = {}
    for context in contexts:
        nv[context], report[f"nvdiffrast_{context}"] = nvdiffrast_rasterizer(context) if device == "cuda" \
            else (None, "skipped: no CUDA")
        print(f"nvdiffrast {context}: {report[f'nvdiffrast_{context}']}", flush=True)

    scenes = {"soup_64x48_b3": (*random_soup(3, 60, 40, device), (48, 64)),
              "face_224_b2": (*face_scene(2, device), (224, 224))}
    for context, rasterizer in nv.items():
        if rasterizer is None:
            continue
        for name, (pos, tris, resolution) in scenes.items():
            result = compare_scene(f"{name}_{context}", pos, tris, resolution, torch_r, rasterizer)
            report.update(result)
            print(json.dumps(result), flush=True)

    timing = {}
    for batch in () if args.no_timing else (1, 8):
        pos, tris = face_scene(batch, device)
        timing[f"torch_{device}_b{batch}"] = time_backend(torch_r, pos, tris, (224, 224))
        for context, rasterizer in nv.items():
            if rasterizer is not None:
                timing[f"nvdiffrast_{context}_b{batch}"] = time_backend(rasterizer, pos, tris, (224, 224))
    report["ms_per_image_fwd_bwd"] = timing
    print(json.dumps(timing), flush=True)
    write_text_atomic(args.out / "render_gpu_check.json", json.dumps(report, indent=2))
    lines = ["| measurement | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in report.items() if not isinstance(value, dict)]
    for key, value in report.items():
        if isinstance(value, dict):
            lines += [f"| {key}.{k} | {v:.4g} |" if isinstance(v, float) else f"| {key}.{k} | {v} |"
                      for k, v in value.items()]
    write_text_atomic(args.out / "render_gpu_check.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

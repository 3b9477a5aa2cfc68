"""Renderer speed: rasterize + interpolate, forward and forward + backward, ms per image.

    python benchmarks/render_speed.py [--bfm-info facemodel_info.mat] [--batches 1 8]
                                      [--repeats 10] [--threads N] [--device cpu] [--out FILE]

Mesh: the embedded face model at BFM09 density (resolution 180: 35,820 vertices, 70,884
triangles) posed per batch item, or, with --bfm-info, BFM09's own 35,709-vertex /
70,789-triangle topology (facemodel_info.mat ``tri``) on a face-sized cap. 224 x 224.
Every backend present on the device is timed in the same run (torch always; PyTorch3D
where installed; nvdiffrast on CUDA) and reported as a ratio to the torch backend.
Times are wall clock (median of --repeats after 2 warm-ups) and, on CPU, process CPU time
(robust to other load on the machine, but summed over threads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon.render import clip_space, make_rasterizer  # noqa: E402
from recon.render import nvdiffrast_backend, pytorch3d_backend  # noqa: E402
from recon.types import Camera  # noqa: E402


def embedded_scene(batch: int):
    from recon.face_model import FaceModel
    from recon.models.procedural import build_embedded_model
    from recon.types import Coeffs
    model = FaceModel(build_embedded_model(resolution=180, n_id=8, n_exp=4, n_tex=4))
    gen = torch.Generator().manual_seed(0)
    coeffs = Coeffs.zeros(batch, model.coeff_sizes).replace(
        id=torch.randn(batch, 8, generator=gen) * 0.7,
        angle=(torch.rand(batch, 3, generator=gen) - 0.5) * 0.4)
    with torch.no_grad():
        geometry = model.compute(coeffs)
    return geometry.camera, model.triangles, "embedded model, resolution 180"


def bfm_scene(batch: int, info: Path):
    from render_meshes import bfm_topology_dome
    vertices, tris = bfm_topology_dome(info)
    return vertices[None].expand(batch, -1, -1).contiguous(), tris, "BFM09 topology on a cap"


def measure(rasterizer, camera_points, tris, backward: bool, repeats: int, device):
    """(median wall ms, median process-CPU ms) per call of rasterize + interpolate (+ backward)."""
    colors = torch.rand(camera_points.shape[0], camera_points.shape[1], 3, device=device)
    points = camera_points.to(device)
    tris = tris.to(device)

    def step():
        p = points.clone().requires_grad_(backward)
        c = colors.clone().requires_grad_(backward)
        rast = rasterizer.rasterize(clip_space(p, Camera()), tris, (224, 224))
        image = rasterizer.interpolate(c, rast, tris)
        if backward:
            image.sum().backward()
        if points.device.type == "cuda":
            torch.cuda.synchronize()

    walls, cpus = [], []
    for index in range(repeats + 2):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        if index >= 2:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def available_backends(device: str) -> list[str]:
    names = ["torch"]
    if pytorch3d_backend.is_available():
        names.append("pytorch3d")
    if device == "cuda" and nvdiffrast_backend.is_available():
        names.append("nvdiffrast")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bfm-info", type=Path, help="facemodel_info.mat: use BFM09's topology")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for batch in args.batches:
        points, tris, mesh = bfm_scene(batch, args.bfm_info) if args.bfm_info else embedded_scene(batch)
        base = {}
        for name in available_backends(args.device):
            rasterizer = make_rasterizer(name, args.device)
            for backward in (False, True):
                wall, cpu = measure(rasterizer, points, tris, backward, args.repeats, args.device)
                key = (backward,)
                base.setdefault(key, wall) if name == "torch" else None
                rows.append(f"| {name} | {batch} | {'fwd+bwd' if backward else 'fwd'} | "
                            f"{wall / batch:.1f} | {cpu / batch:.1f} | {wall / base[key]:.2f} |")
                print(rows[-1], flush=True)
    header = [f"Mesh: {mesh}, {points.shape[1]} vertices, {tris.shape[0]} triangles, 224x224, "
              f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{os.cpu_count()} cores visible.", "",
              "| backend | batch | pass | wall ms / image | CPU ms / image | wall vs torch |",
              "|---|---|---|---|---|---|"]
    table = "\n".join(header + rows) + "\n"
    print(table)
    if args.out:
        with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False, suffix=".tmp") as handle:
            handle.write(table)
        os.replace(handle.name, args.out)


if __name__ == "__main__":
    main()

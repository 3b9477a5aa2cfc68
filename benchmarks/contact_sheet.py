"""Contact sheet of the embedded procedural model: 16 random faces, 4 x 4 renders of 224^2.

Each face draws identity, expression and albedo coefficients from N(0, 1) (expression
scaled down a little so most faces are near neutral), a mild random head pose and a random
low-order SH lighting, and is rendered with the project's FaceModel and MeshRenderer (the
original's camera: focal 1015 on the 224 crop, camera 10 dm away).

    PYTHONPATH=. python benchmarks/contact_sheet.py            # writes docs/contact_sheet.png
    PYTHONPATH=. python benchmarks/contact_sheet.py --seed 3 --resolution 180 --out sheet_r180.png
    PYTHONPATH=. python benchmarks/contact_sheet.py --time-builds 5   # + build-time table in
                                                  # benchmarks/results/procedural_model.md
    PYTHONPATH=. python benchmarks/contact_sheet.py --fit-examples ../shared/data/examples \
        --fit-out fits.png   # + 68-landmark fits of the model to real photos (dlib)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recon.face_model import FaceModel
from recon.io import write_png, write_text_atomic
from recon.models.procedural import (BFM_DENSITY_RESOLUTION, DEFAULT_RESOLUTION,
                                     build_embedded_model)
from recon.render.mesh_renderer import MeshRenderer
from recon.types import Camera, Coeffs

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "procedural_model.md"


@dataclass
class SheetConfig:
    out: Path = REPO_ROOT / "docs" / "contact_sheet.png"
    seed: int = 0
    resolution: int = DEFAULT_RESOLUTION
    rows: int = 4
    cols: int = 4
    expression_scale: float = 0.7     # sigma of the expression draws
    max_yaw_deg: float = 20.0
    max_pitch_deg: float = 10.0
    max_roll_deg: float = 6.0
    light_strength: float = 0.12      # sigma of the first-order SH coefficients
    front_light: float = 0.25         # mean of the SH z coefficient (light from the camera side)
    top_light: float = 0.12           # light from above (the SH y basis carries a minus sign)
    background: float = 0.35          # grey behind the faces
    backend: str = "auto"


def random_coeffs(sizes: dict[str, int], batch: int, config: SheetConfig) -> Coeffs:
    """Random coefficients of a batch: N(0,1) id/tex, scaled exp, mild pose and lighting."""
    g = torch.Generator().manual_seed(config.seed)
    normal = lambda *shape: torch.randn(*shape, generator=g)              # noqa: E731
    uniform = lambda *shape: 2.0 * torch.rand(*shape, generator=g) - 1.0  # noqa: E731
    max_angles = torch.deg2rad(torch.tensor([config.max_pitch_deg, config.max_yaw_deg,
                                             config.max_roll_deg]))
    # One white-ish light per face: first-order SH shared by the channels, slight tint.
    light = torch.zeros(batch, 3, 9)
    light[:, :, 1:4] = config.light_strength * normal(batch, 1, 3)
    light[:, :, 2] += config.front_light
    light[:, :, 1] -= config.top_light
    light[:, :, 4:9] = 0.03 * normal(batch, 1, 5)
    light[:, :, 0] = 0.08 * normal(batch, 1) + 0.02 * normal(batch, 3)
    return Coeffs(id=normal(batch, sizes["id"]),
                  exp=config.expression_scale * normal(batch, sizes["exp"]),
                  tex=normal(batch, sizes["tex"]),
                  angle=uniform(batch, 3) * max_angles,
                  gamma=light.reshape(batch, 27),
                  trans=torch.zeros(batch, 3))


def render_sheet(config: SheetConfig) -> tuple[np.ndarray, dict[str, float]]:
    """(rows*224, cols*224, 3) uint8 sheet and timings in seconds."""
    timings = {}
    start = time.perf_counter()
    model = build_embedded_model(config.resolution)
    timings["build_model_s"] = time.perf_counter() - start
    camera = Camera()
    face_model = FaceModel(model, camera)
    batch = config.rows * config.cols
    coeffs = random_coeffs(face_model.coeff_sizes, batch, config)
    start = time.perf_counter()
    with torch.no_grad():
        geometry = face_model.compute(coeffs)
        out = MeshRenderer(camera, backend=config.backend).render(geometry, face_model.triangles)
    timings["render_s"] = time.perf_counter() - start
    image = out.image.clamp(0.0, 1.0) + config.background * (1.0 - out.mask)
    tiles = (image.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    h, w = tiles.shape[1:3]
    sheet = tiles.reshape(config.rows, config.cols, h, w, 3).transpose(0, 2, 1, 3, 4)
    return sheet.reshape(config.rows * h, config.cols * w, 3), timings


def time_builds(repeats: int) -> list[dict]:
    """Wall-clock seconds of ``build_embedded_model`` at both shipped resolutions."""
    rows = []
    for resolution in (DEFAULT_RESOLUTION, BFM_DENSITY_RESOLUTION):
        build_embedded_model(resolution)   # warm-up: imports, allocator
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            model = build_embedded_model(resolution)
            seconds.append(time.perf_counter() - start)
        rows.append({"threads": torch.get_num_threads(), "resolution": resolution,
                     "vertices": model.n_vertices, "triangles": model.n_triangles,
                     "median_s": float(np.median(seconds)), "min_s": float(np.min(seconds))})
    return rows


def build_table(rows: list[dict], repeats: int, command: str) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["## Embedded procedural model: build time", "",
             f"`build_embedded_model(resolution)` with 80 id / 64 exp / 80 tex modes, {repeats} "
             f"runs after a warm-up, {os.cpu_count()} CPUs, 1-min load average at the end "
             f"{load:.1f} (other jobs were running: wall times are upper bounds).", "",
             "| torch threads | resolution | vertices | triangles | median s | min s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['threads']} | {r['resolution']} | {r['vertices']} | {r['triangles']} | "
              f"{r['median_s']:.3f} | {r['min_s']:.3f} |" for r in rows]
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def fit_examples(folder: Path, resolution: int, limit: int = 8) -> tuple[np.ndarray, list[dict]]:
    """Fit the model to dlib's 68 landmarks on real photos (recon.landmark_fit), as a check
    that its proportions are human. Returns (photo | fit overlay rows, uint8) and per-image
    mean landmark errors in pixels of the 224 crop."""
    from recon.landmark_fit import estimate_lighting, fit_landmarks
    from recon.preprocess.align import align_face, open_rgb
    from recon.preprocess.detect import LandmarkDetector

    detector = LandmarkDetector()
    crops, landmarks, names = [], [], []
    for path in sorted(folder.glob("*.jpg"))[:limit]:
        photo = open_rgb(path)
        detection = detector.detect_largest(photo)
        if detection is None:
            continue
        aligned = align_face(photo, detection.landmarks68)
        crops.append(aligned.image)
        landmarks.append(aligned.landmarks)
        names.append(path.name)
    if not crops:
        raise SystemExit(f"{folder}: no .jpg with a detectable face")
    face_model = FaceModel(build_embedded_model(resolution), Camera())
    targets = torch.tensor(np.stack(landmarks), dtype=torch.float32)
    images = torch.tensor(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    coeffs = fit_landmarks(face_model, targets)
    coeffs = coeffs.replace(gamma=estimate_lighting(face_model, coeffs, images))
    with torch.no_grad():
        geometry = face_model.compute(coeffs)
        out = MeshRenderer(Camera()).render(geometry, face_model.triangles)
    errors = (geometry.landmarks - targets).norm(dim=-1).mean(1)
    overlay = images * (1.0 - out.mask) + out.image.clamp(0.0, 1.0) * out.mask
    pairs = torch.cat([images, overlay], dim=3).permute(0, 2, 3, 1).numpy()
    sheet = (np.concatenate(list(pairs), axis=0) * 255.0 + 0.5).astype(np.uint8)
    return sheet, [{"image": n, "error_px": float(e)} for n, e in zip(names, errors)]


def fit_table(rows: list[dict], command: str) -> str:
    lines = ["## Embedded procedural model: 68-landmark fits to real photos", "",
             "dlib 68 landmarks on each photo, aligned to the 224 crop as the original, then "
             "`recon.landmark_fit.fit_landmarks` (MAP id/exp/pose). Mean landmark error in "
             "crop pixels (a face is ~150 px wide):", "",
             "| image | mean error px |", "|---|---|"]
    lines += [f"| {r['image']} | {r['error_px']:.2f} |" for r in rows]
    lines += [f"| mean | {np.mean([r['error_px'] for r in rows]):.2f} |", "",
              f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = SheetConfig()
    parser.add_argument("--out", type=Path, default=defaults.out)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--resolution", type=int, default=defaults.resolution)
    parser.add_argument("--backend", default=defaults.backend)
    parser.add_argument("--time-builds", type=int, default=0, metavar="REPEATS",
                        help="also time the builder and write benchmarks/results/procedural_model.md")
    parser.add_argument("--fit-examples", type=Path, default=None, metavar="DIR",
                        help="also fit the model to the faces in DIR/*.jpg (see fit_examples)")
    parser.add_argument("--fit-out", type=Path, default=None, help="PNG of those fits")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = SheetConfig(out=args.out, seed=args.seed, resolution=args.resolution,
                         backend=args.backend)
    sheet, timings = render_sheet(config)
    write_png(config.out, sheet)
    print(f"wrote {config.out} ({sheet.shape[1]}x{sheet.shape[0]}); "
          + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    sections = []
    command = " ".join(["PYTHONPATH=. python benchmarks/contact_sheet.py"] + sys.argv[1:])
    if args.time_builds:
        sections.append(build_table(time_builds(args.time_builds), args.time_builds, command))
    if args.fit_examples is not None:
        fits, rows = fit_examples(args.fit_examples, config.resolution)
        if args.fit_out is not None:
            write_png(args.fit_out, fits)
        sections.append(fit_table(rows, command))
    if sections:
        write_text_atomic(RESULTS, "\n".join(sections))
        print("\n".join(sections))


if __name__ == "__main__":
    main()

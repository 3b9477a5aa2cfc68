"""Speed of the NoW protocol per image, on synthetic meshes of the real sizes.

A 35,721-vertex prediction (a 189 x 189 grid, BFM's 35,709 vertices) against a
100,489-vertex scan (317 x 317 grid); two scan extents: a head-sized one where the NoW
crop keeps about a third of the scan, and a face-sized worst case where it keeps 73%.
The prediction is a different face (rippled), moved by a random similarity with scale 0.01
(decimetres), so both alignment steps do real work. Each image is timed end to end as
``faceset evaluate now`` runs it: read the prediction's OBJ and landmarks, crop, Procrustes,
refinement, final distances (the scan is read once per subject and is timed separately).

    PYTHONPATH=. python benchmarks/eval_speed.py                 # writes the table below
    PYTHONPATH=. python benchmarks/eval_speed.py --repeats 5 --backends open3d scipy

Writes ``benchmarks/results/eval_speed.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from evaluation.distance import open3d_available
from evaluation.meshio import TriangleMesh
from evaluation.now import NowDataset, NowImage, evaluate_now_record
from evaluation.synthetic import (face_landmarks, face_mesh, random_similarity,
                                  write_now_dataset, write_now_prediction)

PREDICTION_GRID = 189  # 35,721 vertices
SCAN_GRID = 317  # 100,489 vertices
SCAN_EXTENTS_MM = (150.0, 100.0)  # half widths: head-sized, face-sized (worst case)


def build_case(root: Path, half_width: float, seed: int) -> tuple[NowDataset, Path, NowImage]:
    scan = face_mesh(SCAN_GRID, half_width_mm=half_width, ripple_mm=1.0)
    image = NowImage("S1", "multiview_neutral", "IMG_0001.jpg")
    write_now_dataset(root / "now", {"S1": scan}, [(image.subject, image.challenge, image.filename)])
    prediction = face_mesh(PREDICTION_GRID, half_width_mm=110.0, ripple_mm=0.6, phase=0.4)
    transform = random_similarity(np.random.default_rng(seed), scale=0.01)
    noise = np.random.default_rng(seed + 1).normal(scale=0.03, size=(7, 3))  # landmark error
    write_now_prediction(root / "pred", image.subject, image.challenge, "IMG_0001",
                         TriangleMesh(transform.apply(prediction.vertices), prediction.faces),
                         transform.apply(face_landmarks(prediction)) + noise)
    return NowDataset(root / "now"), root / "pred", image


def time_case(half_width: float, backend: str, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        dataset, predictions, image = build_case(Path(folder), half_width, seed=0)
        started = time.perf_counter()
        dataset.scan(image.subject)
        scan_seconds = time.perf_counter() - started
        times, record = [], None
        for _ in range(repeats):
            started = time.perf_counter()
            record = evaluate_now_record(dataset, predictions, image, backend=backend)
            times.append(time.perf_counter() - started)
        if record.status != "ok":
            raise RuntimeError(f"benchmark image failed: {record.message}")
        return {"half_width": half_width, "backend": backend, "cropped": record.vertices,
                "scan_read": scan_seconds, "median_s": float(np.median(times)),
                "min_s": float(np.min(times)), "evaluations": record.result.evaluations,
                "error_median": record.median, "error_mean": record.mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["open3d", "scipy"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/eval_speed.md"))
    args = parser.parse_args()
    backends = [b for b in args.backends if b != "open3d" or open3d_available()]
    rows = [time_case(width, backend, args.repeats)
            for backend in backends for width in SCAN_EXTENTS_MM]
    lines = ["## Evaluation speed (NoW protocol, one image)", "",
             f"Prediction {PREDICTION_GRID ** 2:,} vertices, scan {SCAN_GRID ** 2:,} vertices "
             f"(synthetic faces), {os.cpu_count()} CPU cores, median of {args.repeats} runs; "
             "time per image = read prediction + crop + Procrustes + refinement + distances.",
             "",
             "| backend | scan extent | cropped scan vertices | s / image (median) | "
             "s / image (min) | distance evaluations | scan read once (s) | error median / mean (mm) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['backend']} | {2 * row['half_width']:.0f} mm | {row['cropped']:,} | "
                     f"{row['median_s']:.2f} | {row['min_s']:.2f} | {row['evaluations']} | "
                     f"{row['scan_read']:.2f} | {row['error_median']:.3f} / {row['error_mean']:.3f} |")
    lines += ["", "Command: `PYTHONPATH=. python benchmarks/eval_speed.py "
              f"--repeats {args.repeats} --backends {' '.join(args.backends)}`", ""]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, args.out)
    print(text)


if __name__ == "__main__":
    main()

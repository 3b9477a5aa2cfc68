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
    PYTHONPATH=. python benchmarks/eval_speed.py --chumpy-dir chumpy-0.70 --seeds 8

``--chumpy-dir`` adds a second table: the official refinement (chumpy 0.70's dogleg with the
NoW options, residuals and parameterisation, from the same Procrustes start) against ours.
It needs chumpy's unpacked source (``pip download chumpy==0.70 --no-deps
--no-build-isolation``, then untar); chumpy predates Python 3.11 and numpy 2, so this mode
patches three names in the benchmark process only (see ``_import_chumpy``). The distance
and its Jacobian inside chumpy are ours (exact closest points; psbody's CGAL tree does
not build here), so the table isolates the solver.

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


def _import_chumpy(folder: Path):
    """Import chumpy 0.70 from its source tree under Python 3.11 / numpy 2."""
    import inspect
    import sys

    if not hasattr(inspect, "getargspec"):  # removed in Python 3.11; same fields used
        inspect.getargspec = inspect.getfullargspec
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("complex", complex),
                       ("object", object), ("unicode", str), ("str", str)):
        if name not in np.__dict__:  # aliases removed in numpy 1.24 / 2.0
            setattr(np, name, kind)
    sys.path.insert(0, str(folder))
    import chumpy
    from chumpy import optimization_internal

    def beta_multiplier(state):  # the original calls float() on (1, 1) arrays
        delta_sq = state.delta ** 2
        diff = state.d_gn - state.d_sd
        sqnorm_sd = np.linalg.norm(state.d_sd) ** 2
        pnow = (diff.T.dot(diff) * delta_sq + state.d_gn.T.dot(state.d_sd) ** 2
                - np.linalg.norm(state.d_gn) ** 2 * sqnorm_sd)
        return (np.asarray(delta_sq - sqnorm_sd).item()
                / np.asarray(diff.T.dot(state.d_sd) + np.sqrt(pnow)).item())

    optimization_internal.DoglegState.beta_multiplier = property(beta_multiplier)
    return chumpy


def _chumpy_refinement(ch, points: np.ndarray, vertices: np.ndarray, faces: np.ndarray):
    """The official rigid_scan_2_mesh_alignment: returns (s, R, t)."""
    import cv2
    import scipy.sparse as sparse
    from scipy.sparse.linalg import cg

    from evaluation.distance import TriangleMeshIndex

    class Rodrigues(ch.Ch):  # as smpl_webuser.posemapper.Rodrigues (cv2 and its Jacobian)
        dterms = "rt"

        def compute_r(self):
            return cv2.Rodrigues(self.rt.r)[0]

        def compute_dr_wrt(self, wrt):
            if wrt is self.rt:
                return cv2.Rodrigues(self.rt.r)[1].T

    class ScanToMesh(ch.Ch):  # unsigned scan-vertex-to-surface distances, d/d(mesh vertices)
        dterms = "v"
        terms = "f", "points"

        def closest(self):
            return TriangleMeshIndex(self.v.r.reshape(-1, 3), self.f).query(self.points)

        def compute_r(self):
            return self.closest().distances

        def compute_dr_wrt(self, wrt):
            if wrt is not self.v:
                return None
            found = self.closest()
            normal = (self.points - found.points) / np.maximum(found.distances, 1e-300)[:, None]
            corners = self.f[found.triangle_ids]
            rows = np.repeat(np.arange(len(self.points)), 9)
            cols = (3 * np.repeat(corners, 3, axis=1) + np.tile([0, 1, 2], 3)).ravel()
            values = (-(found.barycentrics[:, :, None] * normal[:, None, :])).ravel()
            return sparse.csc_matrix((values, (rows, cols)),
                                     shape=(len(self.points), self.v.r.size))

    options = {"sparse_solver": lambda a, x: cg(a, x, maxiter=2000)[0], "disp": 0,
               "delta_0": 0.1, "e_3": 1e-4}
    s, r, t = ch.ones(1), ch.zeros(3), ch.zeros(3)
    rotation = Rodrigues(rt=r)
    moved = s * (rotation.dot(vertices.T)).T + t
    distance = ScanToMesh(v=moved, f=faces, points=points)
    ch.minimize(fun={"dist": distance, "s_reg": 100 * (ch.abs(s) - s)}, x0=[s, r, t],
                options=options)
    return float(s.r[0]), rotation.r.copy(), t.r.copy()


def compare_with_chumpy(folder: Path, seeds: int) -> list[str]:
    """Per-image statistics of the official solver and ours on random synthetic pairs."""
    from evaluation.align import RefineConfig, procrustes, refine_to_surface
    from evaluation.distance import TriangleMeshIndex
    from evaluation.now import crop_scan, pooled_statistics

    ch = _import_chumpy(folder)
    lines = ["## NoW refinement: ours (scipy LM) against the official solver (chumpy dogleg)", "",
             "Per image, same cropped scan and Procrustes start; the error statistics (mm) of "
             "each solver's final alignment and the sum of squared distances (mm^2).", "",
             "| seed | scan vertices | median chumpy / ours | mean chumpy / ours | "
             "std chumpy / ours | cost chumpy / ours |", "|---|---|---|---|---|---|"]
    worst = np.zeros(3)
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        scan = face_mesh(120, half_width_mm=130, ripple_mm=1.0, phase=rng.uniform(0, 3))
        prediction = face_mesh(90, half_width_mm=110, ripple_mm=rng.uniform(0.3, 1.5),
                               phase=rng.uniform(0, 3))
        prediction.vertices[:, 2] *= rng.uniform(0.9, 1.1)
        transform = random_similarity(rng, scale=0.01)
        landmarks = transform.apply(face_landmarks(prediction) + rng.normal(scale=2, size=(7, 3)))
        points = crop_scan(scan, face_landmarks(scan)).vertices
        aligned = procrustes(face_landmarks(scan), landmarks)[0].apply(
            transform.apply(prediction.vertices))
        s, rotation, t = _chumpy_refinement(ch, points, aligned, prediction.faces)
        theirs = s * aligned @ rotation.T + t
        ours = refine_to_surface(points, TriangleMeshIndex(aligned, prediction.faces),
                                 RefineConfig()).transform.apply(aligned)
        results = []
        for vertices in (theirs, ours):
            distances = TriangleMeshIndex(vertices, prediction.faces, "scipy").query(points).distances
            results.append((pooled_statistics([distances]), float(np.sum(distances ** 2))))
        (a, cost_a), (b, cost_b) = results
        worst = np.maximum(worst, [abs(a[k] - b[k]) for k in ("median", "mean", "std")])
        lines.append(f"| {seed} | {len(points):,} | {a['median']:.4f} / {b['median']:.4f} | "
                     f"{a['mean']:.4f} / {b['mean']:.4f} | {a['std']:.4f} / {b['std']:.4f} | "
                     f"{cost_a:.2f} / {cost_b:.2f} |")
    lines += ["", f"Largest per-image difference: median {worst[0]:.1e} mm, mean {worst[1]:.1e} mm, "
              f"std {worst[2]:.1e} mm.", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["open3d", "scipy"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/eval_speed.md"))
    parser.add_argument("--chumpy-dir", type=Path, default=None,
                        help="unpacked chumpy 0.70 source: also compare with its dogleg")
    parser.add_argument("--seeds", type=int, default=8, help="image pairs for --chumpy-dir")
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
    command = (f"PYTHONPATH=. python benchmarks/eval_speed.py --repeats {args.repeats} "
               f"--backends {' '.join(args.backends)}")
    if args.chumpy_dir is not None:
        command += f" --chumpy-dir {args.chumpy_dir.name} --seeds {args.seeds}"
        lines += [""] + compare_with_chumpy(args.chumpy_dir, args.seeds)
    lines += ["", f"Command: `{command}`", ""]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, args.out)
    print(text)


if __name__ == "__main__":
    main()

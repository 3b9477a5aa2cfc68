"""Fitting benchmark on synthetic photo sets, scored with the NoW protocol.

For every subject of a ``faceset synth`` set (8 photos each by default) this compares, per
photo, the neutral canonical mesh (expression zero, as NoW asks) of:

- ``oracle: scan projected on id basis``: the least-squares identity of the ground-truth
  scan itself (skin vertices, with correspondence), about the floor any identity fit with
  this model can reach; the scan's detail is only partly expressible;
- ``landmark init``: the landmark initialiser (no checkpoint), per photo;
- ``per-image fit``: ``fitting.fit_images`` from that start, per photo;
- ``mean id (init)``: the authors' recipe, mean of the initialiser's id coefficients;
- ``confidence id (init)``: the information/quality-weighted mean of the same;
- ``mean id (per-image fits)``: the mean of the per-image fitted ids;
- ``joint subject fit``: ``fitting.fit_subject`` from the confidence-weighted start.

Each mesh is scored against the subject's ground-truth scan (mm) with
``evaluation.now.evaluate_now_image`` (scan crop, 7-landmark Procrustes, scale + rigid
refinement, scan-to-mesh distances); the statistics pool all scan vertices of all photos
(a fused mesh counts once per photo, so every method is pooled over the same photos).
The 68 landmarks are the generator's true ones plus Gaussian noise (``--landmark-noise``
crop pixels) to stand in for a detector. Writes a markdown table to ``--out`` and, with
``--per-photo-csv``, one row per photo (true yaw / pitch, occluder, per-photo medians).

``--seeds 0-11`` generates one set per seed and pools them: the pooled median of a single
set of 24 photos moves by several points between seeds of the same generator, so a goal
is judged on many sets. A set's figures equal those of a single ``--seed`` run.

    python benchmarks/fit_eval.py --subjects 2 --images 8 --out benchmarks/results/fit_eval.md
    python benchmarks/fit_eval.py --subjects 3 --images 8 --seeds 0-11
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aggregation import AggregationConfig, aggregate_identity  # noqa: E402
from benchmarks.publish import publish  # noqa: E402
from evaluation.meshio import TriangleMesh, read_mesh, read_pp  # noqa: E402
from evaluation.now import evaluate_now_image, pooled_statistics  # noqa: E402
from faceset.pipeline import ReconstructOptions, Reconstructor  # noqa: E402
from faceset.subject import SubjectOptions, prepare_photos  # noqa: E402
from faceset.synth import NOW_FROM_IBUG68, SynthConfig, synthesize  # noqa: E402
from fitting import FitConfig, FitTargets, fit_images, fit_subject  # noqa: E402
from recon import constants as C  # noqa: E402
from recon.types import Coeffs  # noqa: E402

# Coefficient groups --given can take from the truth: angle and trans are in the synthetic
# photo's camera, not in the aligned crop's the fit works in.
GIVEN_GROUPS = ("id", "exp", "tex", "gamma")
ORACLE = "oracle: scan projected on id basis"
MEAN_FACE = "mean face (no fit)"
METHODS = (MEAN_FACE, ORACLE, "landmark init", "per-image fit", "mean id (init)", "confidence id (init)",
           "mean id (per-image fits)", "joint subject fit")

PLOTTED_METHODS = (MEAN_FACE, ORACLE, "landmark init", "per-image fit",
                   "mean id (per-image fits)", "joint subject fit")


def neutral_mesh_mm(face_model, id_row: torch.Tensor) -> tuple[TriangleMesh, np.ndarray]:
    """Neutral canonical mesh (mm) of one id (1, K) and its 7 NoW landmarks (7, 3)."""
    zero_exp = torch.zeros(1, face_model.coeff_sizes["exp"], device=id_row.device)
    vertices = face_model.shape(id_row, zero_exp)[0].detach().cpu().double().numpy() * C.MM_PER_UNIT
    ids = face_model.landmark_ids.cpu().numpy()[list(NOW_FROM_IBUG68)]
    return TriangleMesh(vertices, face_model.triangles.cpu().numpy()), vertices[ids]


def skin_normal_equations(face_model, scan_mm: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal matrix (K, K) and right-hand side (K,) (float64) of the least-squares id whose
    neutral shape best matches the scan (same topology) over the skin vertices; a tiny ridge
    keeps it well posed."""
    skin = face_model.skin_mask.cpu()
    target = torch.tensor(scan_mm / C.MM_PER_UNIT, dtype=torch.float64) - face_model.mean_shape.cpu().double().view(-1, 3)
    basis = face_model.id_basis.cpu().double().view(-1, 3, face_model.id_basis.shape[1])[skin].reshape(-1, face_model.id_basis.shape[1])
    normal = basis.T @ basis + 1e-6 * torch.eye(basis.shape[1], dtype=torch.float64)
    return normal, basis.T @ target[skin].reshape(-1)


def projected_id(face_model, scan_mm: np.ndarray) -> torch.Tensor:
    """(1, K) least-squares id of the scan (``skin_normal_equations``): the model's floor."""
    normal, rhs = skin_normal_equations(face_model, scan_mm)
    return torch.linalg.solve(normal, rhs)[None].float().to(face_model.id_basis.device)


def score(face_model, id_row, scan, scan_landmarks) -> np.ndarray:
    mesh, landmarks = neutral_mesh_mm(face_model, id_row)
    return evaluate_now_image(scan, scan_landmarks, mesh, landmarks).distances


def noisy_targets(photos, sigma: float, seed: int, device) -> FitTargets:
    rng = np.random.default_rng(seed)
    images = torch.stack([p.crop_tensor() for p in photos]).to(device)
    landmarks = np.stack([p.landmarks68 for p in photos])
    landmarks = landmarks + rng.normal(0.0, sigma, landmarks.shape)
    for photo, noisy in zip(photos, landmarks):
        photo.landmarks68 = noisy
    return FitTargets(images, torch.tensor(landmarks, dtype=torch.float32, device=device))


def with_truth(data: Path, subject: str, photos, init: Coeffs, groups: tuple[str, ...]) -> Coeffs:
    """``init`` with the generator's true values of ``groups`` for every photo."""
    import scipy.io
    truths = [scipy.io.loadmat(data / subject / "truth" / f"{p.path.stem}.mat") for p in photos]
    return init.replace(**{g: torch.tensor(np.concatenate([t[g].reshape(1, -1) for t in truths]),
                                           dtype=init.id.dtype, device=init.id.device) for g in groups})


def scan_at_model_vertices(data: Path, subject: str, scan: TriangleMesh) -> np.ndarray:
    """The ground-truth surface at the fitted model's vertices (mm): ``model_vertices_mm`` of
    an out-of-model set's ``truth/subject.mat`` (its scan is a denser mesh), else the scan's
    own vertices (an in-model set's scan has the model's topology)."""
    import scipy.io
    truth = scipy.io.loadmat(data / subject / "truth" / "subject.mat")
    return truth["model_vertices_mm"] if "model_vertices_mm" in truth else scan.vertices


def detector_view(data: Path, subject: str, folder: Path) -> Path:
    """A folder with the subject's photos only (links), so the detector finds the points
    instead of the generator's true landmark and detection files."""
    folder.mkdir(parents=True, exist_ok=True)
    for photo in sorted((data / subject / "images").iterdir()):
        if photo.is_file():
            (folder / photo.name).symlink_to(photo.resolve())
    return folder


def prepared_subject(data: Path, subject: str, landmarks: str, temp: Path):
    """The subject's prepared photos with true (``truth``) or detected (``detector``)
    points, and the photos that could not be used (name -> reason): a detector may miss a
    face, the generator's truth never does."""
    folder = data / subject / "images"
    if landmarks == "detector":
        folder = detector_view(data, subject, temp / subject)
    photos, failed = prepare_photos(folder, SubjectOptions())
    if failed and landmarks == "truth" or not photos:
        raise RuntimeError(f"{subject}: photos failed: {failed}")
    return photos, failed


def subject_targets(photos, reconstructor: Reconstructor, landmarks: str = "truth", noise: float = 0.0,
                    seed: int = 0) -> FitTargets:
    """The fit targets of a subject's prepared photos: the generator's true 68 points plus
    ``noise`` px (``landmarks="truth"``; the photos take the noisy points too) or the
    detector's points (``"detector"``), with each photo's camera intrinsics."""
    if landmarks == "truth":
        targets = noisy_targets(photos, noise, seed, reconstructor.device)
    else:
        points, landmark_set = reconstructor.landmarks(photos)
        targets = FitTargets(torch.stack([p.crop_tensor() for p in photos]).to(reconstructor.device), points,
                             landmark_set=landmark_set)
    return replace(targets, intrinsics=reconstructor.intrinsics(photos))


def scan_files(data: Path, subject: str) -> tuple[Path, Path]:
    """The subject's ground-truth scan (``.obj``, mm) and its 7 NoW landmarks (``.pp``)."""
    return (next((data / "scans" / subject).glob("*.obj")),
            next((data / "scans_lmks_onlypp" / subject).glob("*.pp")))


def confidence_identity(face_model, init: Coeffs, targets: FitTargets, slide_contour: bool = False):
    """The confidence-weighted identity of the initial coefficients: the joint fit's start."""
    return aggregate_identity(face_model, init, targets.landmarks,
                              AggregationConfig("confidence", slide_contour=slide_contour),
                              landmark_set=targets.landmark_set)


def evaluate_subject(data: Path, subject: str, reconstructor: Reconstructor, config: FitConfig,
                     noise: float, seed: int, encoder=None, given: tuple[str, ...] = (),
                     landmarks: str = "truth", slide_start: bool = False) -> dict:
    """All methods' per-photo NoW distances and the fit times for one subject; ``given``
    groups take their true values, held fixed, in the per-image fit (a diagnostic);
    ``landmarks``: the generator's true points plus ``noise`` px, or the detector's;
    ``slide_start`` slides the contour points in the confidence aggregation (the
    reconstructor's option slides them in the initialiser) (``config.slide_contour`` in the fits)."""
    face_model = reconstructor.face_model
    with tempfile.TemporaryDirectory() as temp:
        photos, failed = prepared_subject(data, subject, landmarks, Path(temp))
    targets = subject_targets(photos, reconstructor, landmarks, noise, seed)
    scan_path, pp_path = scan_files(data, subject)
    scan, (scan_landmarks, _) = read_mesh(scan_path), read_pp(pp_path)
    init = Coeffs.cat([reconstructor.coefficients([p]) for p in photos])
    timings = {}
    start = time.perf_counter()
    per_image_config = replace(config, optimize=tuple(g for g in config.optimize if g not in given))
    per_image = fit_images(face_model, targets, with_truth(data, subject, photos, init, given),
                           per_image_config, encoder)
    timings["per-image fit"] = time.perf_counter() - start
    confidence = confidence_identity(face_model, init, targets, slide_start)
    joint_start = init.replace(id=confidence.id.expand_as(init.id).clone(),
                               tex=confidence.tex.expand_as(init.tex).clone())
    start = time.perf_counter()
    joint = fit_subject(face_model, targets, joint_start, config, encoder)
    timings["joint subject fit"] = time.perf_counter() - start
    count = len(photos)
    ids = {
        MEAN_FACE: [torch.zeros_like(init.id[:1])] * count,
        ORACLE: [projected_id(face_model, scan_at_model_vertices(data, subject, scan))] * count,
        "landmark init": [init.id[i:i + 1] for i in range(count)],
        "per-image fit": [per_image.coeffs.id[i:i + 1] for i in range(count)],
        "mean id (init)": [init.id.mean(0, keepdim=True)] * count,
        "confidence id (init)": [confidence.id] * count,
        "mean id (per-image fits)": [per_image.coeffs.id.mean(0, keepdim=True)] * count,
        "joint subject fit": [joint.coeffs.id[:1]] * count,
    }
    distances = {}
    for method, rows in ids.items():
        cache: dict[int, np.ndarray] = {}
        distances[method] = []
        for row in rows:
            key = id(row)
            if key not in cache:
                cache[key] = score(face_model, row, scan, scan_landmarks)
            distances[method].append(cache[key])
    return {"distances": distances, "timings": timings, "photos": count, "failed": sorted(failed),
            "iterations": {"per-image": per_image.iterations, "joint": joint.iterations},
            "per_photo": per_photo_rows(data, subject, photos, distances)}


def per_photo_rows(data: Path, subject: str, photos, distances: dict) -> list[dict]:
    """One row per photo: its true pose, whether it is occluded, and each per-photo
    method's median (mm): what tells which photos dominate the error."""
    import scipy.io
    rows = []
    for k, photo in enumerate(photos):
        truth = scipy.io.loadmat(data / subject / "truth" / f"{photo.path.stem}.mat")
        pitch, yaw, roll = np.rad2deg(truth["angle"].reshape(-1))
        occluded = (truth["occluded"].reshape(-1)[0] > 0 if "occluded" in truth
                    else truth["occluder"].reshape(-1)[0] >= 0)
        rows.append({"subject": subject, "photo": photo.path.stem, "yaw_deg": round(float(yaw), 1),
                     "pitch_deg": round(float(pitch), 1), "occluded": bool(occluded),
                     "landmark_init_mm": float(np.median(distances["landmark init"][k])),
                     "per_image_fit_mm": float(np.median(distances["per-image fit"][k]))})
    return rows


def photo_distances(results: dict, method: str) -> list[np.ndarray]:
    """One method's per-photo distance arrays over all subjects of ``results`` (any subset)."""
    return [d for r in results.values() for d in r["distances"][method]]


def pooled(results: dict) -> dict[str, dict]:
    """Pooled statistics of each method over all photos of ``results``."""
    return {m: pooled_statistics(photo_distances(results, m)) for m in METHODS}


def change(value: float, base: float) -> float:
    return 100 * (value - base) / base


def per_seed_table(results: dict) -> tuple[list[str], list[float]]:
    """Markdown rows of each set's pooled medians; returns them and the per-image changes."""
    lines = ["", "Per set (pooled medians in mm; per-image change vs the landmark initialiser):", "",
             "| seed | landmark init | per-image fit | mean of per-image ids | joint subject fit | "
             "joint time / subject |", "|---|---|---|---|---|---|"]
    changes = []
    for seed in sorted({seed for seed, _ in results}):
        subset = {key: r for key, r in results.items() if key[0] == seed}
        med = {m: s["median"] for m, s in pooled(subset).items()}
        changes.append(change(med["per-image fit"], med["landmark init"]))
        times = [r["timings"]["joint subject fit"] for r in subset.values()]
        lines.append(f"| {seed} | {med['landmark init']:.3f} | {med['per-image fit']:.3f} ({changes[-1]:+.1f} %) | "
                     f"{med['mean id (per-image fits)']:.3f} | {med['joint subject fit']:.3f} | "
                     f"{np.mean(times):.1f} s |")
    return lines, changes


def gap_closed(value: float, mean_face: float, floor: float) -> float:
    """Percent of the mean-face-to-floor gap that a method's median closes (100: the floor,
    0: no better than not fitting, negative: worse than not fitting)."""
    return 100 * (mean_face - value) / max(mean_face - floor, 1e-9)


def subject_medians(result: dict) -> dict[str, float]:
    return {m: float(np.median(np.concatenate(result["distances"][m]))) for m in METHODS}


def method_table(stats: dict[str, dict]) -> list[str]:
    base, floor, mean_face = (stats[m]["median"] for m in ("landmark init", ORACLE, MEAN_FACE))
    lines = ["| method | median (mm) | mean (mm) | std (mm) | gap closed (mean face -> floor) | "
             "median vs landmark init |", "|---|---|---|---|---|---|"]
    for method in METHODS:
        s = stats[method]
        lines.append(f"| {method} | {s['median']:.3f} | {s['mean']:.3f} | {s['std']:.3f} | "
                     f"{gap_closed(s['median'], mean_face, floor):+.0f} % | {change(s['median'], base):+.1f} % |")
    return lines


def subject_table(results: dict, several_seeds: bool) -> tuple[list[str], dict[str, list[float]]]:
    """Per-subject medians and gap closed; returns the rows and each method's gaps."""
    lines = ["", "Per subject (medians in mm; gap closed between the mean face and the floor):", "",
             "| subject | mean face | floor | landmark init | per-image fit | joint subject fit | "
             "gap closed: per-image / joint | fit time per-image / joint (s) | steps per level (per-image / joint) |",
             "|---|---|---|---|---|---|---|---|---|"]
    gaps: dict[str, list[float]] = {m: [] for m in ("landmark init", "per-image fit", "joint subject fit")}
    for (seed, subject), r in results.items():
        med = subject_medians(r)
        for method in gaps:
            gaps[method].append(gap_closed(med[method], med[MEAN_FACE], med[ORACLE]))
        label = f"seed {seed} / {subject}" if several_seeds else subject
        lines.append(f"| {label} | {med[MEAN_FACE]:.3f} | {med[ORACLE]:.3f} | {med['landmark init']:.3f} | "
                     f"{med['per-image fit']:.3f} | {med['joint subject fit']:.3f} | "
                     f"{gaps['per-image fit'][-1]:+.0f} / {gaps['joint subject fit'][-1]:+.0f} % | "
                     f"{r['timings']['per-image fit']:.1f} / {r['timings']['joint subject fit']:.1f} | "
                     f"{r['iterations']['per-image']} / {r['iterations']['joint']} |")
    return lines, gaps


def out_of_model_goals(results: dict, gaps: dict[str, list[float]], stats: dict) -> list[str]:
    """Issue 12's goals on out-of-model sets, judged per subject."""
    joint, per_image = np.median(gaps["joint subject fit"]), np.median(gaps["per-image fit"])
    beats = sum(subject_medians(r)["joint subject fit"] < subject_medians(r)[MEAN_FACE] for r in results.values())
    return [
        "",
        f"- The joint subject fit closes >= 60 % of the mean-face-to-floor gap (median over subjects): "
        f"{joint:.0f} % ({'met' if joint >= 60 else 'missed'}); it beats the mean face on {beats} of "
        f"{len(results)} subjects ({'met' if beats == len(results) else 'missed'}).",
        f"- The per-image fit closes >= 25 %: {per_image:.0f} % ({'met' if per_image >= 25 else 'missed'}); "
        f"the landmark initialiser {np.median(gaps['landmark init']):.0f} %.",
        f"- Pooled medians: mean face {stats[MEAN_FACE]['median']:.3f} mm, floor {stats[ORACLE]['median']:.3f} mm, "
        f"joint fit {stats['joint subject fit']['median']:.3f} mm.",
    ]


def in_model_goals(results: dict, stats: dict, args) -> list[str]:
    base, floor = stats["landmark init"]["median"], stats[ORACLE]["median"]
    reduction = -change(stats["per-image fit"]["median"], base)
    return [
        "",
        f"- Per-image fitting vs the landmark initialiser's median: {reduction:+.1f} % "
        f"(issue 6's goal: >= 30 %); the floor scores {floor:.3f} mm.",
        f"- The joint subject fit: {stats['joint subject fit']['median']:.3f} mm vs per-image "
        f"{stats['per-image fit']['median']:.3f} mm, vs mean of per-image fitted ids "
        f"{stats['mean id (per-image fits)']['median']:.3f} mm (issue 12: within 10 % of 0.407 mm).",
    ]


def table(results: dict[tuple[int, str], dict], args, config: FitConfig, elapsed: float) -> str:
    """The markdown report; ``results`` is keyed by (seed, subject)."""
    stats = pooled(results)
    seeds = sorted({seed for seed, _ in results})
    per_subject, gaps = subject_table(results, len(seeds) > 1)
    if len(seeds) > 1:
        seed_lines, changes = per_seed_table(results)
        per_subject += seed_lines
    joint_times = [r["timings"]["joint subject fit"] for r in results.values()]
    missed = [name for r in results.values() for name in r.get("failed", [])]
    if missed:
        per_subject += ["", f"Photos without a detected face, left out of every method: {len(missed)} "
                            f"({', '.join(missed)})."]
    goals = (out_of_model_goals(results, gaps, stats) if args.realism == "photo"
             else in_model_goals(results, stats, args))
    goals.append(f"- Time: joint fit of an {args.images}-photo subject {np.mean(joint_times):.1f} s mean "
                 f"(max {max(joint_times):.1f}, {len(joint_times)} subjects) on {torch.get_num_threads()} "
                 f"thread(s), device {args.device} (goal: <= 60 s).")
    subjects = len(results) // len(seeds)
    kind = ("out-of-model sets (`faceset synth --realism photo`)" if args.realism == "photo"
            else f"in-model sets (`faceset synth`, detail {args.detail_mm} mm RMS)")
    points = ("landmarks from the detector (mediapipe's 478 where found)" if args.landmarks == "detector"
              else f"true 68 landmarks + {args.landmark_noise} px noise (224 crop)")
    header = [
        f"{kind}: {subjects} subject(s) x {args.images} photos, "
        f"{'seed ' + str(seeds[0]) if len(seeds) == 1 else f'{len(seeds)} sets (seeds {args.seeds})'}, "
        f"embedded model (default resolution), {points}; fit schedule {args.iters or 'default'} steps, "
        f"silhouette weight {config.silhouette_weight}, contrast weight {config.weights.contrast} (blur "
        f"{config.contrast_sigma} px){'; ' + ', '.join(args.set) if args.set else ''}; "
        f"{'EXIF cameras ignored' if args.no_exif_camera else 'each photo camera from its EXIF where present'}; "
        f"sliding contour points: start {'on' if args.slide_contour else 'off'}, fits "
        f"{'on' if config.slide_contour else 'off'}; "
        f"{'per-image fit given the true ' + ', '.join(args.given) + '; ' if args.given else ''}"
        f"total wall time {elapsed:.0f} s; {platform.processor() or platform.machine()}, "
        f"load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        "Pooled NoW scan-to-mesh errors over all scan vertices of all photos (neutral meshes); "
        "'floor' is the oracle, the model's identity fitted to the ground-truth surface in 3-D:",
        "",
    ]
    return "\n".join(header + method_table(stats) + per_subject + goals) + "\n"


def fit_config(args) -> FitConfig:
    config = FitConfig() if args.iters is None else FitConfig().with_total_iterations(args.iters)
    if args.slide_contour:
        config = replace(config, slide_contour=True)
    if args.silhouette_weight is not None:
        weight = None if args.silhouette_weight.lower() == "none" else float(args.silhouette_weight)
        config = replace(config, silhouette_weight=weight)
    return with_settings(config, args.set)


def with_settings(config: FitConfig, settings: list[str]) -> FitConfig:
    """``FIELD=VALUE`` overrides of FitConfig (``weights.NAME=VALUE`` for a loss weight);
    values are Python literals: ``stop_rel_tol=0``, ``iterations=(160,60,40)``."""
    import ast
    fields, weights = {}, {}
    for setting in settings:
        name, sep, text = setting.partition("=")
        if not sep:
            raise SystemExit(f"--set {setting!r}: expected FIELD=VALUE")
        value = ast.literal_eval(text)
        if name.startswith("weights."):
            weights[name[len("weights."):]] = value
        else:
            fields[name] = value
    if weights:
        fields["weights"] = replace(config.weights, **weights)
    return replace(config, **fields)


def generate_set(data: Path, args, seed: int) -> None:
    """One generated set under ``data``: in-model, or out-of-model through the CLI's
    ``synth --realism photo`` (the same files a user gets)."""
    if args.realism == "model":
        synthesize(data, SynthConfig(subjects=args.subjects, images=args.images, seed=seed,
                                     detail_mm=args.detail_mm))
        return
    from faceset.cli import main as faceset_main
    code = faceset_main(["synth", str(data), "--realism", "photo", "--subjects", str(args.subjects),
                         "--images", str(args.images), "--seed", str(seed)])
    if code:
        raise SystemExit(f"faceset synth --realism photo failed (exit {code})")


def parse_seeds(text: str) -> list[int]:
    """'0-11' or '0,3,5' (or both, '0-4,9') -> the seeds in order, without repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            span = range(int(first), int(last) + 1) if dash else [int(first)]
        except ValueError:
            raise SystemExit(f"--seeds {text!r}: expected numbers and ranges like 0-11 or 0,3,5") from None
        seeds += [s for s in span if s not in seeds]
    if not seeds:
        raise SystemExit(f"--seeds {text!r}: no seeds")
    return seeds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="an existing faceset synth folder (default: generate one in a temp dir)")
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default=None, metavar="LIST",
                        help="several sets, pooled: e.g. 0-11 or 0,3,5 (overrides --seed)")
    parser.add_argument("--detail-mm", type=float, default=2.0)
    parser.add_argument("--realism", default="model", choices=("model", "photo"),
                        help="model: in-model sets (faceset synth); photo: out-of-model sets "
                             "(faceset synth --realism photo), scored against the mean face and the floor")
    parser.add_argument("--landmarks", default=None, choices=("truth", "detector"),
                        help="the generator's true 68 points plus --landmark-noise, or the detector's "
                             "(default: truth for --realism model, detector for photo)")
    parser.add_argument("--landmark-noise", type=float, default=1.5, help="crop pixels (default 1.5)")
    parser.add_argument("--no-exif-camera", action="store_true",
                        help="ignore the photos' EXIF focal lengths: the original's camera for every photo")
    parser.add_argument("--iters", type=int, default=None, help="total fitting steps (default schedule)")
    parser.add_argument("--init", choices=("landmarks", "rnet"), default="landmarks",
                        help="the per-photo start: the landmark initialiser (default, as the recorded "
                             "figures) or the shipped R-Net as --init rnet runs it (the report's start rows "
                             "are then named 'R-Net start')")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    parser.add_argument("--identity", default="none", choices=("none", "dlib"),
                        help="add the identity-feature term (dlib's network) to both fits")
    parser.add_argument("--silhouette-weight", default=None,
                        help="fitting's silhouette weight, a number or 'none' for the original's "
                             "interior-only photometric term (default: FitConfig's)")
    parser.add_argument("--slide-contour", action="store_true",
                        help="the 17 jaw points slide along the silhouette (recon.contour) in the "
                             "initialiser, the confidence aggregation and both fits (the fits alone: "
                             "--set slide_contour=True)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a FitConfig field for both fits, e.g. weights.reg_tex=100 "
                             "or stop_rel_tol=0 (repeatable)")
    parser.add_argument("--given", default="", metavar="GROUPS",
                        help="diagnostic: comma-separated groups among " + ", ".join(GIVEN_GROUPS) +
                             " that the per-image fit takes from the ground truth and keeps fixed "
                             "(shows how much of its error each unknown causes)")
    parser.add_argument("--per-photo-csv", type=Path, default=None,
                        help="CSV of each photo's pose, occluder and per-photo medians")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG of the methods' cumulative error curves (NoW's figure), pooled")
    args = parser.parse_args(argv)
    args.given = tuple(g for g in args.given.split(",") if g)
    unknown = set(args.given) - set(GIVEN_GROUPS)
    if unknown:
        parser.error(f"--given: not among {GIVEN_GROUPS}: {sorted(unknown)}")
    if args.landmarks is None:
        args.landmarks = "detector" if args.realism == "photo" else "truth"
    seeds = parse_seeds(args.seeds) if args.seeds else [args.seed]
    if args.data is not None and len(seeds) > 1:
        parser.error("--data holds one set: use --seed, not --seeds")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    reconstructor = Reconstructor(ReconstructOptions(device=args.device, slide_contour=args.slide_contour,
                                                     exif_focal=not args.no_exif_camera, init=args.init))
    config = fit_config(args)
    encoder = None
    if args.identity != "none":
        from recon.identity import load_identity_encoder
        encoder = load_identity_encoder(args.identity, device=reconstructor.device)
    results = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as temp:
            data = args.data or Path(temp) / "synth"
            if args.data is None:
                generate_set(data, args, seed)
            subjects = sorted(json.loads((data / "synth.json").read_text())["subjects"])[:args.subjects]
            for index, subject in enumerate(subjects):
                # The landmark noise of a subject depends on its set's seed and its index
                # only, so a set scores the same alone or among others.
                result = evaluate_subject(data, subject, reconstructor, config, args.landmark_noise,
                                          seed + index, encoder, args.given, args.landmarks,
                                          args.slide_contour)
                results[seed, subject] = result
                print(f"seed {seed}", subject, {k: f"{v:.1f}s" for k, v in result["timings"].items()}, flush=True)
    text = table(results, args, config, time.perf_counter() - started)
    if args.per_photo_csv:
        import pandas as pd
        from recon.io import write_atomic
        frame = pd.DataFrame([{"seed": seed, **row} for (seed, _), r in results.items() for row in r["per_photo"]])
        write_atomic(args.per_photo_csv, frame.to_csv(index=False, float_format="%.4f").encode())
    if args.plot:
        from evaluation.plots import plot_cumulative_errors
        plot_cumulative_errors({m: np.concatenate(photo_distances(results, m)) for m in PLOTTED_METHODS},
                               args.plot, max_mm=3.0)
    command = "python benchmarks/fit_eval.py " + " ".join(argv if argv is not None else sys.argv[1:])
    title = "out-of-model" if args.realism == "photo" else "in-model synthetic"
    text = f"## Fitting on {title} photo sets (NoW protocol)\n\nCommand: `{command}`\n\n" + text
    if args.init == "rnet":  # every start row and comparison is R-Net's
        text = (text.replace("the landmark initialiser", "the R-Net start").replace("landmark init", "R-Net start")
                .replace("(init)", "(R-Net)"))
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""R-Net against the landmark initialiser, alone and as the start of a per-image fit.

Held-out out-of-model photos (``faceset synth --realism photo`` with seeds the training did
not use), landmarks from the detector as a user gets them, every photo scored with the NoW
protocol (neutral canonical mesh against the subject's scan, ``benchmarks/fit_eval.py``'s
``score``), per photo:

- ``mean face (no fit)`` and the model's ``floor`` (the scan's own least-squares identity);
- ``landmark init`` and ``R-Net``: each start alone; ``R-Net shape, landmark pose``: R-Net's
  identity, albedo and light with the initialiser's pose and expression (a diagnostic:
  R-Net's identity without its coarse pose); ``R-Net, landmark refit``: R-Net's coefficients
  with pose and expression re-fitted to the detected points for R-Net's identity
  (``recon.landmark_fit.refit_pose_expression``, the initialiser's priors);
- ``fit from ...``: ``fitting.fit_images`` (default FitConfig; ``--iters N`` rescales its
  schedule to N steps, to compare how far each start gets on a shorter fit) from each start,
  with its wall time and steps. ``--starts`` picks starts (the landmark initialiser always runs).

Then the real example photos: landmark RMSE against the detector's points (mediapipe's 478,
and the 68 of the shipped detections) of each start and of the fit from it.

    python benchmarks/rnet_eval.py --checkpoint CKPT --arch mobilenet_v3_small \\
        --seeds 200-202 --out benchmarks/results/rnet_eval.md
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from recon.threads import configure_threads  # noqa: E402

configure_threads(1)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks import fit_eval  # noqa: E402
from evaluation.meshio import read_mesh, read_pp  # noqa: E402
from faceset.fit_report import landmark_rmse  # noqa: E402
from faceset.pipeline import ReconstructOptions, Reconstructor  # noqa: E402
from faceset.subject import SubjectOptions, prepare_photos  # noqa: E402
from fitting import FitConfig, FitTargets, fit_images  # noqa: E402
from recon.landmark_fit import refit_pose_expression  # noqa: E402
from recon.types import Coeffs  # noqa: E402

STARTS = ("landmark init", "R-Net", "R-Net shape, landmark pose", "R-Net, landmark refit")
METHODS = (fit_eval.MEAN_FACE, "floor", *STARTS, *(f"fit from {start}" for start in STARTS))


def start_coeffs(readers: dict[str, Reconstructor], photos) -> dict[str, Coeffs]:
    """Every start's (M, ...) coefficients of the photos (see the module docstring)."""
    landmarks, rnet = (Coeffs.cat([readers[name].coefficients([p]) for p in photos])
                       for name in ("landmark init", "R-Net"))
    reader = readers["landmark init"]
    points, landmark_set = reader.landmarks(photos)
    refit = refit_pose_expression(reader.face_model, rnet, points, landmark_set=landmark_set,
                                  intrinsics=reader.intrinsics(photos))
    return {"landmark init": landmarks, "R-Net": rnet,
            "R-Net shape, landmark pose": landmarks.replace(id=rnet.id, tex=rnet.tex, gamma=rnet.gamma),
            "R-Net, landmark refit": refit}


def fitted(face_model, targets: FitTargets, start: Coeffs, config: FitConfig) -> tuple[Coeffs, float, int]:
    """Per-image fit from ``start``: coefficients, seconds, steps."""
    began = time.perf_counter()
    result = fit_images(face_model, targets, start, config)
    return result.coeffs, time.perf_counter() - began, int(sum(result.iterations))


def subject_rows(data: Path, subject: str, readers: dict[str, Reconstructor], fit: Optional[FitConfig],
                 starts: tuple[str, ...]) -> list[dict]:
    """One row per photo: the NoW median (mm) of each start in ``starts`` and of the fit
    from it (``fit``: its configuration, None: no fits), the fits' seconds and steps."""
    landmarks_only = readers["landmark init"]
    face_model = landmarks_only.face_model
    with tempfile.TemporaryDirectory() as temp:
        photos, failed = fit_eval.prepared_subject(data, subject, "detector", Path(temp))
    points, landmark_set = landmarks_only.landmarks(photos)
    targets = FitTargets(torch.stack([p.crop_tensor() for p in photos]), points,
                         landmark_set=landmark_set, intrinsics=landmarks_only.intrinsics(photos))
    scan = read_mesh(next((data / "scans" / subject).glob("*.obj")))
    scan_landmarks, _ = read_pp(next((data / "scans_lmks_onlypp" / subject).glob("*.pp")))
    floor = fit_eval.projected_id(face_model, fit_eval.scan_at_model_vertices(data, subject, scan))

    def median(id_row: torch.Tensor) -> float:
        return float(np.median(fit_eval.score(face_model, id_row, scan, scan_landmarks)))

    rows = [{"subject": subject, "photo": p.path.stem, fit_eval.MEAN_FACE: median(torch.zeros_like(floor)),
             "floor": median(floor)} for p in photos]
    for start_name, start in start_coeffs(readers, photos).items():
        if start_name not in starts:
            continue
        ends, seconds, steps = fitted(face_model, targets, start, fit) if fit else (None, float("nan"), 0)
        for index, row in enumerate(rows):
            row[start_name] = median(start.id[index:index + 1])
            if ends is not None:
                row[f"fit from {start_name}"] = median(ends.id[index:index + 1])
                row[f"seconds from {start_name}"] = seconds / len(photos)
                row[f"steps from {start_name}"] = steps
    if failed:
        print(f"{subject}: detector failed on {', '.join(sorted(failed))}", flush=True)
    return rows


def subject_bootstrap(rows: list[dict], method: str, baseline: str, draws: int = 2000,
                      seed: int = 0) -> tuple[float, float, float]:
    """The relative change (%) of ``method``'s median over photos against ``baseline``'s,
    and its 90 % interval when whole subjects are resampled with replacement (photos of one
    person share that person's errors, so subjects, not photos, are the independent draws)."""
    def change(picked: list[dict]) -> float:
        ours, theirs = (np.median([r[m] for r in picked]) for m in (method, baseline))
        return 100.0 * (ours / theirs - 1.0)

    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row.get("seed"), row["subject"]), []).append(row)
    keys = list(groups)
    rng = np.random.default_rng(seed)
    samples = [change([r for k in rng.choice(len(keys), len(keys)) for r in groups[keys[k]]])
               for _ in range(draws)]
    low, high = np.percentile(samples, [5, 95])
    return change(rows), float(low), float(high)


def held_out_table(rows: list[dict]) -> list[str]:
    methods = [m for m in METHODS if m in rows[0]]
    lines = ["| method | median of per-photo medians (mm) | mean (mm) | gap closed mean face -> floor, median | "
             "beats landmark init | beats mean face |", "|---|---|---|---|---|---|"]
    for method in methods:
        values = np.array([r[method] for r in rows])
        gaps = [fit_eval.gap_closed(r[method], r[fit_eval.MEAN_FACE], r["floor"]) for r in rows]
        beats_init = sum(r[method] < r["landmark init"] for r in rows)
        beats_mean = sum(r[method] < r[fit_eval.MEAN_FACE] for r in rows)
        lines.append(f"| {method} | {np.median(values):.3f} | {values.mean():.3f} | {np.median(gaps):+.0f} % | "
                     f"{beats_init}/{len(rows)} | {beats_mean}/{len(rows)} |")
    lines.append("\nMedian against the landmark initialiser's (start vs start, fit vs fit), 90 % interval "
                 "over subjects resampled:\n")
    for method in methods:
        baseline = "fit from landmark init" if method.startswith("fit from") else "landmark init"
        if method not in (baseline, fit_eval.MEAN_FACE, "floor") and baseline in rows[0]:
            change, low, high = subject_bootstrap(rows, method, baseline)
            lines.append(f"- {method}: {change:+.1f} % [{low:+.1f}, {high:+.1f}]")
    for start in STARTS:
        if f"seconds from {start}" in rows[0]:
            seconds = np.mean([r[f"seconds from {start}"] for r in rows])
            steps = np.mean([r[f"steps from {start}"] for r in rows])
            lines.append(f"\nfit from {start}: {seconds:.2f} s per photo (per-image fits of each subject's "
                         f"photos batched), {steps:.0f} steps per subject batch")
    return lines


def real_photo_lines(photos_dir: Path, readers: dict[str, Reconstructor], fit: Optional[FitConfig],
                     starts: tuple[str, ...]) -> list[str]:
    """Landmark RMSE (px) against the detector's points on the real photos, per start."""
    lines = ["| landmarks | start | start RMSE (px) | after per-image fit (px) |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as temp:
        photo_only = Path(temp)
        for photo in sorted(photos_dir.glob("*.jpg")):
            shutil.copy(photo, photo_only / photo.name)
        for label, folder in (("mediapipe 478", photo_only), ("shipped detections, 68", photos_dir)):
            photos, _ = prepare_photos(folder, SubjectOptions())
            reader = readers["landmark init"]
            face_model = reader.face_model
            points, landmark_set = reader.landmarks(photos)
            targets = FitTargets(torch.stack([p.crop_tensor() for p in photos]), points,
                                 landmark_set=landmark_set, intrinsics=reader.intrinsics(photos))

            def rmse(coeffs: Coeffs) -> float:
                with torch.no_grad():
                    geometry = reader.geometry(coeffs, photos)
                return float(np.mean(landmark_rmse(face_model, geometry, points, landmark_set)))

            for start_name, start in start_coeffs(readers, photos).items():
                if start_name not in starts:
                    continue
                after = f"{rmse(fitted(face_model, targets, start, fit)[0]):.2f}" if fit else "-"
                lines.append(f"| {label} | {start_name} | {rmse(start):.2f} | {after} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="R-Net checkpoint (epoch_<N>.pth)")
    parser.add_argument("--arch", default="mobilenet_v3_small")
    parser.add_argument("--seeds", default="200-202", help="held-out generator seeds (default 200-202)")
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--data", type=Path, default=None, help="keep / reuse the generated sets here")
    parser.add_argument("--no-fit", dest="fit", action="store_false", help="starts only")
    parser.add_argument("--iters", type=int, default=None,
                        help="total fit steps (the default schedule rescaled; default: the fit's own)")
    parser.add_argument("--starts", nargs="+", default=list(STARTS), metavar="NAME",
                        help=f"among: {'; '.join(STARTS)} (default: all; 'landmark init' always)")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "examples",
                        help="real photos with detections/ (skipped when absent)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    parser.add_argument("--csv", type=Path, default=None, help="per-photo rows")
    args = parser.parse_args(argv)
    unknown = set(args.starts) - set(STARTS)
    if unknown:
        parser.error(f"--starts: names among {STARTS}; got {sorted(unknown)}")
    starts = tuple(name for name in STARTS if name in args.starts or name == "landmark init")
    try:
        fit = None if not args.fit else FitConfig() if args.iters is None else FitConfig().with_total_iterations(args.iters)
    except ValueError as err:
        parser.error(f"--iters: {err}")
    if not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    readers = {"landmark init": Reconstructor(ReconstructOptions(device="cpu", init="landmarks")),
               "R-Net": Reconstructor(ReconstructOptions(device="cpu", checkpoint=args.checkpoint,
                                                         arch=args.arch))}
    began = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as temp:
        root = args.data or Path(temp)
        for seed in fit_eval.parse_seeds(args.seeds):
            data = root / f"seed_{seed}"
            if not (data / "scans").is_dir():
                fit_eval.generate_set(data, argparse.Namespace(subjects=args.subjects, images=args.images,
                                                               detail_mm=2.0, realism="photo"), seed)
            subjects = sorted(p.name for p in (data / "scans").iterdir())
            for subject in tqdm(subjects, desc=f"seed {seed}"):
                rows += [{"seed": seed, **row} for row in subject_rows(data, subject, readers, fit, starts)]
    lines = [f"# R-Net ({args.arch}, {args.checkpoint.name}) vs the landmark initialiser", "",
             f"`python benchmarks/rnet_eval.py --checkpoint {args.checkpoint.name} --arch {args.arch} "
             f"--seeds {args.seeds} --subjects {args.subjects} --images {args.images}"
             + (f" --iters {args.iters}" if args.iters else "")
             + (" --starts " + " ".join(f"'{name}'" for name in starts) if starts != STARTS else "") + "`", "",
             f"Held-out out-of-model photos: {len(rows)} (detector landmarks), NoW protocol per photo:", "",
             *held_out_table(rows), ""]
    if args.photos.is_dir():
        lines += ["Real example photos, landmark RMSE against the detector:", "",
                  *real_photo_lines(args.photos, readers, fit, starts), ""]
    lines.append(f"{time.perf_counter() - began:.0f} s on {torch.get_num_threads()} thread(s).")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.csv:
        import pandas as pd
        pd.DataFrame(rows).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

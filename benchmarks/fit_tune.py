"""Screening loop for the fit's objective on out-of-model sets: prepare once, score many settings.

``fit_eval.py`` generates, detects and initialises every time it runs; tuning needs the
same subjects scored under many ``FitConfig`` settings. This script keeps the expensive,
setting-independent part in a cache folder (the generated sets; per subject its photos'
crops, detected points, cameras, landmark initialisation, confidence-aggregated start,
mean-face and floor medians) and then runs only the fits:

    python benchmarks/fit_tune.py prepare --cache CACHE --seeds 0-5
    python benchmarks/fit_tune.py score --cache CACHE --seeds 0-5 --set weights.reg=6e-4
    python benchmarks/fit_tune.py real --cache CACHE --photos ../shared/data/examples --set ...

``score`` prints each subject's joint-fit (and with ``--methods``, per-image, initialiser,
the per-image fits' mean identity, and the joint fit started from that mean; with
``--checkpoint``, R-Net's start as the pipeline builds it, its pose and expression re-fitted to
the points, and the joint fit from its confidence-fused identity) NoW median and the fraction of the mean-face-to-floor gap it closes, then the
median over subjects and how many beat the mean face: the figures of ``fit_eval.py
--realism photo`` for the same seeds and settings (same preparation and scoring code, one
thread). ``real`` fits the real photos per image and prints the landmark RMSE against the
detector before and after, with mediapipe's dense points (a copy of the photos without
their detection files) and with the shipped detections and dlib's 68 points.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import fit_eval  # noqa: E402
from evaluation.meshio import read_mesh, read_pp  # noqa: E402
from faceset.pipeline import ReconstructOptions, Reconstructor  # noqa: E402
from faceset.subject import SubjectOptions, prepare_photos  # noqa: E402
from fitting import FitConfig, FitTargets, fit_images, fit_subject  # noqa: E402
from recon.landmark_fit import refit_pose_expression  # noqa: E402
from recon.types import Coeffs  # noqa: E402

METHODS = ("joint", "per-image", "init", "per-image-mean", "joint-from-per-image", "rnet", "joint-from-rnet")
RNET_METHODS = ("rnet", "joint-from-rnet")


def prepared_path(cache: Path, landmarks: str, seed: int, subject: str) -> Path:
    return cache / "prepared" / landmarks / f"{seed}_{subject}.pt"


def prepare(args, reconstructor: Reconstructor) -> None:
    face_model = reconstructor.face_model
    for seed in args.seeds:
        data = args.cache / "sets" / f"seed{seed}"
        if not (data / "synth.json").is_file():
            fit_eval.generate_set(data, argparse.Namespace(realism="photo", subjects=args.subjects,
                                                           images=args.images), seed)
        for subject in sorted(json.loads((data / "synth.json").read_text())["subjects"]):
            out = prepared_path(args.cache, args.landmarks, seed, subject)
            if out.is_file():
                continue
            with tempfile.TemporaryDirectory() as temp:
                photos, failed = fit_eval.prepared_subject(data, subject, args.landmarks, Path(temp))
            targets = fit_eval.subject_targets(photos, reconstructor, args.landmarks)
            init = Coeffs.cat([reconstructor.coefficients([p]) for p in photos])
            start = fit_eval.confidence_identity(face_model, init, targets)
            scan_path, pp_path = fit_eval.scan_files(data, subject)
            scan, (scan_landmarks, _) = read_mesh(scan_path), read_pp(pp_path)
            floor_id = fit_eval.projected_id(face_model, fit_eval.scan_at_model_vertices(data, subject, scan))
            record = dict(images=targets.images, points=targets.landmarks,
                          landmark_set=targets.landmark_set, intrinsics=targets.intrinsics, init=init,
                          start_id=start.id, start_tex=start.tex, scan=str(scan_path), scan_landmarks=str(pp_path),
                          mean_face=_median(face_model, torch.zeros_like(init.id[:1]), scan, scan_landmarks),
                          floor=_median(face_model, floor_id, scan, scan_landmarks), failed=failed)
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.save(record, out)
            print(f"prepared {out.name}: mean face {record['mean_face']:.3f} mm, floor {record['floor']:.3f} mm",
                  flush=True)


def _median(face_model, id_row, scan, scan_landmarks) -> float:
    return float(np.median(fit_eval.score(face_model, id_row, scan, scan_landmarks)))


def _per_photo_median(face_model, ids: torch.Tensor, scan, scan_landmarks) -> float:
    return float(np.median(np.concatenate([fit_eval.score(face_model, ids[i:i + 1], scan, scan_landmarks)
                                           for i in range(ids.shape[0])])))


def rnet_start(record: dict, face_model, rnet) -> Coeffs:
    """R-Net's coefficients of the cached crops with pose and expression re-fitted to the
    cached points: ``Reconstructor.coefficients`` for a shipped R-Net with ``refit_pose``."""
    with torch.no_grad():
        predicted = rnet.predict(record["images"])
    return refit_pose_expression(face_model, predicted, record["points"], landmark_set=record["landmark_set"],
                                 intrinsics=record["intrinsics"])


def score_subject(record: dict, face_model, config: FitConfig, methods: list[str], rnet=None) -> dict[str, float]:
    targets = FitTargets(record["images"], record["points"], landmark_set=record["landmark_set"],
                         intrinsics=record["intrinsics"])
    scan = read_mesh(record["scan"])
    scan_landmarks, _ = read_pp(record["scan_landmarks"])
    init = record["init"]
    medians = {}
    if "joint" in methods:
        start = init.replace(id=record["start_id"].expand_as(init.id).clone(),
                             tex=record["start_tex"].expand_as(init.tex).clone())
        medians["joint"] = _median(face_model, fit_subject(face_model, targets, start, config).coeffs.id[:1],
                                   scan, scan_landmarks)
    if {"per-image", "per-image-mean", "joint-from-per-image"} & set(methods):
        # one per-image fit serves its own score, its mean identity and albedo, and the joint
        # fit started from that mean
        per_image = fit_images(face_model, targets, init, config).coeffs
        mean_id, mean_tex = per_image.id.mean(0, keepdim=True), per_image.tex.mean(0, keepdim=True)
        if "per-image" in methods:
            medians["per-image"] = _per_photo_median(face_model, per_image.id, scan, scan_landmarks)
        if "per-image-mean" in methods:
            medians["per-image-mean"] = _median(face_model, mean_id, scan, scan_landmarks)
        if "joint-from-per-image" in methods:
            start = per_image.replace(id=mean_id.expand_as(init.id).clone(), tex=mean_tex.expand_as(init.tex).clone())
            medians["joint-from-per-image"] = _median(
                face_model, fit_subject(face_model, targets, start, config).coeffs.id[:1], scan, scan_landmarks)
    if "init" in methods:
        medians["init"] = _per_photo_median(face_model, init.id, scan, scan_landmarks)
    if set(RNET_METHODS) & set(methods):
        start = rnet_start(record, face_model, rnet)
        if "rnet" in methods:
            medians["rnet"] = _per_photo_median(face_model, start.id, scan, scan_landmarks)
        if "joint-from-rnet" in methods:
            fused = fit_eval.confidence_identity(face_model, start, targets)
            start = start.replace(id=fused.id.expand_as(start.id).clone(), tex=fused.tex.expand_as(start.tex).clone())
            medians["joint-from-rnet"] = _median(face_model, fit_subject(face_model, targets, start, config).coeffs.id[:1],
                                                 scan, scan_landmarks)
    return medians


def score(args, reconstructor: Reconstructor) -> None:
    config = fit_eval.with_settings(FitConfig(), args.set)
    rows = []
    for path in sorted((args.cache / "prepared" / args.landmarks).glob("*.pt")):
        if int(path.stem.split("_")[0]) not in args.seeds or (args.only and path.stem not in args.only):
            continue
        record = torch.load(path, weights_only=False)
        medians = score_subject(record, reconstructor.face_model, config, args.methods, args.rnet)
        rows.append((path.stem, record["mean_face"], record["floor"], medians))
        text = ", ".join(f"{m} {v:.3f} ({fit_eval.gap_closed(v, record['mean_face'], record['floor']):+.0f} %)"
                         for m, v in medians.items())
        print(f"{path.stem}: mean face {record['mean_face']:.3f}, floor {record['floor']:.3f}; {text}", flush=True)
    if not rows:
        raise SystemExit(f"no prepared subjects for seeds {args.seeds} in {args.cache}: run prepare first")
    for method in args.methods:
        gaps = [fit_eval.gap_closed(m[method], mean, floor) for _, mean, floor, m in rows]
        beats = sum(m[method] < mean for _, mean, _, m in rows)
        print(f"{method}: gap closed median {np.median(gaps):+.1f} % (mean {np.mean(gaps):+.1f} %), "
              f"beats the mean face on {beats} of {len(rows)} subjects; settings {args.set or 'defaults'}")


def real(args, reconstructor: Reconstructor) -> None:
    """Per-image fits of the real photos: landmark RMSE against the detector, before / after."""
    from faceset.fit_report import landmark_rmse
    config = fit_eval.with_settings(FitConfig(), args.set)
    face_model = reconstructor.face_model
    photo_only = args.cache / "real_photos"
    photo_only.mkdir(parents=True, exist_ok=True)
    for photo in sorted(args.photos.glob("*.jpg")):
        if not (photo_only / photo.name).is_file():
            shutil.copy(photo, photo_only / photo.name)
    for label, folder in (("mediapipe 478 (no detection files)", photo_only),
                          ("shipped detections + 68", args.photos)):
        photos, failed = prepare_photos(folder, SubjectOptions())
        points, landmark_set = reconstructor.landmarks(photos)
        intrinsics = reconstructor.intrinsics(photos)
        init = Coeffs.cat([reconstructor.coefficients([p]) for p in photos])
        targets = FitTargets(torch.stack([p.crop_tensor() for p in photos]), points,
                             landmark_set=landmark_set, intrinsics=intrinsics)
        fitted = fit_images(face_model, targets, init, config).coeffs

        def rmse(coeffs: Coeffs) -> float:
            with torch.no_grad():
                geometry = reconstructor.geometry(coeffs, photos)
            return float(np.mean(landmark_rmse(face_model, geometry, points, landmark_set)))

        before, after = rmse(init), rmse(fitted)
        print(f"{label}: {len(photos)} photos ({len(failed)} failed), landmark RMSE {before:.2f} -> "
              f"{after:.2f} px ({after - before:+.2f}); settings {args.set or 'defaults'}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("prepare", "score", "real"))
    parser.add_argument("--cache", type=Path, required=True, help="folder for the sets and prepared subjects")
    parser.add_argument("--seeds", default="0-5", help="e.g. 0-5 or 0,2,5")
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--landmarks", default="detector", choices=("detector", "truth"))
    parser.add_argument("--only", default="", help="comma-separated SEED_subject_NNN to score")
    parser.add_argument("--methods", default="joint", help=f"comma-separated among {', '.join(METHODS)}")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "examples",
                        help="real photos with detections/ (mode real)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="R-Net of the rnet methods")
    parser.add_argument("--arch", default="mobilenet_v3_small", help="its backbone")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="FitConfig override as in fit_eval.py (repeatable)")
    args = parser.parse_args(argv)
    args.seeds = fit_eval.parse_seeds(args.seeds)
    args.only = [s for s in args.only.split(",") if s]
    args.methods = [m for m in args.methods.split(",") if m]
    if set(args.methods) - set(METHODS):
        parser.error(f"--methods: among {METHODS}")
    if set(RNET_METHODS) & set(args.methods) and args.checkpoint is None:
        parser.error(f"--methods {', '.join(RNET_METHODS)} need the R-Net --checkpoint")
    torch.set_num_threads(1)
    reconstructor = Reconstructor(ReconstructOptions(device="cpu", init="landmarks"))
    args.rnet = None
    if args.checkpoint is not None:
        from recon.rnet import load_checkpoint
        args.rnet = load_checkpoint(args.checkpoint, args.arch, sizes=reconstructor.face_model.coeff_sizes).eval()
    {"prepare": prepare, "score": score, "real": real}[args.mode](args, reconstructor)
    return 0


if __name__ == "__main__":
    sys.exit(main())

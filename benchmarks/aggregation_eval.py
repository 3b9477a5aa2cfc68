"""Identity fusion against set size on out-of-model photo sets with bad photos (NoW protocol).

Held-out subjects come from the photo-realistic generator (``faceset.photoreal``, a seed
no training run uses); each gets ``--images`` photos (16 by default) in a fixed order in
which every fourth photo, starting with the second, is a bad one, cycling through:

- ``yaw``: extreme yaw, |yaw| of 65-85 degrees (the generator's pose drawn with
  ``yaw_deg=85`` until it is that far round);
- ``occluded``: an occluder certain (``occluder_probability=1``: hand, phone, hair, glasses);
- ``blur``: the finished photo blurred with a Gaussian of 1.5 % of its diagonal (sigma) and
  re-encoded (the generator's own lens blur stays below 0.8 px).

A set of n photos is the first n of that order (n = 1, 2, 4, 8, 16: bad photos 0, 1, 1, 2,
4). Photos go through the pipeline as a user's would: the detector finds the points
(mediapipe, dlib where it finds no face; a photo without a face drops out of its sets) and
the per-photo coefficients come from R-Net (``--checkpoint``) or the landmark initialiser.
Each method fuses one identity per set, and its neutral mesh is scored against the
subject's true surface with ``evaluation.now`` (``benchmarks/fit_eval.py``'s ``score``):

- ``mean``: the authors' average of the identities;
- ``confidence``: the landmark-information / fit-quality weighted mean;
- ``cnet``: a trained C-Net (``--cnet``, with the R-Net ``--checkpoint`` it reads);
- reference rows: ``mean face`` (no fit), ``floor`` (the model's identity fitted to the
  true surface in 3-D) and ``best convex fusion (oracle)``: the identity nearest the true
  surface (the floor's least squares) among all per-coefficient convex combinations of the
  set's identities, i.e. with every coefficient inside the photos' range. Every method above
  (and any C-Net, whose confidences weight each coefficient) fuses inside that range, so this
  row bounds what weighting the photos can gain over ``mean``; ``mean of the good photos
  (oracle)``: the authors' mean over the set's photos that are not bad, what a confidence
  that recognised every bad photo (and nothing else) would give.

The table gives, per set size and method, the median scan-to-mesh distance (mm) pooled
over the subjects' scan vertices; ``--plot`` draws it against set size.

    python benchmarks/aggregation_eval.py --subjects 6 --out benchmarks/results/aggregation_eval.md \
        --plot benchmarks/results/aggregation_eval.png [--checkpoint RNET --arch A --cnet NAME]
    python benchmarks/aggregation_eval.py --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.publish import publish  # noqa: E402
from recon.threads import configure_threads  # noqa: E402

SET_SIZES = (1, 2, 4, 8, 16)
BAD_KINDS = ("yaw", "occluded", "blur")
EXTREME_YAW_DEG = (65.0, 85.0)   # |yaw| range of the extreme-yaw photos
BLUR_SIGMA_OF_DIAGONAL = 0.015   # the blurred photos' Gaussian sigma, fraction of the diagonal
MEAN_FACE, FLOOR = "mean face (no fit)", "floor (id fitted to the truth in 3-D)"
BEST_CONVEX = "best convex fusion (oracle)"
GOOD_MEAN = "mean of the good photos (oracle)"


def photo_kind(index: int) -> str:
    """``good`` or the bad kind of photo ``index`` of a subject (every fourth from the second)."""
    return BAD_KINDS[(index // 4) % len(BAD_KINDS)] if index % 4 == 1 else "good"


def photo_index(stem: str) -> int:
    """A photo's place in its subject's order: the number after the last underscore."""
    return int(stem.rsplit("_", 1)[1])


def bad_photo(generator, rng, subject, stem: str, kind: str):
    """One photo of ``kind`` from the photo generator (see the module docstring)."""
    base = generator.config
    if kind == "yaw":
        generator.config = replace(base, yaw_deg=EXTREME_YAW_DEG[1])
        try:
            for _ in range(40):
                photo = generator.photo(rng, subject, stem)
                if abs(np.rad2deg(photo.angles[1])) >= EXTREME_YAW_DEG[0]:
                    return photo
            raise RuntimeError(f"{stem}: no pose beyond {EXTREME_YAW_DEG[0]} degrees in 40 draws")
        finally:
            generator.config = base
    if kind == "occluded":
        generator.config = replace(base, occluder_probability=1.0)
        try:
            return generator.photo(rng, subject, stem)
        finally:
            generator.config = base
    photo = generator.photo(rng, subject, stem)
    return replace(photo, jpeg=blurred_jpeg(photo.jpeg))


def blurred_jpeg(jpeg: bytes) -> bytes:
    """The photo blurred (sigma = BLUR_SIGMA_OF_DIAGONAL x diagonal), EXIF kept, quality 90."""
    import io
    from PIL import Image, ImageFilter
    with Image.open(io.BytesIO(jpeg)) as image:
        exif = image.info.get("exif", b"")
        radius = BLUR_SIGMA_OF_DIAGONAL * float(np.hypot(*image.size))
        out = io.BytesIO()
        image.convert("RGB").filter(ImageFilter.GaussianBlur(radius)).save(out, format="JPEG", quality=90, exif=exif)
    return out.getvalue()


def generate(data: Path, subjects: int, images: int, seed: int, image_size) -> dict:
    """The held-out subjects under ``data`` (fit_eval's layout); returns {stem: kind}."""
    from tqdm import tqdm
    from faceset.photoreal.generate import PhotoConfig, PhotoGenerator, write_photo, write_subject
    from recon.face_model import FaceModel
    from faceset.synth import default_model
    config = PhotoConfig(subjects=subjects, images=images, seed=seed, image_size=image_size)
    generator = PhotoGenerator(FaceModel(default_model()), config)
    rng = np.random.default_rng(seed)
    kinds, manifest = {}, {"subjects": {}}
    with tqdm(total=subjects * images, desc="held-out photos", unit="photo") as bar:
        for s in range(subjects):
            subject = generator.subject(rng, f"subject_{s:03d}")
            for k in range(images):
                stem, kind = f"{subject.name}_{k:02d}", photo_kind(k)
                photo = (generator.photo(rng, subject, stem) if kind == "good"
                         else bad_photo(generator, rng, subject, stem, kind))
                write_photo(data, subject, photo)
                kinds[stem] = kind
                bar.update()
            manifest["subjects"][subject.name] = write_subject(data, generator, subject)
    (data / "synth.json").write_text(json.dumps(manifest))
    return kinds


def fuse_all(face_model, coeffs, targets, landmark_set, features, cnet) -> dict:
    """{method: (1, K) id} of one set."""
    from aggregation import AggregationConfig, aggregate_identity
    from aggregation.cnet import cnet_aggregate
    ids = {"mean": coeffs.id.mean(0, keepdim=True),
           "confidence": aggregate_identity(face_model, coeffs, targets, AggregationConfig("confidence"),
                                            landmark_set=landmark_set).id}
    if cnet is not None:
        ids["cnet"] = cnet_aggregate(cnet, features, coeffs).id
    return ids


def best_convex_id(face_model, truth_mm: np.ndarray, ids):
    """(1, K) the floor's least squares restricted to each coefficient's range over ``ids``
    (M, K): a bounded least-squares problem, solved on the Cholesky factor of its normal
    equations (K x K)."""
    import torch
    from scipy.optimize import lsq_linear
    from benchmarks.fit_eval import skin_normal_equations
    normal, rhs = skin_normal_equations(face_model, truth_mm)
    factor = torch.linalg.cholesky(normal)                      # normal = L L^T
    target = torch.linalg.solve_triangular(factor, rhs[:, None], upper=False)[:, 0]
    low, high = (v.double().cpu().numpy() for v in (ids.min(0).values, ids.max(0).values))
    solution = lsq_linear(factor.T.numpy(), target.numpy(), bounds=(low, high + 1e-9)).x
    return torch.tensor(solution, dtype=ids.dtype, device=ids.device)[None]


def evaluate_subject(data: Path, subject: str, reconstructor, rnet, cnet, sizes) -> dict:
    """{(size, method): distances (N,) mm} and the photos that dropped out."""
    import torch
    from evaluation.meshio import read_mesh, read_pp
    from benchmarks.fit_eval import prepared_subject, projected_id, scan_at_model_vertices, score
    from recon.types import Coeffs
    face_model = reconstructor.face_model
    with tempfile.TemporaryDirectory() as temp:
        photos, failed = prepared_subject(data, subject, "detector", Path(temp))
    order = sorted(photos, key=lambda p: p.stem)
    scan = read_mesh(next((data / "scans" / subject).glob("*.obj")))
    scan_landmarks, _ = read_pp(next((data / "scans_lmks_onlypp" / subject).glob("*.pp")))
    coeffs = Coeffs.cat([reconstructor.coefficients([p]) for p in order])
    with torch.no_grad():
        features = (rnet.features(torch.stack([p.crop_tensor() for p in order]).to(reconstructor.device))
                    if rnet is not None else None)
    stems = [p.stem for p in order]
    results = {}
    truth_mm = scan_at_model_vertices(data, subject, scan)
    constant = {MEAN_FACE: score(face_model, torch.zeros_like(coeffs.id[:1]), scan, scan_landmarks),
                FLOOR: score(face_model, projected_id(face_model, truth_mm), scan, scan_landmarks)}
    for size in sizes:
        for method, distances in constant.items():
            results[size, method] = distances
        # the first `size` photos of the subject's order that the detector kept
        chosen = [i for i, stem in enumerate(stems) if photo_index(stem) < size]
        if not chosen:
            continue
        index = torch.tensor(chosen)
        subset = coeffs[index]
        photos_in = [order[i] for i in chosen]
        targets, landmark_set = reconstructor.landmarks(photos_in)
        ids = fuse_all(face_model, subset, targets, landmark_set,
                       None if features is None else features[index], cnet)
        ids[BEST_CONVEX] = best_convex_id(face_model, truth_mm, subset.id)
        good = [n for n, i in enumerate(chosen) if photo_kind(photo_index(stems[i])) == "good"]
        if good:
            ids[GOOD_MEAN] = subset.id[good].mean(0, keepdim=True)
        for method, row in ids.items():
            results[size, method] = score(face_model, row, scan, scan_landmarks)
    return {"distances": results, "failed": sorted(failed), "used": stems}


def table(per_subject: dict, sizes, methods) -> list[str]:
    lines = ["| photos (bad) | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for size in sizes:
        bad = sum(photo_kind(k) != "good" for k in range(size))
        cells = []
        for method in methods:
            pooled = [r["distances"][size, method] for r in per_subject.values()
                      if (size, method) in r["distances"]]
            cells.append(f"{np.median(np.concatenate(pooled)):.3f}" if pooled else "-")
        lines.append(f"| {size} ({bad}) | " + " | ".join(cells) + " |")
    return lines


def plot(per_subject: dict, sizes, methods, path: Path) -> None:
    from matplotlib.figure import Figure
    from recon.io import figure_png, write_atomic
    figure = Figure(figsize=(6, 4), dpi=100)
    axis = figure.subplots()
    for method in methods:
        xs, ys = [], []
        for size in sizes:
            pooled = [r["distances"][size, method] for r in per_subject.values()
                      if (size, method) in r["distances"]]
            if pooled:
                xs.append(size)
                ys.append(float(np.median(np.concatenate(pooled))))
        style = "--" if method in (MEAN_FACE, FLOOR) else ":" if method in (BEST_CONVEX, GOOD_MEAN) else "o-"
        axis.plot(xs, ys, style, label=method)
    axis.set_xscale("log", base=2)
    axis.set_xticks(list(sizes), [str(s) for s in sizes])
    axis.set_xlabel("photos in the set (every 4th from the 2nd is bad)")
    axis.set_ylabel("NoW median scan-to-mesh distance (mm)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    write_atomic(path, figure_png(figure))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--images", type=int, default=16, help="photos per subject (the largest set)")
    parser.add_argument("--seed", type=int, default=1000, help="generator seed (default 1000: held out)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="R-Net checkpoint for the per-photo coefficients (default: landmark initialiser)")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--cnet", default=None, help="C-Net file or name (needs --checkpoint)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--keep-data", type=Path, default=None, help="generate into this folder and keep it")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 subject, 4 photos (sets of 1, 2, 4)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of error against set size")
    args = parser.parse_args(argv)
    if args.cnet and not args.checkpoint:
        parser.error("--cnet needs the R-Net --checkpoint it was trained with")
    image_size = (256, 448)
    if args.quick:
        args.subjects, args.images = 1, 4
    sizes = tuple(s for s in SET_SIZES if s <= args.images)
    configure_threads(args.threads)
    from aggregation.cnet import check_rnet, load_cnet, resolve_cnet
    from faceset.pipeline import ReconstructOptions, Reconstructor

    started = time.perf_counter()
    reconstructor = Reconstructor(ReconstructOptions(device="cpu", checkpoint=args.checkpoint, arch=args.arch))
    rnet, cnet = reconstructor.rnet, None
    if args.cnet:
        cnet, record = load_cnet(args.cnet)
        check_rnet(record, rnet, str(resolve_cnet(args.cnet)))
    methods = ["mean", "confidence"] + (["cnet"] if cnet is not None else []) + [GOOD_MEAN, BEST_CONVEX, MEAN_FACE, FLOOR]
    with tempfile.TemporaryDirectory() as temp:
        data = args.keep_data or Path(temp) / "held_out"
        generate(data, args.subjects, args.images, args.seed, image_size)
        subjects = sorted(json.loads((data / "synth.json").read_text())["subjects"])
        per_subject = {}
        for subject in subjects:
            per_subject[subject] = evaluate_subject(data, subject, reconstructor, rnet, cnet, sizes)
            print(subject, "dropped:", per_subject[subject]["failed"] or "none", flush=True)
    init = f"R-Net {args.arch} {args.checkpoint.name}" if args.checkpoint else reconstructor.init_source
    command = "python benchmarks/aggregation_eval.py " + " ".join(argv if argv is not None else sys.argv[1:])
    dropped = sum(len(r["failed"]) for r in per_subject.values())
    lines = ["## Identity fusion against set size (out-of-model, NoW protocol)", "",
             f"Command: `{command}`", "",
             f"{len(subjects)} held-out subjects (seed {args.seed}), {args.images} photos each, every 4th "
             f"from the 2nd bad ({', '.join(BAD_KINDS)} in turn); per-photo coefficients from {init}; "
             f"points from the detector ({dropped} photo(s) without a detected face dropped). Median "
             "scan-to-mesh distance (mm) pooled over the subjects.", ""]
    lines += table(per_subject, sizes, methods)
    lines += ["", f"{time.perf_counter() - started:.0f} s in all.", ""]
    text = "\n".join(lines)
    publish(text, args.out)
    if args.plot:
        plot(per_subject, sizes, methods, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

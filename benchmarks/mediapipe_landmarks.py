"""mediapipe's dense landmarks: agreement with dlib on the example photos, speed, and how
well the "mediapipe478" correspondence maps the model's own renders back.

1. On every photo of the examples folder: mediapipe's 5 alignment points and its 68 iBUG
   points (``IBUG68_FROM_MEDIAPIPE``) against dlib's, mean pixel distance per point group
   (and as a fraction of dlib's inter-ocular distance, eye centre to eye centre).
2. Time per photo of each detector on the same photos (load, detect, landmarks; median of
   ``--repeats`` passes, after one warm-up pass).
3. The correspondence of the embedded model (the shipped set) and, with ``--resolution``,
   of embedded models at other resolutions (built into a temporary cache, timed): the mean
   face rendered at 224 px in poses off the build grid, mediapipe's points against the
   projections of the set's surface points (visible, non-contour points with weight > 0).

    PYTHONPATH=. python benchmarks/mediapipe_landmarks.py --examples PATH/examples
    PYTHONPATH=. python benchmarks/mediapipe_landmarks.py --examples PATH/examples --resolution 180

Writes ``benchmarks/results/mediapipe.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from recon import dense_correspondence as dc
from recon.face_model import FaceModel
from recon.models.procedural import DEFAULT_RESOLUTION, build_embedded_model
from recon.preprocess.align import PHOTO_SUFFIXES
from recon.preprocess.detect import LandmarkDetector
from recon.preprocess.mediapipe_detect import MediaPipeDetector

GROUPS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
          "outer lips": range(48, 60), "inner lips": range(60, 68)}
FIVE = ("eye L", "eye R", "nose", "mouth L", "mouth R")
HELD_OUT_POSES = np.array([[7.0, 12.0], [-4.0, -23.0], [14.0, 33.0], [-12.0, 4.0], [3.0, -36.0], [-17.0, 27.0]])


def agreement(photos: list[Path]) -> list[str]:
    mediapipe, dlib = MediaPipeDetector(), LandmarkDetector()
    five, sixty_eight, eye_distance = [], [], []
    for photo in photos:
        image = Image.open(photo).convert("RGB")
        ours, reference = mediapipe.detect_largest(image), dlib.detect_largest(image)
        if ours is None or reference is None:
            print(f"{photo.name}: mediapipe {ours is not None}, dlib {reference is not None}; skipped")
            continue
        five.append(np.linalg.norm(ours.five_points - reference.five_points, axis=1))
        sixty_eight.append(np.linalg.norm(ours.landmarks68 - reference.landmarks68, axis=1))
        eye_distance.append(np.linalg.norm(reference.five_points[0] - reference.five_points[1]))
    five, sixty_eight, eye_distance = np.array(five), np.array(sixty_eight), np.array(eye_distance)
    relative = lambda d: (d / eye_distance[:, None]).mean() * 100   # noqa: E731
    lines = [f"### Agreement with dlib ({len(five)} photos; dlib's inter-ocular distance "
             f"{eye_distance.mean():.0f} px on average)", "",
             "| points | mean distance, px | % of inter-ocular |", "|---|---|---|"]
    for k, name in enumerate(FIVE):
        lines.append(f"| 5-point {name} | {five[:, k].mean():.2f} | {relative(five[:, [k]]):.1f} |")
    lines.append(f"| **5 points, all** | **{five.mean():.2f}** | **{relative(five):.1f}** |")
    for name, group in GROUPS.items():
        lines.append(f"| 68-point {name} | {sixty_eight[:, list(group)].mean():.2f} | "
                     f"{relative(sixty_eight[:, list(group)]):.1f} |")
    lines.append(f"| **68 points, all** | **{sixty_eight.mean():.2f}** | **{relative(sixty_eight):.1f}** |")
    mediapipe.close()
    return lines + [""]


def speed(photos: list[Path], repeats: int) -> list[str]:
    images = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    detectors = {"mediapipe (478 + 68 + 5 points)": MediaPipeDetector(), "dlib HOG + 68 points": LandmarkDetector()}
    lines = [f"### Time per photo ({len(images)} photos, median of {repeats} passes, 1 CPU process)", "",
             "| detector | ms per photo | ratio to dlib |", "|---|---|---|"]
    timings = {}
    for name, detector in detectors.items():
        for image in images:                      # warm-up
            detector.detect_faces(image)
        passes = []
        for _ in range(repeats):
            start = time.perf_counter()
            for image in images:
                detector.detect_faces(image)
            passes.append((time.perf_counter() - start) / len(images) * 1000)
        timings[name] = float(np.median(passes))
    dlib_ms = timings["dlib HOG + 68 points"]
    lines += [f"| {name} | {ms:.1f} | {ms / dlib_ms:.2f} |" for name, ms in timings.items()]
    return lines + [""]


def correspondence(resolutions: list[int]) -> list[str]:
    lines = [f"### Correspondence: the model's mean face at 224 px in {len(HELD_OUT_POSES)} poses off "
             "the build grid (pitch, yaw: " + ", ".join(f"({p:g}, {y:g})" for p, y in HELD_OUT_POSES) + ")", "",
             "Distances (px) between mediapipe's points and the projections of the set's surface points, "
             "over the visible points of every pose; the weighted median weighs each point by its "
             "set weight, as the landmark term does.", "",
             "| model | vertices | set | build s | points w > 0 / w > 0.5 | median | weighted median "
             "| median w > 0.5 | 90th pct | contour median |", "|---|---|---|---|---|---|---|---|---|---|"]
    with MediaPipeDetector() as detector, tempfile.TemporaryDirectory() as cache:
        os.environ["FACESET_CACHE"] = cache
        for resolution in resolutions:
            face_model = FaceModel(build_embedded_model(resolution=resolution))
            shipped = dc.load_for_model(dc.shipped_path(face_model), face_model)
            start = time.perf_counter()
            landmark_set = shipped or dc.mediapipe_landmark_set(face_model, progress=False)
            build_s = "-" if shipped else f"{time.perf_counter() - start:.0f}"
            errors = dc.reprojection_errors(face_model, landmark_set, HELD_OUT_POSES, detector, size=224)
            weights = landmark_set.weights.numpy()
            contour = landmark_set.contour.numpy()
            used = (weights > 0) & ~contour
            seen = errors[:, used]
            finite = np.isfinite(seen)
            point_weights = np.broadcast_to(weights[used], seen.shape)[finite]
            order = np.argsort(seen[finite])
            cumulative = np.cumsum(point_weights[order])
            weighted = seen[finite][order][np.searchsorted(cumulative, cumulative[-1] / 2)]
            strong = errors[:, (weights > 0.5) & ~contour]
            outline = errors[:, contour & (weights > 0)]
            lines.append(f"| embedded r{resolution} | {face_model.n_vertices} | {'shipped' if shipped else 'built'} "
                         f"| {build_s} | {int((weights > 0).sum())} / {int((weights > 0.5).sum())} "
                         f"| {np.nanmedian(seen):.2f} | {weighted:.2f} | {np.nanmedian(strong):.2f} "
                         f"| {np.nanpercentile(seen, 90):.2f} | {np.nanmedian(outline):.2f} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=Path, required=True, help="folder of example photos")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resolution", type=int, nargs="*", default=[],
                        help="also build and check embedded models of these resolutions")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mediapipe.md")
    args = parser.parse_args()
    photos = sorted(p for p in args.examples.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    lines = ["# mediapipe dense landmarks", "",
             "Made by `PYTHONPATH=. python benchmarks/mediapipe_landmarks.py --examples EXAMPLES "
             + (f"--resolution {' '.join(map(str, args.resolution))}" if args.resolution else "") + "`", ""]
    lines += agreement(photos) + speed(photos, args.repeats)
    lines += correspondence([DEFAULT_RESOLUTION] + args.resolution)
    text = "\n".join(lines)
    print(text)
    from recon.io import write_atomic
    write_atomic(args.out, text.encode())


if __name__ == "__main__":
    main()

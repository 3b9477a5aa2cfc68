"""Sliding contour points in the landmark initialiser, on jaw targets that mark the outline.

fit_eval's landmarks are projections of fixed model vertices: its jaw targets never slide,
so it cannot show what sliding is for. A detector marks the jaw line where the face's
outline is; this script builds such targets without the marching code it evaluates. Model
faces (random identity and expression from the prior, yaw uniform in +-``--max-yaw``,
pitch and roll +-10 / 5 deg) are rendered (``recon.render``, mask only); the 68 targets are
the landmark vertices' projections plus Gaussian noise, except the upper jaw points (0-3,
13-16: below them the model's neck continues the mask, so its outline is not the jaw's)
which are moved along their image row to the mask's outline: the last covered pixel on the
point's side of the face (away from its mirror partner on the other side of the jaw). Then ``fit_landmarks``
runs with sliding off and on, and each fit is scored by its yaw error and the mean vertex
distance of its neutral shape (expression zero) to the true one (mm). The same faces with
all 68 targets at the fixed vertices (fit_eval's kind) are the control.

    python benchmarks/contour_eval.py --faces 24 --seed 0
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.publish import publish  # noqa: E402
from recon import constants as C  # noqa: E402
from recon.face_model import FaceModel  # noqa: E402
from recon.landmark_fit import LandmarkFitConfig, fit_landmarks  # noqa: E402
from recon.models.procedural import build_embedded_model  # noqa: E402
from recon.render import MeshRenderer  # noqa: E402
from recon.types import Coeffs  # noqa: E402

OUTLINE_JAW = (0, 1, 2, 3, 13, 14, 15, 16)


def random_faces(face_model: FaceModel, count: int, max_yaw: float, seed: int) -> Coeffs:
    g = torch.Generator().manual_seed(seed)
    coeffs = Coeffs.zeros(count, face_model.coeff_sizes)
    uniform = lambda limit: (2 * torch.rand(count, generator=g) - 1) * math.radians(limit)  # noqa: E731
    return coeffs.replace(id=torch.randn(coeffs.id.shape, generator=g), exp=0.5 * torch.randn(coeffs.exp.shape, generator=g),
                          angle=torch.stack([uniform(10.0), uniform(max_yaw), uniform(5.0)], 1),
                          trans=torch.stack([0.05 * torch.randn(count, generator=g), 0.05 * torch.randn(count, generator=g),
                                             0.1 * torch.randn(count, generator=g)], 1))


def outline_targets(mask: torch.Tensor, landmarks: torch.Tensor, depths: torch.Tensor | None = None) -> torch.Tensor:
    """Upper jaw targets moved along their pixel row to the mask's outline.

    mask (H, W) bool; landmarks (68, 2) y-down pixels. The outline point of a row is the
    covered pixel (centre) furthest out on the landmark's side, the side away from its
    mirror partner (jaw point 16 - i): at large yaw the far jaw projects past the nose, so
    the midline would not tell the sides apart. With ``depths`` (68,) (the landmarks'
    camera depths) only the points of the side turned away move (deeper than their
    partner: there the cheek hides the jaw); on the near side the model's mesh runs on
    behind the ear, where a real head has ear and hair, so its outline is not the jaw's."""
    targets = landmarks.clone()
    for index in OUTLINE_JAW:
        row = int(round(float(landmarks[index, 1])))
        covered = torch.nonzero(mask[row]).flatten().float()
        if covered.numel() == 0:
            continue
        side = 1.0 if float(landmarks[index, 0]) > float(landmarks[16 - index, 0]) else -1.0
        outline = covered.max() if side > 0 else covered.min()
        if depths is not None and float(depths[index]) < float(depths[16 - index]):
            continue
        targets[index, 0] = outline
    return targets


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-yaw", type=float, default=50.0, help="degrees")
    parser.add_argument("--noise", type=float, default=1.5, help="landmark noise, crop pixels")
    parser.add_argument("--far-side-only", action="store_true",
                        help="move only the jaw points of the side turned away to the outline")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    face_model = FaceModel(build_embedded_model())
    truth = random_faces(face_model, args.faces, args.max_yaw, args.seed)
    geometry = face_model.compute(truth, with_color=False)
    renderer = MeshRenderer(face_model.camera, backend="torch")
    noise = args.noise * torch.randn(args.faces, 68, 2, generator=torch.Generator().manual_seed(args.seed + 1))
    targets = []
    for b in range(args.faces):
        with torch.no_grad():
            mask = renderer.render(geometry[b], face_model.triangles).mask[0, 0] > 0.5
        depths = geometry.camera[b, face_model.landmark_ids, 2] if args.far_side_only else None
        targets.append(outline_targets(mask, geometry.landmarks[b], depths))
    targets = torch.stack(targets) + noise
    moved = (targets - noise - geometry.landmarks)[:, list(OUTLINE_JAW)].norm(dim=-1).flatten()
    moved = moved[moved > 0]  # the points that moved
    zero_exp = torch.zeros_like(truth.exp)
    true_shape = face_model.shape(truth.id, zero_exp)
    rows = []
    for kind, target in (("outline", targets), ("fixed vertices", geometry.landmarks + noise)):
        for slide in (False, True):
            fit = fit_landmarks(face_model, target, LandmarkFitConfig(slide_contour=slide))
            shape_mm = (face_model.shape(fit.id, zero_exp) - true_shape).norm(dim=-1).mean(1) * C.MM_PER_UNIT
            yaw_deg = (fit.angle[:, 1] - truth.angle[:, 1]).abs().rad2deg()
            rows.append((kind, slide, shape_mm, yaw_deg))
    large = truth.angle[:, 1].abs() > math.radians(25)
    lines = [f"## Sliding contour points in the landmark initialiser (outline jaw targets)\n",
             f"Command: `python benchmarks/contour_eval.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n",
             f"{args.faces} model faces (embedded model, seed {args.seed}), yaw within +-{args.max_yaw:.0f} deg "
             f"({int(large.sum())} beyond 25 deg), landmark noise {args.noise} px; upper jaw targets "
             f"{'of the side turned away ' if args.far_side_only else ''}moved to the rendered outline: {moved.numel()} points, by {float(moved.median()):.1f} px median "
             f"({float(moved.max()):.1f} max); "
             f"wall time {time.perf_counter() - started:.0f} s.\n",
             "| jaw targets | sliding | neutral shape error, median (mm) | mean (mm) | beyond 25 deg yaw, median (mm) | "
             "yaw error, median (deg) | beyond 25 deg, median (deg) |", "|---|---|---|---|---|---|---|"]
    for kind, slide, shape_mm, yaw_deg in rows:
        lines.append(f"| {kind} | {'on' if slide else 'off'} | {float(shape_mm.median()):.2f} | "
                     f"{float(shape_mm.mean()):.2f} | "
                     f"{float(shape_mm[large].median()) if large.any() else float('nan'):.2f} | "
                     f"{float(yaw_deg.median()):.2f} | "
                     f"{float(yaw_deg[large].median()) if large.any() else float('nan'):.2f} |")
    text = "\n".join(lines) + "\n"
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

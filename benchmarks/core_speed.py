"""Speed of the per-image core on this machine: landmark initialiser and R-Net inference.

    python benchmarks/core_speed.py [--threads N] [--repeats R]

Writes benchmarks/results/core_speed.md. Times are medians over R repeats after one
warm-up, per image, on the CPU; the R-Net figure is the ratio baseline for the
landmark initialiser (same process, same threads).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from recon.face_model import FaceModel
from recon.landmark_fit import fit_landmarks
from recon.models.procedural import build_embedded_model
from recon.rnet import ReconNet
from recon.types import Coeffs

RESULTS = Path(__file__).parent / "results" / "core_speed.md"


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_arguments(description: str, repeats: int) -> argparse.Namespace:
    """The command line of a speed benchmark: --threads (default: torch's count, which is
    then set) and --repeats (default ``repeats``) of each timed call."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=repeats)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def synthetic_landmarks(face_model: FaceModel, batch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    coeffs = Coeffs.zeros(batch, face_model.coeff_sizes)
    coeffs.id = torch.randn(batch, coeffs.id.shape[1], generator=gen)
    coeffs.exp = 0.5 * torch.randn(batch, coeffs.exp.shape[1], generator=gen)
    coeffs.angle = 0.3 * torch.randn(batch, 3, generator=gen)
    return face_model.compute(coeffs).landmarks + torch.randn(batch, 68, 2, generator=gen)


def main() -> None:
    args = speed_arguments(__doc__.splitlines()[0], repeats=5)
    face_model = FaceModel(build_embedded_model())
    net = ReconNet().eval()
    rows = []
    with torch.no_grad():
        for batch in (1, 8):
            landmarks = synthetic_landmarks(face_model, batch)
            images = torch.rand(batch, 3, 224, 224)
            t_fit = median_seconds(lambda: fit_landmarks(face_model, landmarks), args.repeats) / batch
            t_net = median_seconds(lambda: net(images), args.repeats) / batch
            rows.append((batch, t_fit * 1e3, t_net * 1e3, t_fit / t_net))
    lines = [f"Threads: {args.threads}; embedded model ({face_model.n_vertices} vertices).", "",
             "| batch | landmark initialiser ms/image | R-Net (ResNet-50) ms/image | ratio |",
             "|---|---|---|---|"]
    lines += [f"| {b} | {f:.1f} | {n:.1f} | {r:.2f} |" for b, f, n, r in rows]
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Speed of the fitting's contrast blur: banded matrix products vs a depthwise convolution.

    python benchmarks/blur_speed.py [--threads N] [--repeats R]

``recon.losses.gaussian_blur`` blurs each axis with one (size x size) banded matrix
product; the baseline is the same Gaussian (3 sigma radius, replicated edges) as two
depthwise ``conv2d`` passes, run in the same process. Both forward + backward on 8 RGB
images at the three pyramid levels of the fit (blur 16 px of the 224 crop, scaled with the
level). Writes benchmarks/results/blur_speed.md; times are medians over R repeats.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from core_speed import median_seconds, speed_arguments  # benchmarks/: the script's own folder
from recon.io import write_atomic
from recon.losses import gaussian_blur

RESULTS = Path(__file__).parent / "results" / "blur_speed.md"


def depthwise_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """The baseline: the same blur as two depthwise convolutions over replicate padding."""
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    rows = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"),
                    kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(F.pad(rows, (0, 0, radius, radius), mode="replicate"),
                    kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def median_ms(blur, images: torch.Tensor, sigma: float, repeats: int) -> float:
    def step():
        images.grad = None
        blur(images, sigma).square().sum().backward()
    return 1000 * median_seconds(step, repeats)


def main() -> None:
    args = speed_arguments(__doc__.splitlines()[0], repeats=7)
    lines = ["| image size | blur sigma (px) | depthwise conv2d (ms) | banded matmul (ms) | speed-up | max difference |",
             "|---|---|---|---|---|---|"]
    for size, sigma in ((56, 4.0), (112, 8.0), (224, 16.0)):
        images = torch.rand(8, 3, size, size, requires_grad=True)
        with torch.no_grad():
            difference = float((gaussian_blur(images, sigma) - depthwise_blur(images, sigma)).abs().max())
        baseline = median_ms(depthwise_blur, images, sigma, args.repeats)
        ours = median_ms(gaussian_blur, images, sigma, args.repeats)
        lines.append(f"| {size} | {sigma:g} | {baseline:.1f} | {ours:.1f} | {baseline / ours:.1f}x | {difference:.1e} |")
    text = "\n".join([
        "## Contrast blur: banded matrix products vs depthwise convolution",
        "",
        f"Command: `python benchmarks/blur_speed.py --threads {args.threads} --repeats {args.repeats}`; "
        f"8 RGB images, forward + backward, float32, {args.threads} thread(s), CPU.",
        "",
        *lines, ""])
    write_atomic(RESULTS, text.encode())
    print(text)


if __name__ == "__main__":
    main()

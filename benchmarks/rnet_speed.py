"""R-Net inference speed on the CPU at batch 16: the original's layout against faster paths,
measured in the same run.

Variants (all on the same random 224 x 224 batch, heads given random weights so the
outputs are not zero):

- ``resnet50, NCHW, no_grad``: the original's network as its test.py runs it (eval mode,
  contiguous float32 NCHW, ``torch.no_grad``): the baseline;
- ``resnet50, channels_last, inference_mode``: the same weights in channels-last memory
  format under ``torch.inference_mode``; its outputs are compared with the baseline's
  (max absolute and relative difference);
- ``resnet18`` and ``mobilenet_v3_small``, channels_last, inference_mode: the small
  backbones (other weights: no equality to check).

Each variant runs ``--warmup`` batches, then ``--repeats`` rounds in which every variant
times one batch in turn (interleaved, so a load change on a shared machine hits all of
them); the table gives the median images/s and the ratio to the baseline.

    python benchmarks/rnet_speed.py --repeats 10 --out benchmarks/results/rnet_speed.md
    python benchmarks/rnet_speed.py --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.publish import publish  # noqa: E402
from recon.threads import configure_threads  # noqa: E402

BASELINE = "resnet50, NCHW, no_grad (original)"


def build(arch: str, seed: int):
    import torch
    from recon.rnet import ReconNet
    torch.manual_seed(seed)
    net = ReconNet(arch).eval()
    for head in net.final_layers:
        torch.nn.init.normal_(head.weight, std=0.01)
    return net


def variants(seed: int) -> dict:
    """name -> (callable images -> coefficients, prepared input transform)."""
    import torch
    original = build("resnet50", seed)
    fast50 = build("resnet50", seed).to(memory_format=torch.channels_last)
    fast50.load_state_dict(original.state_dict())
    small = {arch: build(arch, seed).to(memory_format=torch.channels_last)
             for arch in ("resnet18", "mobilenet_v3_small")}

    def plain(images):
        with torch.no_grad():
            return original(images)

    def fast(net):
        def run(images):
            with torch.inference_mode():
                return net(images.contiguous(memory_format=torch.channels_last))
        return run

    table = {BASELINE: plain, "resnet50, channels_last, inference_mode": fast(fast50)}
    table.update({f"{arch}, channels_last, inference_mode": fast(net) for arch, net in small.items()})
    return table


def measure(table: dict, images, warmup: int, repeats: int) -> dict[str, list[float]]:
    from tqdm import tqdm
    for run in table.values():
        for _ in range(warmup):
            run(images)
    seconds = {name: [] for name in table}
    for _ in tqdm(range(repeats), desc="rounds"):
        for name, run in table.items():
            start = time.perf_counter()
            run(images)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="batch 4, 2 rounds, 1 warm-up (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.warmup = 4, 2, 1
    configure_threads(args.threads)
    import torch

    table = variants(args.seed)
    images = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(args.seed))
    reference = table[BASELINE](images)
    same = table["resnet50, channels_last, inference_mode"](images)
    max_abs = float((same - reference).abs().max())
    max_rel = max_abs / float(reference.abs().max())
    seconds = measure(table, images, args.warmup, args.repeats)
    rates = {name: args.batch / statistics.median(times) for name, times in seconds.items()}
    command = "python benchmarks/rnet_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"## R-Net inference speed (CPU, batch {args.batch})", "",
             f"Command: `{command}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} "
             "interleaved rounds.", "",
             "| variant | images/s | x original |", "|---|---:|---:|"]
    lines += [f"| {name} | {rate:.2f} | {rate / rates[BASELINE]:.2f} |" for name, rate in rates.items()]
    lines += ["", f"Same weights, channels_last + inference_mode vs the original: max |difference| "
              f"{max_abs:.2e} (relative to the largest output {max_rel:.2e}).", ""]
    text = "\n".join(lines)
    publish(text, args.out)
    if max_rel > 1e-4:
        print(f"outputs differ: relative {max_rel:.2e} > 1e-4", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

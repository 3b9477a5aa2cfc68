"""Speed of the 8-photo subject fit while another process holds a core.

One command: generate (or take ``--data``) an in-model ``faceset synth`` set of one subject
and 8 photos, then, for every thread policy compared, time the subject job (prepare the
photos, the default start (the shipped R-Net with each photo's pose re-fitted, else the
landmark initialiser), confidence-weighted aggregation, ``fitting.fit_subject``) on
a quiet machine and again while one competing CPU-bound process runs:

- ``python``: a pure-Python busy loop (one thread, like a busy browser tab);
- ``blas``: numpy matrix products, BLAS limited to one thread (one core's worth, like the
  loop, but memory- and vector-heavy).

The competitor is free to run on any core (no affinity), bounded in time (``--competitor-
limit`` seconds, then it exits by itself) and stopped after each timed run.

Each policy runs in its own worker process, because some policies are environment
variables that libgomp reads once, when torch loads. Policies (``--policies``):

- ``default``: torch's own choice (one thread per core, libgomp's default spin-wait);
- ``threads1``: ``torch.set_num_threads(1)``;
- ``interop1``: ``torch.set_num_interop_threads(1)`` (intra-op threads unchanged);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep at once);
- ``spin0`` / ``spin10k``: ``GOMP_SPINCOUNT`` 0 / 10000 (spin that long, then sleep);
- ``policy``: ``recon.threads.configure_threads(None)``, what the ``faceset`` CLI uses.

Conditions interleave (quiet, python, blas, quiet, ...) so a change of the background
load touches them alike; the table gives medians over ``--repeats``. Writes the markdown
table to ``--out`` and prints it.

    python benchmarks/load_speed.py                       # 3 policies, 40 fit steps, 3 repeats
    python benchmarks/load_speed.py --quick               # smoke test
    python benchmarks/load_speed.py --policies default,threads1,interop1,passive,spin0,spin10k,policy
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Policies that must act before torch is imported: environment variables libgomp reads
# when it loads. The others are torch calls made after the import.
POLICY_ENV = {
    "default": {},
    "threads1": {},
    "interop1": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin0": {"GOMP_SPINCOUNT": "0"},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
    "policy": {},
}
DEFAULT_ITERS = 40
QUICK_ITERS = 6
DEFAULT_POLICIES = ("default", "threads1", "policy")
CONDITIONS = ("quiet", "python", "blas")
# Thread-count variables a worker must not inherit, so "default" is torch's own choice.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

COMPETITORS = {
    "python": "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n",
    "blas": ("import time\nimport numpy as np\na = np.random.default_rng(0).random((300, 300))\n"
             "end = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    a = a @ a\n"
             "    a /= np.abs(a).max()\n"),
}
COMPETITOR_HEAD_START = 0.5  # seconds
# One core's worth: the BLAS competitor runs one thread, like the busy loop.
COMPETITOR_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---- the competing process ---------------------------------------------------------------

def start_competitor(kind: str, limit_s: float) -> subprocess.Popen:
    """A CPU-bound process of ``kind`` that exits by itself after ``limit_s`` seconds."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(COMPETITOR_ENV)
    process = subprocess.Popen([sys.executable, "-c", COMPETITORS[kind].format(limit=limit_s)], env=env)
    time.sleep(COMPETITOR_HEAD_START)  # started and busy before the timing begins
    if process.poll() is not None:
        raise RuntimeError(f"the {kind} competitor exited at once (code {process.returncode})")
    return process


def stop_competitor(process: subprocess.Popen) -> float:
    """Stop it; returns the CPU seconds it used (user + system), which shows that it
    really competed."""
    process.kill()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = status
    return usage.ru_utime + usage.ru_stime


# ---- the worker: one policy, all conditions ------------------------------------------------

def apply_policy(name: str) -> str:
    """Set the policy (environment before torch loads, then torch calls); returns a
    description of the resulting thread settings."""
    os.environ.update(POLICY_ENV[name])
    env = ", ".join(f"{k}={v}" for k, v in POLICY_ENV[name].items())
    if name == "policy":
        from recon.threads import configure_threads
        env = f"OMP_WAIT_POLICY={configure_threads(None).wait_policy}"
    import torch
    if name == "threads1":
        torch.set_num_threads(1)
    elif name == "interop1":
        torch.set_num_interop_threads(1)
    return f"{torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op" + (f", {env}" if env else "")


def subject_job(photo_dir: Path, iterations: int | None):
    """The timed job: prepare, the default start, aggregate, joint fit. Returns the fit's
    step count."""
    from aggregation import AggregationConfig, aggregate_identity
    from faceset.pipeline import ReconstructOptions, Reconstructor
    from faceset.subject import SubjectOptions, _targets, prepare_photos
    from fitting import FitConfig, fit_subject
    from recon.types import Coeffs

    photos, failed = prepare_photos(photo_dir, SubjectOptions())
    if failed or not photos:
        raise RuntimeError(f"{photo_dir}: photos failed: {failed}")
    reconstructor = Reconstructor(ReconstructOptions(device="cpu"))
    initial = Coeffs.cat([reconstructor.coefficients(photos)])
    targets = _targets(photos, reconstructor)
    start = aggregate_identity(reconstructor.face_model, initial, targets.landmarks, AggregationConfig(),
                               landmark_set=targets.landmark_set)
    start = initial.replace(id=start.id.expand_as(initial.id).clone(), tex=start.tex.expand_as(initial.tex).clone())
    config = FitConfig() if iterations is None else FitConfig().with_total_iterations(iterations)
    return fit_subject(reconstructor.face_model, targets, start, config).iterations


def run_worker(args) -> None:
    settings = apply_policy(args.policy)
    photo_dir = Path(args.data)
    subject_job(photo_dir, QUICK_ITERS)  # warm-up: imports, model build caches, allocator
    times: dict[str, list[float]] = {c: [] for c in args.conditions}
    shares: dict[str, list[float]] = {c: [] for c in args.conditions}
    steps = None
    for _ in range(args.repeats):
        for condition in args.conditions:
            competitor = None if condition == "quiet" else start_competitor(condition, args.competitor_limit)
            begin = time.perf_counter()
            try:
                steps = subject_job(photo_dir, args.iters)
                times[condition].append(time.perf_counter() - begin)
            finally:
                if competitor is not None:
                    cpu = stop_competitor(competitor)
                    shares[condition].append(cpu / (time.perf_counter() - begin + COMPETITOR_HEAD_START))
            print(f"  {args.policy:9s} {condition:6s} {times[condition][-1]:7.2f} s", file=sys.stderr, flush=True)
    print(json.dumps({"policy": args.policy, "settings": settings, "times": times, "competitor_share": shares,
                      "steps": steps}))


# ---- the driver ---------------------------------------------------------------------------

def make_data(out: Path, seed: int, images: int) -> Path:
    from faceset.synth import SynthConfig, synthesize
    synthesize(out, SynthConfig(subjects=1, images=images, seed=seed))
    return out / "subject_000" / "images"


def photo_folder(data: Path) -> Path:
    """``--data`` may be a synth set (its first subject) or a folder of photos."""
    if (data / "synth.json").is_file():
        return sorted(data.glob("subject_*/images"))[0]
    return data


def run_policy(policy: str, photo_dir: Path, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--policy", policy,
               "--data", str(photo_dir), "--repeats", str(args.repeats),
               "--conditions", ",".join(args.conditions), "--competitor-limit", str(args.competitor_limit)]
    if args.iters is not None:
        command += ["--iters", str(args.iters)]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def shown_argv(argv: list[str]) -> list[str]:
    """The command line with the --data folder shown as SET (no paths of this machine)."""
    shown = list(argv)
    for i, word in enumerate(shown):
        if word == "--data" and i + 1 < len(shown):
            shown[i + 1] = "SET"
        elif word.startswith("--data="):
            shown[i] = "--data=SET"
    return shown


def table(results: list[dict], args, load_before: tuple, load_after: tuple) -> str:
    loaded = [c for c in args.conditions if c != "quiet"]
    head = (["policy", "threads", "quiet s"] + [f"{c} s" for c in loaded] + [f"{c} / quiet" for c in loaded]
            + [f"{c} CPU share" for c in loaded])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        med = {c: statistics.median(r["times"][c]) for c in args.conditions}
        cells = [r["policy"], r["settings"], f"{med.get('quiet', float('nan')):.1f}"]
        cells += [f"{med[c]:.1f}" for c in loaded]
        cells += [f"{med[c] / med['quiet']:.2f}" if "quiet" in med else "-" for c in loaded]
        cells += [f"{statistics.median(r['competitor_share'][c]):.2f}" for c in loaded]
        lines.append("| " + " | ".join(cells) + " |")
    iters = "the default schedule" if args.iters is None else f"{args.iters} fit steps in all"
    header = [
        "# Subject fit under CPU load",
        "",
        f"Command: `python benchmarks/load_speed.py {' '.join(shown_argv(args.argv))}`"
        + (" (SET: the set given with --data)" if args.data is not None else ""),
        "",
        f"8-photo subject job (prepare, default start, aggregation, joint fit with {iters}; "
        f"{results[0]['steps']} steps run), medians of {args.repeats} run(s) per cell; "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after. "
        "Competitors: one CPU-bound process, no affinity (python: busy loop; blas: numpy "
        "matrix products on one BLAS thread); CPU share: the competitor's CPU time / its wall "
        "time (1.0 = it held a whole core).",
        "",
    ]
    return "\n".join(header + lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="a faceset synth set or a photo folder (default: generate one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES))
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=DEFAULT_ITERS,
                        help=f"total fit steps (default {DEFAULT_ITERS}, a third of FitConfig's "
                             "schedule, so torch's default policy under load stays within minutes; "
                             "0: the whole schedule)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK_ITERS} fit steps, one repeat")
    parser.add_argument("--competitor-limit", type=float, default=900.0,
                        help="a competitor exits by itself after this many seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load_speed.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--policy", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.iters, args.repeats = QUICK_ITERS, 1
    if args.iters == 0:
        args.iters = None
    args.policies = [p for p in args.policies.split(",") if p]
    args.conditions = [c for c in args.conditions.split(",") if c]
    for p in args.policies:
        if p not in POLICY_ENV:
            parser.error(f"unknown policy {p!r}; known: {', '.join(POLICY_ENV)}")
    for c in args.conditions:
        if c not in CONDITIONS:
            parser.error(f"unknown condition {c!r}; known: {', '.join(CONDITIONS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            print(f"generating a synthetic set: 1 subject x {args.images} photos, seed {args.seed}", file=sys.stderr)
            photo_dir = make_data(Path(tmp) / "synth", args.seed, args.images)
        else:
            photo_dir = photo_folder(args.data)
        load_before = os.getloadavg()
        results = [run_policy(policy, photo_dir, args) for policy in args.policies]
        load_after = os.getloadavg()
    text = table(results, args, load_before, load_after)
    from recon.io import write_atomic
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The CPU thread policy (recon.threads), the CLI's --threads and the load benchmark.

The wait policy is read by libgomp when torch loads, so every check runs in a fresh
Python process; whether it took effect is seen from the CPU time an idle OpenMP pool
burns while the main thread sleeps (an ACTIVE pool spins through the whole sleep).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# After one parallel torch op, how much CPU the process burns while it sleeps 1 s.
IDLE_SPIN_PROBE = """
import json, os, time
{before}
from recon.threads import configure_threads
settings = configure_threads({requested})
import torch
x = torch.rand(4_000_000)
(x * 2).sum()
start = time.process_time()
time.sleep(1.0)
print(json.dumps({{"idle_cpu_s": time.process_time() - start, "threads": torch.get_num_threads(),
                  "wait_policy": settings.wait_policy, "env": os.environ.get("OMP_WAIT_POLICY")}}))
"""


def probe(before: str = "", requested: str = "None", env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra or {})
    code = IDLE_SPIN_PROBE.format(before=before, requested=requested)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_policy_sets_passive_wait_before_torch_loads():
    result = probe()
    assert result["env"] == "PASSIVE" and result["wait_policy"] == "PASSIVE"
    assert result["idle_cpu_s"] < 0.01  # the pool sleeps: no spinning while idle


def test_user_wait_policy_is_kept_and_takes_effect():
    # The same mechanism (the variable set in-process before torch loads) with ACTIVE:
    # the idle pool now spins through the sleep, so the variable is really read.
    result = probe(env_extra={"OMP_WAIT_POLICY": "ACTIVE"})
    assert result["wait_policy"] == "ACTIVE" and result["env"] == "ACTIVE"
    # Quiet, it burns about the whole second; on a crowded machine a share of it: the
    # bound stays far above the passive pool's (about 1e-4 s).
    assert result["idle_cpu_s"] > 0.03


def test_requested_count_and_late_call():
    assert probe(requested="1")["threads"] == 1
    # torch already loaded: the count still applies, the wait policy is reported as is.
    late = probe(before="import torch")
    assert late["wait_policy"] == "default" and late["env"] is None


def test_invalid_count_is_one_clear_error():
    from recon.threads import configure_threads
    with pytest.raises(ValueError, match="at least 1"):
        configure_threads(0)


def test_cli_threads_option():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    bad = subprocess.run([sys.executable, "-m", "faceset", "--threads", "0", "synth", "unused"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--threads must be at least 1" in bad.stderr


def test_load_benchmark_quick(tmp_path):
    """End to end: generate 2 photos, time the policy quiet and beside a busy loop."""
    out = tmp_path / "load_speed.md"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load_speed.py"), "--quick",
                           "--images", "2", "--policies", "policy", "--conditions", "quiet,python",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = out.read_text()
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| policy |")]
    assert [r[1] for r in rows] == ["threads", rows[1][1]] and "PASSIVE" in rows[1][1]
    quiet, loaded, ratio, share = (float(c) for c in rows[1][2:6])
    assert quiet > 0 and loaded > 0 and ratio == pytest.approx(loaded / quiet, rel=0.15)
    assert 0.0 < share <= 1.2  # the competitor really ran


def test_building_the_cli_parser_does_not_load_torch():
    """configure_threads runs after parsing and must come before torch loads, so no command
    module may import torch when it registers its options."""
    probe = "import sys, faceset.cli; faceset.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout
    assert out.strip() == "False"

"""CPU thread policy: keep a fit fast when another program holds a core.

torch's CPU kernels run on an OpenMP pool (libgomp, bundled with the torch wheels), one
thread per available core by default. libgomp's default wait policy makes an idle thread
spin for a while before it sleeps: between two parallel regions the pool's workers keep
their cores busy, and in a region the calling thread spins until the slowest worker is
done. A fit is thousands of small operations (renders of a ~10k-vertex mesh at 56 to 224
pixels, Adam steps), so when one other CPU-bound process runs on a 2-core machine the
spinning workers, the fit's own thread and the other process contend for two cores and
every region waits for a thread the scheduler has parked: the 8-photo subject fit was
measured 10-15x slower.

The policy (``configure_threads``): idle OpenMP threads sleep at once
(``OMP_WAIT_POLICY=PASSIVE``), so a waiting thread hands its core back, and the thread
count stays torch's choice (the cores this process may use), so a quiet machine keeps
both cores. An explicit count (``faceset --threads N``) overrides the count; a wait policy
the user set (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` in the environment) is left alone.
libgomp reads the variable once, when torch loads, so ``configure_threads`` must run
before torch is imported to set it; later it only sets the count and reports that the
wait policy is whatever the process started with. ``benchmarks/load_speed.py`` measures
this policy against torch's default and one thread.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
PASSIVE = "PASSIVE"
# Either of these set by the user means they chose how OpenMP threads wait.
USER_WAIT_VARIABLES = (WAIT_POLICY_VARIABLE, "GOMP_SPINCOUNT")


@dataclass(frozen=True)
class ThreadSettings:
    """What ``configure_threads`` left in effect: intra_op: torch's CPU threads;
    wait_policy: the OpenMP wait policy torch loaded with ("PASSIVE", a user's
    setting such as "ACTIVE" or "GOMP_SPINCOUNT=N", or "default")."""

    intra_op: int
    wait_policy: str


def _wait_policy_in_environment() -> str:
    if WAIT_POLICY_VARIABLE in os.environ:
        return os.environ[WAIT_POLICY_VARIABLE].upper()
    if "GOMP_SPINCOUNT" in os.environ:
        return f"GOMP_SPINCOUNT={os.environ['GOMP_SPINCOUNT']}"
    return "default"


def configure_threads(requested: Optional[int] = None) -> ThreadSettings:
    """Apply the thread policy (module docstring); call it before importing torch.

    requested: torch's CPU thread count (>= 1), or None for torch's own choice (one per
    core this process may use). Raises ValueError for a count below 1.
    """
    if requested is not None and requested < 1:
        raise ValueError(f"--threads must be at least 1, got {requested}")
    torch_loaded = "torch" in sys.modules
    if not torch_loaded and not any(v in os.environ for v in USER_WAIT_VARIABLES):
        os.environ[WAIT_POLICY_VARIABLE] = PASSIVE
    wait_policy = _wait_policy_in_environment()
    import torch
    if requested is not None:
        torch.set_num_threads(requested)
    return ThreadSettings(intra_op=torch.get_num_threads(), wait_policy=wait_policy)

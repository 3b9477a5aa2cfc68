"""Checkpoints in the original's format (SPEC 1.4) and automatic resume.

``<out>/epoch_<N>.pth`` and ``<out>/epoch_latest.pth`` each hold exactly
``{'net_recon': R-Net state_dict (no 'module.' prefix), 'opt_00': Adam state_dict,
'sched_00': StepLR state_dict}``, so ``recon.rnet.load_checkpoint`` and the original's
test.py load them. The scheduler is stepped before a save, so ``sched_00['last_epoch']``
is the number of finished epochs; resume reads it from ``epoch_latest.pth`` (or the
highest ``epoch_<N>.pth``) and continues with the next epoch. As in the original, a resumed run keeps the checkpoint's
optimiser and schedule state (current learning rate, step size, decay factor).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from recon.io import read_torch_file, write_atomic
from recon.rnet import CHECKPOINT_KEY

OPTIMIZER_KEY = "opt_00"
SCHEDULER_KEY = "sched_00"
LATEST_NAME = "epoch_latest.pth"
EPOCH_PATTERN = re.compile(r"^epoch_(\d+)\.pth$")


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The R-Net inside a DDP / DataParallel wrapper (or the net itself)."""
    return getattr(net, "module", net)


def checkpoint_state(net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict:
    """The original's checkpoint dict (net_recon without any wrapper prefix)."""
    return {CHECKPOINT_KEY: unwrap(net).state_dict(), OPTIMIZER_KEY: optimizer.state_dict(),
            SCHEDULER_KEY: scheduler.state_dict()}


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """``torch.save`` through a temporary file in the same folder, then rename."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def epoch_checkpoints(out: str | os.PathLike) -> dict[int, Path]:
    """{N: path} of the ``epoch_<N>.pth`` files in ``out`` (empty when none or no folder)."""
    out = Path(out)
    if not out.is_dir():
        return {}
    found = {}
    for path in out.iterdir():
        match = EPOCH_PATTERN.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def resume_candidates(out: str | os.PathLike) -> list[Path]:
    """``epoch_latest.pth`` if present, then the ``epoch_<N>.pth`` files, newest first:
    where a resume tries to start, in order (a corrupt file falls back to the next)."""
    latest = Path(out) / LATEST_NAME
    epochs = epoch_checkpoints(out)
    return ([latest] if latest.is_file() else []) + [epochs[n] for n in sorted(epochs, reverse=True)]


def resume_path(out: str | os.PathLike) -> Optional[Path]:
    """``epoch_latest.pth`` if present, else the highest ``epoch_<N>.pth``, else None."""
    latest = Path(out) / LATEST_NAME
    if latest.is_file():
        return latest
    epochs = epoch_checkpoints(out)
    return epochs[max(epochs)] if epochs else None


class CorruptCheckpoint(ValueError):
    """A checkpoint file that cannot be read (truncated, overwritten, another kind of file);
    unlike one that reads but does not fit the network, a resume may skip it."""


@dataclass
class ResumeState:
    """What a checkpoint restores: its path and the number of finished epochs."""

    path: Path
    finished_epochs: int


def load_training_state(path: str | os.PathLike, net: torch.nn.Module,
                        optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler) -> ResumeState:
    """Load a checkpoint into an unwrapped R-Net, its Adam and its StepLR (strict).

    Raises ValueError naming the file when it is not in the original's format or does not
    fit the network (e.g. another backbone).
    """
    path = Path(path)
    device = next(net.parameters()).device
    try:
        state = read_torch_file(path, device)
    except ValueError as err:
        raise CorruptCheckpoint(str(err)) from None
    missing = {CHECKPOINT_KEY, OPTIMIZER_KEY, SCHEDULER_KEY} - set(state if isinstance(state, dict) else ())
    if missing:
        raise CorruptCheckpoint(f"{path}: not a training checkpoint (missing {sorted(missing)})")
    try:
        unwrap(net).load_state_dict(state[CHECKPOINT_KEY], strict=True)
        optimizer.load_state_dict(state[OPTIMIZER_KEY])
        scheduler.load_state_dict(state[SCHEDULER_KEY])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: does not fit this run's network or optimiser ({err})") from err
    return ResumeState(path=path, finished_epochs=int(scheduler.last_epoch))

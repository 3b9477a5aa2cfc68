"""What the per-item records of every protocol share (one row of a per-image or per-mesh
table): a status, the inputs that were absent, the error of a file that could not be
scored, the scored vertex count and the seconds it took; and ``score_item``, which turns
absent files and exceptions into such a record, so that one bad file never ends a run."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

Record = TypeVar("Record", bound="ScoreRecord")


@dataclass(kw_only=True)
class ScoreRecord:
    """status: "ok", "missing" (``missing`` names the absent inputs, joined by "+") or
    "failed" (``message``: the exception's type and text); vertices: how many vertices the
    error was measured on; seconds: wall time of the scoring (0 unless ok). A protocol's
    record adds its keys and figures and names its CSV columns in ``COLUMNS``."""

    status: str = "missing"
    vertices: int = 0
    missing: str = ""
    message: str = ""
    seconds: float = 0.0

    COLUMNS: ClassVar[tuple[str, ...]] = ()

    def row(self) -> dict:
        """The CSV columns ``COLUMNS`` (the per-vertex arrays are left out)."""
        return {key: getattr(self, key) for key in self.COLUMNS}


def score_item(record: Record, inputs: Mapping[str, str | os.PathLike | None],
               score: Callable[[], dict[str, Any]]) -> Record:
    """``record`` (its keys) scored: a copy with the outcome.

    inputs: name -> file the scoring reads (None: not found); when any is not a file, the
    record is "missing" with their names. score(): reads the inputs and returns the
    record's figures (field name -> value); the record is then "ok" with them and the
    seconds score took, or "failed" with the message of any exception it raised.
    """
    absent = [name for name, path in inputs.items() if path is None or not Path(path).is_file()]
    if absent:
        return replace(record, status="missing", missing="+".join(absent))
    started = time.perf_counter()
    try:
        figures = score()
    except Exception as err:  # noqa: BLE001 - one bad file must not end a run of thousands
        return replace(record, status="failed", message=f"{type(err).__name__}: {err}")
    return replace(record, status="ok", seconds=time.perf_counter() - started, **figures)

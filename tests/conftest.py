"""Shared fixtures. ``shared_data`` is the original repo's files in ../shared/data: tests
that need it skip when it is absent, and fail when CI=true (CI always has it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    return Path(os.environ.get("FACESET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data_dir()
    if not (path / "bfm").is_dir() or not (path / "examples").is_dir():
        message = (f"the original repo's data (bfm/, examples/) is not at {path}; "
                   "set FACESET_SHARED_DATA to its folder")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path

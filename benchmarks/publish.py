"""What the benchmark scripts share at their end: the report printed, and written to
``--out`` when given."""

from __future__ import annotations

import os


def publish(text: str, out: str | os.PathLike | None) -> None:
    """Print ``text`` (a benchmark's Markdown report) and, when ``out`` is given, write it
    there atomically."""
    print(text)
    if out:
        from recon.io import write_atomic
        write_atomic(out, text.encode())

"""What a user sees when something goes wrong: one line, an exit code, never a traceback.

Exit codes of every ``faceset`` command:

- 0: everything asked for is done (or was already done);
- 1: the run finished but some items failed (each named on its own line);
- 2: the command could not run at all (bad option, missing or unreadable input, an output
  folder that is a file, not writable or on a full disk), or an unexpected internal error
  (its traceback goes to ``faceset_error.log`` in the output folder, not to the screen);
- 130: interrupted (Ctrl-C); what is finished stays, a re-run does the rest.

``run_command`` applies this to a parsed command; ``prepare_output_dir`` is the check every
command makes on its output folder before any work starts.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_CANNOT_RUN = 2
EXIT_INTERRUPTED = 130          # the shell's code for a SIGINT death (128 + 2)
ERROR_LOG_NAME = "faceset_error.log"
MIN_FREE_BYTES = 50 * 2 ** 20   # an output folder with less free space is refused up front


class UserError(Exception):
    """A problem the user can fix, stated in one line (exit 2)."""


class Interrupted(Exception):
    """Ctrl-C inside a job that counts its items: ``done`` of ``total`` are complete."""

    def __init__(self, done: int, total: int, what: str = "items", detail: str = ""):
        super().__init__(f"interrupted; {done} of {total} {what} done, re-run to resume"
                         + (f" ({detail})" if detail else ""))
        self.done, self.total, self.what = done, total, what


def describe(err: BaseException) -> str:
    """One line for an explainable error: an OSError as 'PATH: reason', others as str()."""
    if isinstance(err, OSError) and err.strerror:
        names = [str(n) for n in (err.filename, err.filename2) if n is not None]
        return f"{' -> '.join(names)}: {err.strerror}" if names else err.strerror
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0] if isinstance(err, ImportError) else " ".join(text.split("\n"))


# Errors that a user's input or environment causes: a missing or unreadable file, a file
# where a folder should be, a read-only or full disk, a bad value, a missing extra.
EXPLAINABLE = (UserError, OSError, ValueError, ImportError)


def run_command(name: str, func: Callable[[], Optional[int]], out: Optional[Path] = None) -> int:
    """Run one command; turn every exception into one stderr line and an exit code.

    name: the command as typed ("reconstruct", "evaluate micc"); out: its output folder,
    where an unexpected error's traceback is logged (the temporary folder when None).
    """
    try:
        return int(func() or EXIT_OK)
    except KeyboardInterrupt:
        _say(name, "interrupted before anything was finished; re-run to start again")
        return EXIT_INTERRUPTED
    except Interrupted as err:
        _say(name, str(err))
        return EXIT_INTERRUPTED
    except EXPLAINABLE as err:
        _say(name, f"error: {describe(err)}")
        return EXIT_CANNOT_RUN
    except Exception as err:  # noqa: BLE001 - the last line of defence: log, never dump
        log = write_error_log(out, name)
        where = f"full traceback in {log}" if log else "no log could be written"
        _say(name, f"internal error: {type(err).__name__}: {describe(err)} ({where}; "
                   "please report it)")
        return EXIT_CANNOT_RUN


def _say(name: str, text: str) -> None:
    sys.stdout.flush()
    print(f"faceset {name}: {text}", file=sys.stderr, flush=True)


def write_error_log(out: Optional[Path], name: str) -> Optional[Path]:
    """The current exception's traceback in OUT/faceset_error.log (or the temporary folder)."""
    text = (f"faceset {name} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            f"command line: {' '.join(sys.argv)}\n\n{traceback.format_exc()}")
    for folder in ([Path(out)] if out is not None else []) + [Path(tempfile.gettempdir())]:
        try:
            if folder.is_dir():
                path = folder / ERROR_LOG_NAME
                path.write_text(text, encoding="utf-8")
                return path
        except OSError:
            continue
    return None


def prepare_output_dir(path: str | os.PathLike, what: str = "output folder",
                       min_free_bytes: int = MIN_FREE_BYTES) -> Path:
    """Create ``path`` if needed and prove it usable before any work: a folder (not a
    file), writable (a probe file is created and removed), with ``min_free_bytes`` free.

    Raises UserError naming the path and the problem.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: the {what} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise UserError(f"{path}: cannot create the {what}: {blocker} is a file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot create the {what} ({err.strerror})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".faceset-write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise UserError(f"{path}: the {what} is not writable ({err.strerror})") from None
    free = shutil.disk_usage(path).free
    if free < min_free_bytes:
        raise UserError(f"{path}: only {free / 2 ** 20:.0f} MiB free on its disk, the {what} "
                        f"needs at least {min_free_bytes / 2 ** 20:.0f} MiB")
    return path


def prepare_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """The checks of ``prepare_output_dir`` for a single output file's folder, and that
    the file itself is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: the {what} is an existing folder")
    prepare_output_dir(path.parent, f"folder of the {what}")
    return path

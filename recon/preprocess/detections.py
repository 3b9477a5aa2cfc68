"""5-point detection files (``detections/<stem>.txt``), SPEC 6.1 and 10.

Format: one point per line, ``x<TAB>y``, in pixels of the original photo with **y down**
and the origin at the centre of the top-left pixel, which is exactly our internal image
convention (``recon.types``), so nothing is flipped here. The order is: image-left eye
centre, image-right eye centre, nose tip, image-left mouth corner, image-right mouth corner.

The original reads these files with ``np.loadtxt``, rounds them to float32 and flips them to
y-up (y <- H - 1 - y) before aligning; ``recon.preprocess.align`` reproduces that arithmetic
internally, so callers always pass and get y-down points.

Where the original derives the file name by replacing ``png``/``jpg`` anywhere in the image
name with ``txt`` (SPEC 12 D9), we use ``<image folder>/detections/<image stem>.txt``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from recon.io import write_text_atomic

NUM_DETECTION_POINTS = 5  # eyeL, eyeR, nose, mouthL, mouthR


class DetectionFileError(ValueError):
    """A detection file that is missing or does not hold 5 lines of ``x<TAB>y``."""


def detection_path_for(image_path: str | os.PathLike) -> Path:
    """``<folder>/detections/<stem>.txt`` for ``<folder>/<stem>.<ext>``."""
    image_path = Path(image_path)
    return image_path.parent / "detections" / f"{image_path.stem}.txt"


def _parse_line(path: Path, number: int, line: str) -> tuple[float, float]:
    fields = line.split()
    if len(fields) != 2:
        raise DetectionFileError(
            f"{path}: line {number}: expected 2 numbers 'x<TAB>y', got {line.strip()!r}")
    try:
        x, y = float(fields[0]), float(fields[1])
    except ValueError:
        raise DetectionFileError(
            f"{path}: line {number}: not a number in {line.strip()!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DetectionFileError(f"{path}: line {number}: non-finite value in {line.strip()!r}")
    return x, y


def read_detections(path: str | os.PathLike,
                    num_points: int = NUM_DETECTION_POINTS) -> np.ndarray:
    """Read a detection file.

    Args:
        path: the ``.txt`` file.
        num_points: how many lines it must hold (5 for the original's files).
    Returns:
        (num_points, 2) float64 array of (x, y), y-down pixels of the original photo.
    Raises:
        DetectionFileError naming the file and the problem (missing, unreadable, wrong
        number of lines, a line that is not two finite numbers).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DetectionFileError(f"{path}: detection file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DetectionFileError(f"{path}: cannot read detection file ({error})") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(lines) != num_points:
        raise DetectionFileError(
            f"{path}: expected {num_points} lines of 'x<TAB>y', found {len(lines)}")
    return np.array([_parse_line(path, n, line) for n, line in lines], dtype=np.float64)


def format_detections(points: np.ndarray) -> str:
    """The file text for (K, 2) y-down points: ``x<TAB>y`` lines, shortest exact decimals."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise ValueError(f"detections must be a finite (K, 2) array, got shape {points.shape}")
    # repr() gives the shortest decimal that reads back to the same float, so files round-trip.
    return "".join(f"{float(x)!r}\t{float(y)!r}\n" for x, y in points)


def write_detections(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write (K, 2) y-down points atomically (temp file in the same folder, then replace)."""
    write_text_atomic(path, format_detections(points))


LANDMARK_FOLDER = "landmarks"  # optional 68-point files beside the photos


def landmark_file_for(photo: str | os.PathLike) -> Path:
    """``<folder>/landmarks/<stem>.txt`` of ``<folder>/<stem>.<ext>``."""
    photo = Path(photo)
    return photo.parent / LANDMARK_FOLDER / f"{photo.stem}.txt"


def read_landmark_file(path: str | os.PathLike) -> np.ndarray:
    """(68, 2) float64 y-down photo pixels from a ``landmarks/<stem>.txt`` file.

    Raises ValueError naming the file when it is not 68 finite ``x y`` lines.
    """
    try:
        points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a 68 x 2 landmark file ({err})") from None
    if points.shape != (68, 2):
        raise ValueError(f"{path}: expected 68 lines of 'x y', got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"{path}: non-finite landmark values")
    return points

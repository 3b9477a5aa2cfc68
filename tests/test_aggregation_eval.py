"""benchmarks/aggregation_eval.py's set design: which photos are bad, and the blur it applies."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from aggregation_eval import SET_SIZES, blurred_jpeg, photo_kind  # noqa: E402


def test_bad_photos_every_fourth_from_the_second_cycling_kinds():
    kinds = [photo_kind(k) for k in range(16)]
    assert [k for k, kind in enumerate(kinds) if kind != "good"] == [1, 5, 9, 13]
    assert [kinds[k] for k in (1, 5, 9, 13)] == ["yaw", "occluded", "blur", "yaw"]
    assert [sum(kind != "good" for kind in kinds[:n]) for n in SET_SIZES] == [0, 1, 1, 2, 4]


def test_blur_removes_fine_detail_and_keeps_exif():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, exif=exif)
    out = Image.open(io.BytesIO(blurred_jpeg(buffer.getvalue())))
    blurred = np.asarray(out).astype(float)
    assert out.size == (160, 120)
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.1 * np.abs(np.diff(pixels.astype(float), axis=1)).mean()
    assert out.getexif().get_ifd(0x8769)[0xA405] == 26

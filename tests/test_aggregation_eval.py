"""benchmarks/aggregation_eval.py's set design: which photos are bad, and the blur it applies."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from aggregation_eval import SET_SIZES, best_convex_id, blurred_jpeg, photo_kind  # noqa: E402


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


def test_best_convex_fusion_is_the_floor_inside_the_range_and_clipped_outside(tiny_model):
    from benchmarks.fit_eval import projected_id
    from recon import constants as C
    from recon.face_model import FaceModel
    face_model = FaceModel(tiny_model)
    torch.manual_seed(0)
    truth_id = torch.randn(1, face_model.id_basis.shape[1])
    truth_mm = (face_model.mean_shape + face_model.id_basis @ truth_id[0]).view(-1, 3).numpy() * C.MM_PER_UNIT
    floor = projected_id(face_model, truth_mm)
    around = torch.cat([truth_id - 1, truth_id + 0.5])
    assert torch.allclose(best_convex_id(face_model, truth_mm, around), floor, atol=1e-3)
    one = truth_id + torch.randn_like(truth_id)
    assert torch.allclose(best_convex_id(face_model, truth_mm, one), one, atol=1e-6)
    # a range on one side of the truth: every coefficient lies in the range, and the result
    # is nearer the truth over the skin (the floor's metric) than either end
    above = torch.cat([truth_id + 0.2, truth_id + 1.0])
    best = best_convex_id(face_model, truth_mm, above)
    assert bool(((best >= above.min(0).values - 1e-6) & (best <= above.max(0).values + 1e-6)).all())
    skin = face_model.skin_mask

    def shape_error(ids):
        return float((face_model.id_basis @ (ids - truth_id)[0]).view(-1, 3)[skin].square().sum())
    assert shape_error(best) <= min(shape_error(above[:1]), shape_error(above[1:])) + 1e-9

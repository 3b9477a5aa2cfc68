"""Alignment against an independent hand computation of SPEC 6.3, transforms, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from recon import constants as C
from recon.preprocess.align import (CropTransform, align_face, crop_with_transform,
                                    estimate_crop_transform, open_rgb)
from recon.preprocess.detections import read_detections


def example_stems(shared_data):
    return sorted(p.stem for p in (shared_data / "examples").glob("*.jpg"))


def original_template(shared_data) -> np.ndarray:
    """The original's float32 5-point template, built from the BFM helper file."""
    lm = scipy.io.loadmat(shared_data / "bfm" / "similarity_Lm3D_all.mat")["lm"]
    five = np.stack([lm[[36, 39]].mean(0), lm[[42, 45]].mean(0), lm[30], lm[48], lm[54]])
    return five


def hand_align(image: Image.Image, lm_down: np.ndarray, template: np.ndarray):
    """SPEC 6.3 written out directly: y-up float32 points, POS by normal equations, PIL."""
    w0, h0 = image.size
    lm = lm_down.astype(np.float32)
    lm[:, 1] = h0 - 1 - lm[:, 1]
    rows, rhs = [], []
    for (X, Y, Z), (x, y) in zip(np.asarray(template, np.float64), lm.astype(np.float64)):
        rows += [[X, Y, Z, 1, 0, 0, 0, 0], [0, 0, 0, 0, X, Y, Z, 1]]
        rhs += [x, y]
    A, b = np.array(rows), np.array(rhs)
    k = np.linalg.solve(A.T @ A, A.T @ b)
    s = 102.0 / ((np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2)
    tx, ty = k[3], k[7]
    w, h = int(w0 * s), int(h0 * s)
    left = int(w / 2 - 112 + (tx - w0 / 2) * s)
    up = int(h / 2 - 112 + (h0 / 2 - ty) * s)
    crop = image.resize((w, h), Image.BICUBIC).crop((left, up, left + 224, up + 224))
    x_new = (lm[:, 0] - tx + w0 / 2) * s - (w / 2 - 112)
    y_new_up = (lm[:, 1] - ty + h0 / 2) * s - (h / 2 - 112)
    return np.asarray(crop), np.stack([x_new, 223 - y_new_up], 1), (w0, h0, s, tx, ty)


@pytest.mark.parametrize("use_original_template", [False, True])
def test_alignment_matches_hand_computation_on_every_example(shared_data, use_original_template):
    template = original_template(shared_data) if use_original_template else np.array(C.TEMPLATE_5PT)
    for stem in example_stems(shared_data):
        image = open_rgb(shared_data / "examples" / f"{stem}.jpg")
        lm = read_detections(shared_data / "examples" / "detections" / f"{stem}.txt")
        aligned = align_face(image, lm, template=template)
        crop, landmarks, params = hand_align(image, lm, template)
        assert aligned.image.shape == (224, 224, 3) and aligned.image.dtype == np.uint8
        assert np.array_equal(aligned.image, crop), stem
        np.testing.assert_allclose(aligned.landmarks, landmarks, atol=1e-6, err_msg=stem)
        np.testing.assert_allclose(aligned.transform.trans_params, params, rtol=1e-9)


def test_default_template_gives_the_original_template_crops(shared_data):
    # Our 6-decimal constants vs the original's float32 .mat values: same pixels.
    for stem in example_stems(shared_data):
        image = open_rgb(shared_data / "examples" / f"{stem}.jpg")
        lm = read_detections(shared_data / "examples" / "detections" / f"{stem}.txt")
        ours = align_face(image, lm)
        original = align_face(image, lm, template=original_template(shared_data))
        assert np.array_equal(ours.image, original.image), stem
        np.testing.assert_allclose(ours.landmarks, original.landmarks, atol=1e-3)


def test_68_landmarks_are_reduced_to_5_and_all_transformed():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    lm68 = rng.uniform(60, 220, (68, 2))
    aligned = align_face(image, lm68)
    assert aligned.landmarks.shape == (68, 2)
    five = np.stack([lm68[[36, 39]].mean(0), lm68[[42, 45]].mean(0), lm68[30], lm68[48], lm68[54]])
    via_five = align_face(image, five)
    np.testing.assert_allclose(aligned.transform.trans_params, via_five.transform.trans_params,
                               rtol=1e-5)


def test_template_origin_lands_at_crop_centre():
    # Project the template with a known similarity: its origin maps to a known photo point.
    template = np.array(C.TEMPLATE_5PT)
    scale, origin_down = 180.0, np.array([151.3, 170.8])
    lm = np.stack([origin_down[0] + scale * template[:, 0],
                   origin_down[1] - scale * template[:, 1]], 1)
    transform = estimate_crop_transform(lm, 320, 400)
    np.testing.assert_allclose(transform.s, 102.0 / scale, rtol=1e-6)
    centre = transform.to_crop(origin_down[None])[0]
    # The original's y-up arithmetic puts the origin at (112, 112) y-up (111 y-down), up to
    # half the fraction its int() truncation drops from the resized size.
    w, h = transform.resized_size
    expected = [112 + (320 * transform.s - w) / 2, 111 - (400 * transform.s - h) / 2]
    np.testing.assert_allclose(centre, expected, atol=1e-3)
    assert np.abs(centre - [112, 111]).max() <= 0.5
    crop = transform.to_crop(lm)
    np.testing.assert_allclose(crop[:, 0] - centre[0], 102 * template[:, 0], atol=1e-3)
    np.testing.assert_allclose(centre[1] - crop[:, 1], 102 * template[:, 1], atol=1e-3)


def test_round_trip_and_matrix_form():
    transform = CropTransform(w0=423, h0=594, s=0.7293745842954146, tx=196.61, ty=355.06)
    points = np.random.default_rng(2).uniform(-50, 600, (100, 2))
    np.testing.assert_allclose(transform.to_photo(transform.to_crop(points)), points, atol=1e-9)
    np.testing.assert_allclose(transform.to_crop(transform.to_photo(points)), points, atol=1e-9)
    homogeneous = np.c_[points, np.ones(len(points))]
    np.testing.assert_allclose((homogeneous @ transform.matrix_photo_to_crop().T)[:, :2],
                               transform.to_crop(points), atol=1e-9)
    np.testing.assert_allclose((homogeneous @ transform.matrix_crop_to_photo().T)[:, :2],
                               transform.to_photo(points), atol=1e-9)


def test_crop_landmarks_are_to_crop_of_the_float32_points(shared_data):
    image = open_rgb(shared_data / "examples" / "000031.jpg")
    lm = read_detections(shared_data / "examples" / "detections" / "000031.txt")
    aligned = align_face(image, lm)
    np.testing.assert_allclose(aligned.transform.to_crop(lm), aligned.landmarks, atol=1e-4)
    np.testing.assert_allclose(aligned.transform.to_photo(aligned.landmarks), lm, atol=1e-4)


def test_crop_content_follows_the_transform():
    # A bright dot in the photo shows up in the crop within ~1 px of to_crop(dot).
    image = np.zeros((400, 300, 3), np.uint8)
    dot = np.array([140.0, 210.0])
    image[205:216, 135:146] = 255
    template = np.array(C.TEMPLATE_5PT)
    lm = np.stack([150 + 200 * template[:, 0], 190 - 200 * template[:, 1]], 1)
    aligned = align_face(image, lm)
    rows, cols = np.nonzero(aligned.image[..., 0] > 128)
    expected = aligned.transform.to_crop(dot[None])[0]
    assert abs(cols.mean() - expected[0]) < 1.0 and abs(rows.mean() - expected[1]) < 1.5


def test_mask_gets_the_same_transform():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (300, 280, 3), dtype=np.uint8)
    lm = np.array([[110, 120], [170, 118], [140, 150], [115, 185], [168, 183]], float)
    aligned = align_face(image, lm, mask=image[:, :, 1])
    assert aligned.mask.shape == (224, 224)
    assert np.array_equal(aligned.mask, aligned.image[:, :, 1])
    assert np.array_equal(crop_with_transform(image, aligned.transform), aligned.image)


def test_out_of_image_areas_are_zero():
    image = np.full((200, 200, 3), 200, np.uint8)
    lm = np.array([[20, 30], [60, 30], [40, 55], [25, 75], [55, 75]], float)  # near a corner
    aligned = align_face(image, lm)
    assert (aligned.image[0, 0] == 0).all() and (aligned.image[-1, -1] == 200).all()


def test_json_round_trip_and_errors(tmp_path):
    transform = CropTransform(w0=410, h0=594, s=0.912345678901234, tx=227.25, ty=391.125)
    restored = CropTransform.from_json(transform.to_json())
    assert restored == transform
    path = tmp_path / "t.json"
    transform.save(path)
    assert CropTransform.load(path) == transform
    data = json.loads(path.read_text())
    np.testing.assert_allclose(np.array(data["crop_to_photo"]), transform.matrix_crop_to_photo())
    data["crop_box"][0] += 1
    with pytest.raises(ValueError, match="crop_box"):
        CropTransform.from_json(json.dumps(data), source="edited.json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        CropTransform.from_json("{", source="bad.json")
    with pytest.raises(ValueError, match="missing field"):
        CropTransform.from_json(json.dumps({"format": data["format"], "w0": 3}))


def test_bad_inputs_are_rejected():
    image = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(5, 2\) or \(68, 2\)"):
        align_face(image, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="degenerate|too close"):
        align_face(image, np.full((5, 2), 50.0))
    with pytest.raises(ValueError, match="uint8"):
        align_face(image.astype(np.float32), np.ones((5, 2)))
    with pytest.raises(ValueError, match="cannot read image"):
        open_rgb(__file__)

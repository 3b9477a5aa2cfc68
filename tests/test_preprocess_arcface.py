"""ArcFace alignment matrix vs skimage, warp_affine vs cv2.warpAffine."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.transform import SimilarityTransform

from recon import constants as C
from recon.preprocess.arcface_align import (ARCFACE_TEMPLATE, estimate_norm, estimate_norm_torch,
                                            similarity_lstsq, warp_affine)


def skimage_matrix(source: np.ndarray) -> np.ndarray:
    target = np.array(C.ARCFACE_TEMPLATE_112, dtype=np.float32)
    if hasattr(SimilarityTransform, "from_estimate"):
        return SimilarityTransform.from_estimate(source, target).params
    transform = SimilarityTransform()
    transform.estimate(source, target)
    return transform.params


def random_landmarks(rng, count=68) -> np.ndarray:
    base = np.array(C.ARCFACE_TEMPLATE_112) * 1.8 + 10
    angle = rng.uniform(-0.4, 0.4)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    five = base @ rotation.T + rng.normal(0, 3, (5, 2))
    if count == 5:
        return five
    lm68 = rng.uniform(40, 180, (68, 2))
    # Place the five derived points where we want them (eyes as pairs with equal offsets).
    for (a, b), p in zip([(36, 39), (42, 45)], five[:2]):
        lm68[a], lm68[b] = p - [5, 0.5], p + [5, 0.5]
    lm68[30], lm68[48], lm68[54] = five[2], five[3], five[4]
    return lm68


def test_estimate_norm_matches_skimage():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lm68 = random_landmarks(rng)
        five = np.stack([lm68[[36, 39]].mean(0), lm68[[42, 45]].mean(0), lm68[30], lm68[48], lm68[54]])
        expected = skimage_matrix(five)[:2]  # skimage keeps float32 precision in places
        np.testing.assert_allclose(estimate_norm(lm68), expected, atol=1e-5)
        np.testing.assert_allclose(estimate_norm(five), expected, atol=1e-5)


def test_estimate_norm_exact_for_a_true_similarity():
    scale, angle, shift = 0.47, 0.3, np.array([-20.0, 7.0])
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = (ARCFACE_TEMPLATE - shift) @ np.linalg.inv(linear).T
    matrix = similarity_lstsq(source, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(matrix[:2, :2], linear, atol=1e-12)
    np.testing.assert_allclose(source @ matrix[:2, :2].T + matrix[:2, 2], ARCFACE_TEMPLATE, atol=1e-9)


def test_singular_gives_identity():
    np.testing.assert_array_equal(estimate_norm(np.full((5, 2), 30.0)), np.eye(3)[:2])
    batch = torch.full((1, 68, 2), 30.0, dtype=torch.float64)
    np.testing.assert_array_equal(estimate_norm_torch(batch)[0].numpy(), np.eye(3)[:2])


def test_torch_batch_matches_numpy():
    rng = np.random.default_rng(1)
    lms = np.stack([random_landmarks(rng) for _ in range(4)])
    batch = estimate_norm_torch(torch.from_numpy(lms))
    assert batch.shape == (4, 2, 3) and batch.dtype == torch.float64
    for lm, matrix in zip(lms, batch):
        np.testing.assert_allclose(matrix.numpy(), estimate_norm(lm), atol=1e-9)


def test_warp_affine_matches_cv2_on_interior_pixels():
    rng = np.random.default_rng(2)
    # A smooth test image: cv2 uses 1/32-pixel fixed-point weights, fine on smooth content.
    yy, xx = np.mgrid[0:224, 0:224]
    image = np.stack([np.sin(xx / 9.0) * 100 + 120, np.cos(yy / 7.0) * 90 + 120,
                      (xx + yy) / 3.0], -1).astype(np.float32)
    matrices = np.stack([estimate_norm(random_landmarks(rng)) for _ in range(3)])
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].repeat(3, 1, 1, 1)
    warped = warp_affine(tensor, torch.from_numpy(matrices).float(), 112)
    assert warped.shape == (3, 3, 112, 112)
    for k in range(3):
        expected = cv2.warpAffine(image, matrices[k], (112, 112), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        ours = warped[k].permute(1, 2, 0).numpy()
        inverse = cv2.invertAffineTransform(matrices[k])
        ys, xs = np.mgrid[0:112, 0:112]
        src = np.stack([xs, ys, np.ones_like(xs)], -1) @ inverse.T
        interior = (src[..., 0] > 1) & (src[..., 0] < 222) & (src[..., 1] > 1) & (src[..., 1] < 222)
        assert interior.mean() > 0.5
        np.testing.assert_allclose(ours[interior], expected[interior], atol=0.5)


def test_warp_affine_identity_and_integer_shift_are_exact():
    images = torch.rand(2, 3, 20, 30, dtype=torch.float64)
    identity = torch.eye(3, dtype=torch.float64)[:2].expand(2, 2, 3)
    torch.testing.assert_close(warp_affine(images, identity, (20, 30)), images)
    shift = identity.clone()
    shift[:, 0, 2] = 3.0  # destination x = source x + 3
    out = warp_affine(images, shift, (20, 30))
    torch.testing.assert_close(out[..., 3:], images[..., :-3])
    assert out[..., :3].abs().max() < 1e-12


def test_warp_affine_bad_shapes():
    with pytest.raises(ValueError, match="B, 2, 3"):
        warp_affine(torch.zeros(2, 3, 8, 8), torch.zeros(1, 2, 3), 4)

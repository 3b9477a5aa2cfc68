"""Skin GMM posterior against a direct per-pixel evaluation of SPEC 6.5 / Appendix B."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon.preprocess import skin as S


def direct_probability(r: int, g: int, b: int) -> float:
    """The formula written out for one pixel: BT.601, two GMMs, priors 0.8/0.2."""
    y = (65.481 * r + 128.553 * g + 24.966 * b) / 255 + 16
    cb = (-37.797 * r - 74.203 * g + 112 * b) / 255 + 128
    cr = (112 * r - 93.786 * g - 18.214 * b) / 255 + 128
    x = np.array([y, cb, cr])

    def likelihood(weights, means, dets, inverses):
        total = 0.0
        for w, mu, det, inv in zip(weights, means, dets, inverses):
            d = x - np.array(mu)
            total += w * math.exp(-0.5 * d @ np.array(inv) @ d) / ((2 * math.pi) ** 1.5 * math.sqrt(det))
        return total

    skin = 0.8 * likelihood(S.SKIN_WEIGHTS, S.SKIN_MEANS, S.SKIN_COV_DETS, S.SKIN_COV_INVS)
    other = 0.2 * likelihood(S.NON_SKIN_WEIGHTS, S.NON_SKIN_MEANS, S.NON_SKIN_COV_DETS,
                             S.NON_SKIN_COV_INVS)
    return skin / (skin + other)


@pytest.fixture(scope="module")
def test_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)
    image[0, :3] = [[224, 172, 140], [0, 0, 0], [255, 255, 255]]  # skin tone, black, white
    return image


def test_numpy_matches_direct_formula(test_image):
    probability = S.skin_probability(test_image)
    assert probability.shape == test_image.shape[:2] and probability.dtype == np.float32
    expected = np.array([[direct_probability(*map(int, px)) for px in row] for row in test_image])
    np.testing.assert_allclose(probability, expected, atol=1e-6)
    assert probability[0, 0] > 0.9  # a typical skin tone


def test_torch_matches_numpy_on_a_batch(test_image):
    batch = torch.from_numpy(np.stack([test_image, test_image[::-1].copy()])).permute(0, 3, 1, 2)
    batch = batch.double() / 255
    probability = S.skin_probability_torch(batch)
    assert probability.shape == (2, 12, 15)
    np.testing.assert_allclose(probability[0].numpy(), S.skin_probability(test_image), atol=1e-6)
    np.testing.assert_allclose(probability[1].numpy(), S.skin_probability(test_image[::-1].copy()),
                               atol=1e-6)
    float32 = S.skin_probability_torch(batch.float())
    np.testing.assert_allclose(float32.numpy(), probability.numpy(), atol=1e-4)


def test_whole_colour_cube_is_finite_and_in_range():
    levels = np.arange(0, 256, 5, dtype=np.uint8)
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(1, -1, 3)
    probability = S.skin_probability(cube)
    assert np.isfinite(probability).all() and probability.min() >= 0 and probability.max() <= 1
    torch_probability = S.skin_probability_torch(torch.from_numpy(cube).permute(2, 0, 1)[None].float() / 255)
    assert torch.isfinite(torch_probability).all()


def test_torch_version_is_differentiable():
    images = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(S.skin_probability_torch, (images,))


def test_mask_image_is_rounded_255_scale(test_image):
    mask = S.skin_mask_image(test_image)
    assert mask.shape == test_image.shape and mask.dtype == np.uint8
    expected = np.round(255 * np.array([[direct_probability(*map(int, px)) for px in row]
                                        for row in test_image]))
    np.testing.assert_array_equal(mask[..., 0], expected)


def test_bad_shape():
    with pytest.raises(ValueError, match="RGB"):
        S.skin_probability(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        S.skin_probability_torch(torch.zeros(3, 4, 4))

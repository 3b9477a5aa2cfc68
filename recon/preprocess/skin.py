"""Skin probability from the original's two colour GMMs (SPEC 6.5 step 2, Appendix B).

Each pixel's RGB is converted to YCbCr (ITU-R BT.601, 0-255 scale); a 4-component
full-covariance Gaussian mixture gives the skin likelihood, another the non-skin one, and
the posterior with priors 0.8 / 0.2 is the skin probability. The original evaluates this on
the full photo during data preparation and uses it as the photometric-loss attention mask.

Each component's Mahalanobis form is expanded into a quadratic in the (centred) YCbCr
features, so all 8 component log-likelihoods are one (N, 10) @ (10, 8) matrix product.
Both versions compute in the log domain (the posterior is a sigmoid of the log-likelihood
difference), which equals the original's direct formula wherever that is finite and never
divides 0 by 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# BT.601 RGB (0-255) -> YCbCr: rows Y, Cb, Cr of the matrix (divided by 255) and the offset.
RGB_TO_YCBCR = ((65.481, 128.553, 24.966),
                (-37.797, -74.203, 112.0),
                (112.0, -93.786, -18.214))
YCBCR_OFFSET = (16.0, 128.0, 128.0)

SKIN_PRIOR = 0.8      # prior probability of skin
NON_SKIN_PRIOR = 0.2  # prior probability of non-skin

# Skin GMM [SPEC Appendix B]: component weights, means [Y, Cb, Cr], det(Sigma), inv(Sigma).
SKIN_WEIGHTS = (0.24063933, 0.16365987, 0.26034665, 0.33535415)
SKIN_MEANS = ((113.71862, 103.39613, 164.08226),
              (150.19858, 105.18467, 155.51428),
              (183.92976, 107.62468, 152.7182),
              (114.90524, 113.59782, 151.38217))
SKIN_COV_DETS = (5692842.5, 5851930.5, 2329131.0, 1585971.0)
SKIN_COV_INVS = (
    ((0.0019472069, 0.0020450759, -0.00060243998),
     (0.0020450759, 0.017700525, 0.0051420014),
     (-0.00060243998, 0.0051420014, 0.008130895)),
    ((0.0027110141, 0.001103699, 0.0023122299),
     (0.001103699, 0.010707724, 0.010742856),
     (0.0023122299, 0.010742856, 0.017481629)),
    ((0.0048026871, 0.00022935172, 0.0077668377),
     (0.00022935172, 0.011729696, 0.0081661865),
     (0.0077668377, 0.0081661865, 0.025374353)),
    ((0.0011989699, 0.0022453172, -0.0010748957),
     (0.0022453172, 0.047758564, 0.020332102),
     (-0.0010748957, 0.020332102, 0.024502251)),
)

# Non-skin GMM [SPEC Appendix B].
NON_SKIN_WEIGHTS = (0.1279107, 0.31130761, 0.34245777, 0.21832393)
NON_SKIN_MEANS = ((99.200851, 112.07533, 140.20602),
                  (110.91392, 125.52969, 130.19237),
                  (129.75864, 129.96107, 126.96808),
                  (112.29587, 128.85121, 129.05431))
NON_SKIN_COV_DETS = (458703648.0, 6466488.0, 90611376.0, 133097.63)
NON_SKIN_COV_INVS = (
    ((0.00085371657, 0.00071197288, 0.00023958916),
     (0.00071197288, 0.002593562, 0.00076557708),
     (0.00023958916, 0.00076557708, 0.0015042332)),
    ((0.0002465015, 0.00045542428, 0.00015019422),
     (0.00045542428, 0.026412144, 0.018419769),
     (0.00015019422, 0.018419769, 0.037497383)),
    ((0.00037054974, 0.0003814676, 0.00040408765),
     (0.0003814676, 0.0085505722, 0.0079136286),
     (0.00040408765, 0.0079136286, 0.010982352)),
    ((0.00013709733, 0.00051228428, 0.0001277743),
     (0.00051228428, 0.28237113, 0.1052837),
     (0.0001277743, 0.1052837, 0.23468947)),
)


def _log_constants(weights, dets) -> np.ndarray:
    # log(w_k / ((2 pi)^{3/2} sqrt(det Sigma_k))), per component.
    return np.array([math.log(w) - 1.5 * math.log(2 * math.pi) - 0.5 * math.log(d)
                     for w, d in zip(weights, dets)])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in 0-255 (any dtype) -> (..., 3) float64 [Y, Cb, Cr], 0-255 scale."""
    matrix = np.array(RGB_TO_YCBCR) / 255.0
    return np.asarray(rgb, dtype=np.float64) @ matrix.T + np.array(YCBCR_OFFSET)


FEATURE_CENTRE = 128.0  # subtracted from YCbCr before the quadratic features (precision)


def _quadratic_form_matrix(weights, means, dets, inverses) -> np.ndarray:
    """(10, K) float64 W with log(w_k N(x; mu_k, Sigma_k)) = phi(x - 128) @ W[:, k].

    phi(y) = [y0^2, y1^2, y2^2, 2y0y1, 2y0y2, 2y1y2, y0, y1, y2, 1]; expanding
    (y - m)^T A (y - m) this way turns the whole mixture into one matrix product.
    """
    columns = []
    for log_constant, mean, inverse in zip(_log_constants(weights, dets), means, inverses):
        a = np.array(inverse, dtype=np.float64)
        m = np.array(mean, dtype=np.float64) - FEATURE_CENTRE
        quadratic = [a[0, 0], a[1, 1], a[2, 2], a[0, 1], a[0, 2], a[1, 2]]
        linear = -2.0 * (a @ m)
        constant = m @ a @ m
        columns.append(np.concatenate([-0.5 * np.array(quadratic), -0.5 * linear,
                                       [log_constant - 0.5 * constant]]))
    return np.stack(columns, axis=1)


def _quadratic_features(y, stack):
    # y (..., 3) centred YCbCr -> (..., 10); ``stack`` is np.stack or torch.stack.
    y0, y1, y2 = y[..., 0], y[..., 1], y[..., 2]
    return stack([y0 * y0, y1 * y1, y2 * y2, 2 * y0 * y1, 2 * y0 * y2, 2 * y1 * y2,
                  y0, y1, y2, y0 * 0 + 1], -1)  # y0 * 0 + 1: ones, in numpy and torch


def _mixture_matrix() -> np.ndarray:
    """(10, 8) float64: columns 0-3 skin components, 4-7 non-skin, priors folded in."""
    skin = _quadratic_form_matrix(SKIN_WEIGHTS, SKIN_MEANS, SKIN_COV_DETS, SKIN_COV_INVS)
    non_skin = _quadratic_form_matrix(NON_SKIN_WEIGHTS, NON_SKIN_MEANS, NON_SKIN_COV_DETS,
                                      NON_SKIN_COV_INVS)
    skin[9] += math.log(SKIN_PRIOR)
    non_skin[9] += math.log(NON_SKIN_PRIOR)
    return np.concatenate([skin, non_skin], axis=1)


def _log_sum_exp(logs: np.ndarray) -> np.ndarray:
    peak = logs.max(axis=-1, keepdims=True)
    return peak[..., 0] + np.log(np.exp(logs - peak).sum(axis=-1))


def skin_probability(image: np.ndarray) -> np.ndarray:
    """Per-pixel skin posterior of an RGB image.

    Args:
        image: (H, W, 3) uint8 RGB (0-255; float arrays on the same scale are accepted).
    Returns:
        (H, W) float32 in [0, 1].
    """
    return _probability_float64(image).astype(np.float32)


def _probability_float64(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"skin_probability needs an (H, W, 3) RGB image, got {image.shape}")
    features = _quadratic_features(rgb_to_ycbcr(image.reshape(-1, 3)) - FEATURE_CENTRE, np.stack)
    logs = features @ _mixture_matrix()                                    # (N, 8)
    log_skin, log_non_skin = _log_sum_exp(logs[:, :4]), _log_sum_exp(logs[:, 4:])
    # P = a / (a + b) = sigmoid(log a - log b), written with tanh to avoid overflow.
    probability = 0.5 * (1.0 + np.tanh(0.5 * (log_skin - log_non_skin)))
    return probability.reshape(image.shape[:2])


def skin_mask_image(image: np.ndarray) -> np.ndarray:
    """The original's saved mask: round(255 P) as an (H, W, 3) uint8 image."""
    probability = _probability_float64(image)  # round from float64, as the original
    return np.repeat(np.round(255.0 * probability).astype(np.uint8)[:, :, None], 3, axis=2)


def skin_probability_torch(images: torch.Tensor) -> torch.Tensor:
    """Batched, differentiable skin posterior.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1], any device.
    Returns:
        (B, H, W) skin probability in [0, 1], same dtype and device.
    """
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"skin_probability_torch needs float (B, 3, H, W) images, got "
                         f"{images.dtype} {tuple(images.shape)}")
    options = {"dtype": images.dtype, "device": images.device}
    rgb = images.permute(0, 2, 3, 1) * 255.0
    features = rgb @ (torch.tensor(RGB_TO_YCBCR, **options) / 255.0).T \
        + torch.tensor(YCBCR_OFFSET, **options)
    mixture = torch.as_tensor(_mixture_matrix(), **options)
    logs = _quadratic_features(features - FEATURE_CENTRE, torch.stack) @ mixture  # (B, H, W, 8)
    log_skin = torch.logsumexp(logs[..., :4], dim=-1)
    log_non_skin = torch.logsumexp(logs[..., 4:], dim=-1)
    return torch.sigmoid(log_skin - log_non_skin)

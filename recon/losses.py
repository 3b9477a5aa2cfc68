"""The training and fitting losses of the original (SPEC 5), plus a robust photometric term
and a log-contrast photometric term for fitting.

Every loss takes batch-first tensors and returns either the original's batch reduction (a
0-d tensor, ``reduction="batch"``) or one value per image (``reduction="none"``, (B,)),
which the fitting code sums so that the images of a batch stay independent. The weights
of the original live in ``recon.constants`` and are gathered in ``LossWeights``; the
functions here return *unweighted* terms, ``total_loss`` weights and sums them.
``loss_terms`` is the one place that assembles the terms from a ``TermInputs``: training
(``recon.training.objective``) asks for the batch reduction, fitting for the per-image
one, with the identity and albedo of a subject fit counted once for the set
(``shared_groups``).

Image conventions: images are (B, 3, H, W) RGB floats in [0, 1]; masks and attention maps
(B, 1, H, W) in [0, 1]; landmarks (B, P, 2) in pixels of the 224 crop (any convention, as
long as prediction and target agree; faceset uses y-down), P = 68 for the original's term
or any landmark set's count with its weights (``set_landmark_weights``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import constants as C
from .landmark_set import LandmarkSet
from .types import Coeffs

REDUCTIONS = ("batch", "none")


@dataclass
class LossWeights:
    """Weights of the total loss; the defaults are the original's CLI defaults (SPEC 5)."""

    color: float = C.W_COLOR
    lm: float = C.W_LANDMARK
    feat: float = C.W_FEAT
    reg: float = C.W_REG
    gamma: float = C.W_GAMMA
    reflc: float = C.W_REFLECTANCE
    reg_id: float = C.W_REG_ID
    reg_exp: float = C.W_REG_EXP
    reg_tex: float = C.W_REG_TEX
    contrast: float = 0.0  # beyond the original (``contrast_loss``): fitting only


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_images(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "must both be (B, 3, H, W)")
    if weight.ndim != 4 or weight.shape[1] != 1 or weight.shape[-2:] != pred.shape[-2:]:
        raise ValueError(f"pixel weights must be (B, 1, H, W) matching the images, "
                         f"got {tuple(weight.shape)}")


def pixel_residual(pred: torch.Tensor, target: torch.Tensor, eps: float = C.PHOTO_EPS) -> torch.Tensor:
    """Per-pixel colour distance e = sqrt(eps + sum_c (pred - target)^2) (SPEC 5).

    pred, target: (B, 3, H, W) RGB in [0, 1]. Returns (B, 1, H, W), same units as the images.
    The eps inside the root keeps the gradient finite where the residual is zero.
    """
    return torch.sqrt(eps + ((pred - target) ** 2).sum(dim=1, keepdim=True))


def photo_attention(face_mask: torch.Tensor, skin_probability: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A = skin_probability * detached face mask (SPEC 5): the photometric pixel weights.

    face_mask: (B, 1, H, W) rendered coverage in [0, 1]; its gradient is cut, as the
    original does. skin_probability: (B, 1, H, W) raw posterior in [0, 1] or None (= 1).
    Returns (B, 1, H, W).
    """
    mask = face_mask.detach()
    return mask if skin_probability is None else mask * skin_probability


def silhouette_band(coverage: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) 0/1 coverage of a render -> (B, 1, H, W) 0/1: the pixels within one
    pixel (8-neighbourhood) of its silhouette, on either side. Where a render is
    antialiased over the photo these pixels carry the silhouette's gradient, also where the
    photo's pixel is not skin (a face that spills over the background)."""
    coverage = coverage.detach()
    grown = F.max_pool2d(coverage, 3, stride=1, padding=1)
    shrunk = -F.max_pool2d(-coverage, 3, stride=1, padding=1)
    return grown - shrunk


def _weighted_pixel_mean(values: torch.Tensor, weight: torch.Tensor, reduction: str) -> torch.Tensor:
    """sum(values * weight) / max(sum(weight), 1), pooled over the batch or per image."""
    if reduction == "batch":
        return (values * weight).sum() / weight.sum().clamp(min=1.0)
    return (values * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1.0)


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, attention: torch.Tensor,
                     reduction: str = "batch", eps: float = C.PHOTO_EPS) -> torch.Tensor:
    """The original's photometric term L = sum(e * A) / max(sum A, 1) (SPEC 5).

    pred: (B, 3, H, W) rendered image in [0, 1]; target: (B, 3, H, W) input image;
    attention: (B, 1, H, W) pixel weights A (see ``photo_attention``; pass it detached).
    Returns a 0-d tensor (``"batch"``: pooled over all images, as the original) or (B,).

    Examples:
        >>> pred, target = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
        >>> target[1] = 0.5                                   # image 1 is off by 0.5 per channel
        >>> per_image = photometric_loss(pred, target, torch.ones(2, 1, 4, 4), reduction="none")
        >>> [round(float(v), 2) for v in per_image]           # e = ||pred - target|| over RGB (+ eps)
        [0.0, 0.87]
    """
    _check_reduction(reduction)
    _check_images(pred, target, attention)
    return _weighted_pixel_mean(pixel_residual(pred, target, eps), attention, reduction)


def robust_penalty(residual: torch.Tensor, scale: float) -> torch.Tensor:
    """rho(e) = scale * log(1 + e / scale): like e for e << scale, logarithmic beyond.

    residual: any shape, non-negative (a colour distance in image units); scale > 0 in the
    same units. Its derivative 1 / (1 + e/scale) lets an occluder's large residuals pull
    far less than the face pixels that the model can explain.
    """
    if scale <= 0:
        raise ValueError(f"robust scale must be positive, got {scale}")
    return scale * torch.log1p(residual / scale)


def robust_photometric_loss(pred: torch.Tensor, target: torch.Tensor, attention: torch.Tensor,
                            scale: float = 0.1, reduction: str = "batch",
                            eps: float = C.PHOTO_EPS) -> torch.Tensor:
    """Occlusion-robust photometric term: sum(rho(e) * A) / max(sum A, 1).

    Same arguments and result as ``photometric_loss`` plus ``scale`` (colour distance,
    [0, 1] image units, where the penalty starts to flatten; the default 0.1 is about
    a quarter of the typical colour difference between skin and an occluder).
    """
    _check_reduction(reduction)
    _check_images(pred, target, attention)
    values = robust_penalty(pixel_residual(pred, target, eps), scale)
    return _weighted_pixel_mean(values, attention, reduction)


# Floor added before the log in ``log_contrast``: keeps the log of near-black pixels (hair,
# shadow, sensor noise of about 0.01) from dominating the term.
LOG_CONTRAST_FLOOR = 0.02


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """(..., H, W) -> the same, blurred by a Gaussian of std ``sigma`` pixels (3 sigma
    radius, edges replicated). Each axis is one product with a banded (size x size)
    matrix: on the CPU far faster than a depthwise convolution with a wide kernel."""
    height, width = images.shape[-2:]
    rows = _blur_matrix(height, sigma, images.device, images.dtype)
    columns = _blur_matrix(width, sigma, images.device, images.dtype)
    return rows.T @ (images @ columns)


def _blur_matrix(size: int, sigma: float, device, dtype) -> torch.Tensor:
    """(size, size) M with (x @ M)[j] = sum_t kernel[t] x[clamp(j + t)]: a 1-D Gaussian
    blur whose taps beyond an edge fall on the edge pixel."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, device=device)
    kernel = torch.exp(-offsets.to(dtype) ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    output = torch.arange(size, device=device)[:, None].expand(size, offsets.numel())
    source = (output + offsets).clamp(0, size - 1)
    matrix = torch.zeros(size, size, device=device, dtype=dtype)
    matrix.index_put_((source.reshape(-1), output.reshape(-1)), kernel.repeat(size), accumulate=True)
    return matrix


def log_contrast(images: torch.Tensor, sigma: float, floor: float = LOG_CONTRAST_FLOOR) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> g - blur(g, sigma) with g = log(images + floor).

    A photo is albedo x shading per channel; in the log the product is a sum, and taking
    away a wide blur removes what varies slowly over the face: a global gain (albedo and
    light trade it exactly) and smooth albedo or brightness fields. What stays is the
    relative shading that the shape's normals make, dark pixels counted by their ratios.
    """
    logs = torch.log(images.clamp(min=0.0) + floor)
    return logs - gaussian_blur(logs, sigma)


def contrast_loss(pred_contrast: torch.Tensor, target_contrast: torch.Tensor, attention: torch.Tensor,
                  scale: float = 0.1, reduction: str = "batch") -> torch.Tensor:
    """Robust distance between the ``log_contrast`` images of a render and of the photo:
    sum(rho(e) * A) / max(sum A, 1), e the per-pixel colour distance of the two contrast
    images (log units: 0.1 is about a 10 % brightness ratio), rho as ``robust_penalty``.
    Returns 0-d or (B,)."""
    _check_reduction(reduction)
    _check_images(pred_contrast, target_contrast, attention)
    values = robust_penalty(pixel_residual(pred_contrast, target_contrast), scale)
    return _weighted_pixel_mean(values, attention, reduction)


def landmark_weights(n_landmarks: int = 68, device=None, dtype=torch.float32) -> torch.Tensor:
    """(68,) weights: 20 on 0-based 28-30 (nose ridge) and 60-67 (inner mouth), else 1."""
    if n_landmarks != 68:
        raise ValueError(f"the original's landmark weights are for the 68 iBUG points, not {n_landmarks}")
    weights = torch.ones(n_landmarks, device=device, dtype=dtype)
    weights[list(C.LANDMARK_HEAVY_IDS)] = C.LANDMARK_HEAVY_WEIGHT
    return weights


# The original's 68-point term divides by 68 while its weights sum to 277: its mean weight.
IBUG68_MEAN_WEIGHT = (68 + (C.LANDMARK_HEAVY_WEIGHT - 1) * len(C.LANDMARK_HEAVY_IDS)) / 68


def set_landmark_weights(landmark_set: LandmarkSet, device=None, dtype=torch.float32) -> tuple[torch.Tensor, float]:
    """Weights (P,) and normaliser of ``landmark_loss`` for a landmark set.

    The iBUG 68 set: the original's weights (SPEC 5) times the set's own (all 1 in
    ``LandmarkSet.ibug68``'s default) over 68, so the term is the original's exactly. Any
    other set: its own weights over sum(weights) / IBUG68_MEAN_WEIGHT, i.e. the weighted
    mean squared error times the 68-point term's mean weight: points that all miss by r
    pixels cost the same as the 68-point term's points that all miss by r, whatever P
    (a denser set refines where the error sits, it does not multiply the term's scale,
    so the fitting weight of the landmark term keeps its meaning).
    """
    own = landmark_set.weights.to(device=device, dtype=dtype)
    if landmark_set.name == "ibug68" and landmark_set.count == 68:
        return landmark_weights(68, device, dtype) * own, 68.0
    total = float(own.sum())
    if total <= 0:
        raise ValueError(f"landmark set {landmark_set.name}: all weights are zero")
    return own, total / IBUG68_MEAN_WEIGHT


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "batch",
                  visibility: Optional[torch.Tensor] = None, weights: Optional[torch.Tensor] = None,
                  normaliser: Optional[float] = None, robust_scale: Optional[float] = None) -> torch.Tensor:
    """L = sum_b sum_i w_i ||p_i - q_i||^2 / (B * n) (SPEC 5 for the 68 iBUG points).

    pred, target: (B, P, 2) pixels of the 224 crop (same convention for both).
    visibility: optional (B, P) in [0, 1] multiplying w_i (e.g. 0 for landmarks a
    detector marked as occluded); the normaliser stays, as the original's 68.
    weights (P,) and normaliser n: a landmark set's (``set_landmark_weights``); without
    them P must be 68 and the original's weights and n = 68 apply.
    robust_scale: None for the squared distance (the original's); a scale s in pixels
        replaces each point's d^2 by the Cauchy penalty s^2 log(1 + d^2 / s^2), equal to
        d^2 for d << s, growing only logarithmically for d >> s, so that points a detector
        misplaced (occluders, hair, a beard, its own prior filling in the hidden side)
        stop dragging the shape.
    Returns a 0-d tensor or (B,) (per image: sum_i w_i rho(||.||) / n).

    Examples:
        >>> target = torch.zeros(1, 68, 2)
        >>> pred = target.clone()
        >>> pred[0, 0, 0] = 2.0                               # jaw point 0 (weight 1) off by 2 px
        >>> round(float(landmark_loss(pred, target)), 4)      # 1 * 2^2 / 68
        0.0588
    """
    _check_reduction(reduction)
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"landmarks must both be (B, P, 2), got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if weights is None:
        weights, normaliser = landmark_weights(pred.shape[1], pred.device, pred.dtype), 68.0
    elif weights.shape != pred.shape[1:2] or normaliser is None:
        raise ValueError(f"landmark weights must be ({pred.shape[1]},) with a normaliser, got "
                         f"{tuple(weights.shape)} and {normaliser}")
    if visibility is not None and visibility.shape != pred.shape[:2]:
        raise ValueError(f"landmark visibility must be {tuple(pred.shape[:2])}, got {tuple(visibility.shape)}")
    weights = weights.to(pred)
    weights = weights.expand(pred.shape[:2]) if visibility is None else weights * visibility
    squared = ((pred - target) ** 2).sum(-1)
    if robust_scale is not None:
        squared = robust_scale ** 2 * torch.log1p(squared / robust_scale ** 2)
    per_image = (weights * squared).sum(1) / normaliser
    return per_image.mean() if reduction == "batch" else per_image


PRIOR_GROUPS = ("id", "exp", "tex")  # the coefficient groups with a Gaussian prior (SPEC 5)


def coefficient_prior(coeffs: Coeffs, weights: LossWeights = LossWeights(), reduction: str = "batch",
                      shared_groups: tuple[str, ...] = ()) -> torch.Tensor:
    """(w_id sum id^2 + w_exp sum exp^2 + w_tex sum tex^2) / B (SPEC 5).

    coeffs: Coeffs (B, ...), id/exp/tex in standard deviations; weights: its inner
    weights ``reg_id``, ``reg_exp``, ``reg_tex``. shared_groups: groups of ``PRIOR_GROUPS``
    that all B images share (one identity seen B times is one draw from the prior): their
    prior counts once for the batch, 1/B of it per image. Returns 0-d or (B,).

    Examples:
        >>> coeffs = Coeffs.zeros(2, Coeffs.sizes_for(n_id=1, n_exp=1, n_tex=1))
        >>> coeffs.id[:] = 1.0                                # the same identity in both images
        >>> weights = LossWeights(reg_id=1.0)
        >>> coefficient_prior(coeffs, weights, reduction="none")
        tensor([1., 1.])
        >>> coefficient_prior(coeffs, weights, reduction="none", shared_groups=("id",))
        tensor([0.5000, 0.5000])
    """
    _check_reduction(reduction)
    unknown = set(shared_groups) - set(PRIOR_GROUPS)
    if unknown:
        raise ValueError(f"shared groups must be among {PRIOR_GROUPS}, got {sorted(unknown)}")
    share = 1.0 / coeffs.batch_size
    inner = {"id": weights.reg_id, "exp": weights.reg_exp, "tex": weights.reg_tex}
    scale = {group: share * weight if group in shared_groups else weight for group, weight in inner.items()}
    per_image = (scale["id"] * (coeffs.id ** 2).sum(1) + scale["exp"] * (coeffs.exp ** 2).sum(1)
                 + scale["tex"] * (coeffs.tex ** 2).sum(1))
    return per_image.mean() if reduction == "batch" else per_image


def gamma_loss(gamma: torch.Tensor, reduction: str = "batch") -> torch.Tensor:
    """Monochrome-light prior: mean of (gamma - mean over channels)^2 (SPEC 5).

    gamma: (B, 27) channel-major SH coefficients, raw (without the 0.8 DC offset).
    Returns 0-d (mean over all B*27 elements) or (B,) (mean over each image's 27).

    Examples:
        >>> white = torch.ones(1, 27)                         # same light in R, G and B
        >>> red = torch.cat([torch.ones(1, 9), torch.zeros(1, 18)], dim=1)
        >>> gamma_loss(torch.cat([white, red]), reduction="none")
        tensor([0.0000, 0.2222])
    """
    _check_reduction(reduction)
    light = gamma.view(gamma.shape[0], 3, -1)
    squared = (light - light.mean(dim=1, keepdim=True)) ** 2
    return squared.mean() if reduction == "batch" else squared.flatten(1).mean(1)


def reflectance_loss(albedo: torch.Tensor, skin_mask: torch.Tensor, reduction: str = "batch") -> torch.Tensor:
    """Albedo flatness on skin vertices (SPEC 5).

    albedo: (B, N, 3) in [0, 1]; skin_mask: (N,) bool or float vertex mask.
    mu = sum(mask T) / sum(mask) per image and channel; L = sum(((T - mu) mask)^2) / (B sum mask).
    Returns 0-d or (B,) (per image: divided by sum mask).
    """
    _check_reduction(reduction)
    if albedo.ndim != 3 or skin_mask.shape != albedo.shape[1:2]:
        raise ValueError(f"albedo must be (B, N, 3) and skin_mask (N,), got "
                         f"{tuple(albedo.shape)} and {tuple(skin_mask.shape)}")
    mask = skin_mask.to(albedo.dtype)[None, :, None]
    count = mask.sum()
    mean = (albedo * mask).sum(1, keepdim=True) / count
    per_image = (((albedo - mean) * mask) ** 2).sum((1, 2)) / count
    return per_image.mean() if reduction == "batch" else per_image


def identity_loss(pred_features: torch.Tensor, target_features: torch.Tensor,
                  reduction: str = "batch") -> torch.Tensor:
    """Perceptual identity term sum_b (1 - cos(f_pred, f_in)) / B (SPEC 5), no hinge.

    pred_features, target_features: (B, D) float features of one encoder (normalised here,
    so any scale works), same device. Returns 0-d or (B,), each image's 1 - cos in [0, 2].
    """
    _check_reduction(reduction)
    if pred_features.ndim != 2 or pred_features.shape != target_features.shape:
        raise ValueError(f"features must both be (B, D), got {tuple(pred_features.shape)} and "
                         f"{tuple(target_features.shape)}")
    cosine = torch.nn.functional.cosine_similarity(pred_features, target_features, dim=1)
    per_image = 1.0 - cosine
    return per_image.mean() if reduction == "batch" else per_image


@dataclass
class TermInputs:
    """What the SPEC 5 terms of a batch of B images compare (``loss_terms``); every tensor
    batch-first, on one device.

    rendered: (B, 3, H, W) the render, RGB in [0, 1]; images: (B, 3, H, W) the photos;
    attention: (B, 1, H, W) photometric pixel weights in [0, 1], without gradient
        (``photo_attention``, plus whatever a caller adds or masks);
    landmarks, target_landmarks: (B, P, 2) the model's projected points and the targets,
        y-down pixels of the crop;
    landmark_visibility (B, P), landmark_weights (P,) and landmark_normaliser: as
        ``landmark_loss`` (None: all visible, the original's 68-point weights);
    coeffs: the Coeffs (B, ...) of the coefficient prior and the gamma term;
    albedo: (B, N, 3) per-vertex albedo in [0, 1]; skin_mask: (N,) bool or float;
    features: None, or (predicted, target) identity features, (B, D) each: the ``feat`` term;
    contrast: None, or (predicted, target, attention): ``log_contrast`` images (B, 3, H, W)
        of render and photo and their pixel weights (B, 1, H, W): the ``contrast`` term.
    """

    rendered: torch.Tensor
    images: torch.Tensor
    attention: torch.Tensor
    landmarks: torch.Tensor
    target_landmarks: torch.Tensor
    coeffs: Coeffs
    albedo: torch.Tensor
    skin_mask: torch.Tensor
    landmark_visibility: Optional[torch.Tensor] = None
    landmark_weights: Optional[torch.Tensor] = None
    landmark_normaliser: Optional[float] = None
    features: Optional[tuple[torch.Tensor, torch.Tensor]] = None
    contrast: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None


def loss_terms(inputs: TermInputs, weights: LossWeights = LossWeights(), reduction: str = "batch",
               shared_groups: tuple[str, ...] = (), photo_robust_scale: Optional[float] = None,
               landmark_robust_scale: Optional[float] = None) -> dict[str, torch.Tensor]:
    """The unweighted terms of ``inputs``, named as ``LossWeights`` (SPEC 5 plus contrast).

    color (``photometric_loss``, or ``robust_photometric_loss`` with ``photo_robust_scale``),
    lm (``landmark_loss``, Cauchy beyond ``landmark_robust_scale`` pixels when given), reg
    (``coefficient_prior``, which holds its inner weights; ``shared_groups`` count once for
    the batch), gamma, reflc and, when their inputs are given, contrast and feat. A term
    whose weight is zero is left out (not computed). reduction: ``"batch"`` (the
    original's, each term 0-d) or ``"none"`` (each term (B,), images independent).
    Returns {name: term} in the order color, lm, reg, gamma, reflc, contrast, feat;
    ``total_loss`` weights and sums them.

    Examples:
        >>> inputs = TermInputs(rendered=torch.zeros(2, 3, 4, 4), images=torch.full((2, 3, 4, 4), 0.5),
        ...                     attention=torch.ones(2, 1, 4, 4), landmarks=torch.zeros(2, 68, 2),
        ...                     target_landmarks=torch.zeros(2, 68, 2), coeffs=Coeffs.zeros(2),
        ...                     albedo=torch.full((2, 5, 3), 0.5), skin_mask=torch.ones(5, dtype=torch.bool))
        >>> terms = loss_terms(inputs, LossWeights(gamma=0.0), reduction="none")
        >>> list(terms), terms["color"]                       # gamma dropped; e = sqrt(3 * 0.5^2)
        (['color', 'lm', 'reg', 'reflc'], tensor([0.8660, 0.8660]))
    """
    _check_reduction(reduction)
    builders: dict[str, Callable[[], torch.Tensor]] = {
        "color": lambda: _color_term(inputs, reduction, photo_robust_scale),
        "lm": lambda: landmark_loss(inputs.landmarks, inputs.target_landmarks, reduction=reduction,
                                    visibility=inputs.landmark_visibility, weights=inputs.landmark_weights,
                                    normaliser=inputs.landmark_normaliser, robust_scale=landmark_robust_scale),
        "reg": lambda: coefficient_prior(inputs.coeffs, weights, reduction, shared_groups),
        "gamma": lambda: gamma_loss(inputs.coeffs.gamma, reduction),
        "reflc": lambda: reflectance_loss(inputs.albedo, inputs.skin_mask, reduction),
    }
    if inputs.contrast is not None:
        builders["contrast"] = lambda: contrast_loss(*inputs.contrast, reduction=reduction)
    if inputs.features is not None:
        builders["feat"] = lambda: identity_loss(*inputs.features, reduction=reduction)
    return {name: build() for name, build in builders.items() if getattr(weights, name) != 0}


def _color_term(inputs: TermInputs, reduction: str, robust_scale: Optional[float]) -> torch.Tensor:
    if robust_scale is None:
        return photometric_loss(inputs.rendered, inputs.images, inputs.attention, reduction=reduction)
    return robust_photometric_loss(inputs.rendered, inputs.images, inputs.attention, scale=robust_scale,
                                   reduction=reduction)


def weighted_terms(terms: dict[str, torch.Tensor], weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """Each unweighted term (keys: color, lm, feat, reg, gamma, reflc, contrast; any shape)
    times its weight, in the order given. The reg term already holds its inner weights."""
    known = {f.name for f in fields(weights)}
    unknown = set(terms) - known
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}")
    return {name: getattr(weights, name) * value for name, value in terms.items()}


def total_loss(terms: dict[str, torch.Tensor], weights: LossWeights = LossWeights()) -> torch.Tensor:
    """Weighted sum of the unweighted terms present in ``terms`` (``weighted_terms``; any
    shapes that broadcast: 0-d terms give a 0-d total, (B,) terms a per-image one).

    Examples:
        >>> weights = LossWeights()
        >>> total = total_loss({"color": torch.tensor(1.0), "lm": torch.tensor(1.0)}, weights)
        >>> bool(total == weights.color + weights.lm)
        True
    """
    return sum(weighted_terms(terms, weights).values())

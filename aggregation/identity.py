"""Fuse one identity (and albedo) from the per-image coefficients of a photo set.

Two rules (SPEC 9):

* ``"mean"``: the authors' recommendation for the unreleased C-Net: average the ``id``
  coefficients of the images and set ``exp`` to zero.
* ``"confidence"``: the paper's element-wise confidence-weighted mean
  alpha = sum_j c_j * alpha_j / sum_j c_j. C-Net's learnt confidences were never released,
  so ours are computed: c_j = q_j * diag(J_j^T W J_j) + lambda, where J_j is the Jacobian of
  image j's 68 projected landmarks with respect to the identity coefficients (so a
  coefficient the image's pose cannot observe, such as nose depth in a frontal photo, gets
  little weight), W the SPEC 5 landmark weights, q_j = 1 / (1 + (rmse_j / s)^2) a
  fit-quality factor from the image's landmark residual (a badly fitted image counts less),
  and lambda a small floor so that unobserved coefficients fall back to the plain mean.
  Under a Gaussian model of each image's estimate this is the diagonal approximation of
  the product of the per-image posteriors, which is why we chose it over heuristics
  such as a yaw-only weight: it turns pose *and* fit quality into per-coefficient weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from recon.losses import landmark_weights
from recon.types import Coeffs

METHODS = ("mean", "confidence")


@dataclass
class AggregationConfig:
    """How to fuse: ``method`` in METHODS; ``residual_scale_px`` is s of the quality factor
    (landmark RMSE in 224-crop pixels at which an image's weight halves); ``floor`` is
    lambda relative to the mean information of a coefficient over the set."""

    method: str = "confidence"
    residual_scale_px: float = 3.0
    floor: float = 0.05


@dataclass
class AggregatedIdentity:
    """id (1, K_id), tex (1, K_tex): the fused coefficients; weights (M, K_id): each image's
    normalised share per identity coefficient (rows of invalid images are zero)."""

    id: torch.Tensor
    tex: torch.Tensor
    weights: torch.Tensor


def weighted_mean(values: torch.Tensor, confidences: torch.Tensor) -> torch.Tensor:
    """Element-wise confidence-weighted mean sum_j c_j * v_j / sum_j c_j.

    values: (M, K); confidences: (M, K) or (M, 1), non-negative, not all zero per column.
    Returns (K,).
    """
    if values.ndim != 2 or confidences.ndim != 2 or confidences.shape[0] != values.shape[0]:
        raise ValueError(f"values (M, K) and confidences (M, K|1) expected, got "
                         f"{tuple(values.shape)} and {tuple(confidences.shape)}")
    if (confidences < 0).any():
        raise ValueError("confidences must be non-negative")
    total = confidences.sum(0)
    if (total <= 0).any():
        raise ValueError("every coefficient needs a positive total confidence")
    return (confidences * values).sum(0) / total


def landmark_information(face_model, coeffs: Coeffs) -> torch.Tensor:
    """Diagonal of J^T W J per image: how strongly each identity coefficient moves the
    image's 68 weighted landmarks, in px^2 per (standard deviation)^2.

    face_model: a ``recon.face_model.FaceModel``; coeffs: (M, ...) per-image coefficients.
    Returns (M, K_id). The landmarks are linear in id before projection, so J is exact.
    """
    weights = landmark_weights(68, coeffs.id.device, coeffs.id.dtype)

    def landmarks_of(id_row: torch.Tensor, index: int) -> torch.Tensor:
        one = coeffs[index].replace(id=id_row[None])
        return _landmarks(face_model, one)[0]

    rows = []
    for index in range(coeffs.batch_size):
        jac = torch.autograd.functional.jacobian(lambda v: landmarks_of(v, index),
                                                 coeffs.id[index].detach())  # (68, 2, K)
        rows.append((weights[:, None, None] * jac ** 2).sum((0, 1)))
    return torch.stack(rows)


def _landmarks(face_model, coeffs: Coeffs) -> torch.Tensor:
    shape = face_model.shape(coeffs.id, coeffs.exp)[:, face_model.landmark_ids]
    world = face_model.pose(shape, coeffs.angle, coeffs.trans)
    return face_model.camera.project(face_model.camera.to_camera_space(world))


def fit_quality(face_model, coeffs: Coeffs, target_landmarks: torch.Tensor, scale_px: float) -> torch.Tensor:
    """q_j = 1 / (1 + (rmse_j / scale)^2) from each image's landmark RMSE (224-crop px).

    target_landmarks: (M, 68, 2) y-down crop pixels. Returns (M,).
    """
    with torch.no_grad():
        rmse = ((_landmarks(face_model, coeffs) - target_landmarks) ** 2).sum(-1).mean(-1).sqrt()
    return 1.0 / (1.0 + (rmse / scale_px) ** 2)


def aggregate_identity(face_model, coeffs: Coeffs, target_landmarks: Optional[torch.Tensor] = None,
                       config: AggregationConfig = AggregationConfig(),
                       valid: Optional[torch.Tensor] = None) -> AggregatedIdentity:
    """Fuse the identity of M images of one person (see the module docstring).

    coeffs: (M, ...) per-image coefficients (from R-Net or the landmark fit);
    target_landmarks: (M, 68, 2) y-down crop pixels, needed for ``"confidence"``;
    valid: optional (M,) bool, images to use (e.g. those with a detected face).
    Albedo is fused with the scalar quality weights only (landmarks do not observe it).
    """
    if config.method not in METHODS:
        raise ValueError(f"aggregation method must be one of {METHODS}, got {config.method!r}")
    m = coeffs.batch_size
    valid = torch.ones(m, dtype=torch.bool, device=coeffs.id.device) if valid is None else valid.bool()
    if not valid.any():
        raise ValueError("no valid image to aggregate")
    mask = valid.to(coeffs.id.dtype)[:, None]
    if config.method == "mean":
        conf_id, conf_tex = mask.expand_as(coeffs.id), mask
    else:
        if target_landmarks is None:
            raise ValueError("confidence aggregation needs the target landmarks")
        quality = fit_quality(face_model, coeffs, target_landmarks, config.residual_scale_px)[:, None]
        info = landmark_information(face_model, coeffs)
        floor = config.floor * (info * mask).sum(0, keepdim=True) / mask.sum()
        conf_id = (quality * info + floor) * mask
        conf_tex = quality * mask
    fused_id = weighted_mean(coeffs.id.detach(), conf_id)
    fused_tex = weighted_mean(coeffs.tex.detach(), conf_tex)
    share = conf_id / conf_id.sum(0, keepdim=True)
    return AggregatedIdentity(id=fused_id[None], tex=fused_tex[None], weights=share)


def neutral_coeffs(identity: AggregatedIdentity, sizes: dict[str, int]) -> Coeffs:
    """(1, ...) Coeffs of the fused face: id/tex fused, exp, pose and light zero (SPEC 9)."""
    zero = Coeffs.zeros(1, sizes, device=identity.id.device, dtype=identity.id.dtype)
    return zero.replace(id=identity.id, tex=identity.tex)

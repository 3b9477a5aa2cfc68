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

The landmarks are a ``recon.landmark_set.LandmarkSet``'s P points (default: the model's 68
iBUG vertices, as above); W is then the set's landmark-term weights scaled to the 68-point
term's normaliser (``recon.losses.set_landmark_weights``; the SPEC 5 weights for iBUG 68),
and with ``slide_contour`` the contour points sit on the current silhouette
(``recon.contour``), as in the fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from recon.contour import ContourPaths, slid_points
from recon.face_model import rotation_matrix
from recon.landmark_fit import check_landmarks
from recon.landmark_set import LandmarkSet
from recon.losses import set_landmark_weights
from recon.types import Coeffs

METHODS = ("mean", "confidence")


@dataclass
class AggregationConfig:
    """How to fuse: ``method`` in METHODS; ``residual_scale_px`` is s of the quality factor
    (landmark RMSE in 224-crop pixels at which an image's weight halves); ``floor`` is
    lambda relative to the mean information of a coefficient over the set; ``slide_contour``
    puts the set's contour points on the silhouette of each image's pose."""

    method: str = "confidence"
    residual_scale_px: float = 3.0
    floor: float = 0.05
    slide_contour: bool = False


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


def _resolve(face_model, landmark_set: Optional[LandmarkSet]) -> LandmarkSet:
    return (landmark_set or LandmarkSet.ibug68(face_model.landmark_ids)).to(face_model.mean_shape.device)


def _paths(face_model, landmark_set: LandmarkSet, slide_contour: bool) -> Optional[ContourPaths]:
    return ContourPaths.build(landmark_set, face_model) if slide_contour else None


def landmark_information(face_model, coeffs: Coeffs, landmark_set: Optional[LandmarkSet] = None,
                         slide_contour: bool = False) -> torch.Tensor:
    """Diagonal of J^T W J per image: how strongly each identity coefficient moves the
    image's weighted landmarks, in px^2 per (standard deviation)^2.

    face_model: a ``recon.face_model.FaceModel``; coeffs: (M, ...) per-image coefficients;
    landmark_set: the P points (default: the model's 68 iBUG vertices, W = SPEC 5's);
    slide_contour: contour points on each image's silhouette (the choice held fixed in J).
    Returns (M, K_id). The points are linear in id before projection, so J is exact.
    """
    landmark_set = _resolve(face_model, landmark_set)
    weights, normaliser = set_landmark_weights(landmark_set, coeffs.id.device, coeffs.id.dtype)
    weights = weights * (68.0 / normaliser)
    paths = _paths(face_model, landmark_set, slide_contour)

    def landmarks_of(id_row: torch.Tensor, index: int) -> torch.Tensor:
        one = coeffs[index].replace(id=id_row[None])
        return _landmarks(face_model, one, landmark_set, paths)[0]

    rows = []
    for index in range(coeffs.batch_size):
        jac = torch.autograd.functional.jacobian(lambda v: landmarks_of(v, index),
                                                 coeffs.id[index].detach())  # (P, 2, K)
        rows.append((weights[:, None, None] * jac ** 2).sum((0, 1)))
    return torch.stack(rows)


def _landmarks(face_model, coeffs: Coeffs, landmark_set: LandmarkSet, paths: Optional[ContourPaths]) -> torch.Tensor:
    """(M, P, 2) y-down pixels of the set's points (on the silhouette with paths)."""
    camera = face_model.camera
    shape = face_model.shape(coeffs.id, coeffs.exp)
    if paths is None:
        world = face_model.pose(landmark_set.points(shape), coeffs.angle, coeffs.trans)
        return camera.project(camera.to_camera_space(world))
    world = face_model.pose(shape, coeffs.angle, coeffs.trans)
    return slid_points(landmark_set, paths, camera.to_camera_space(world), rotation_matrix(coeffs.angle), camera)


def fit_quality(face_model, coeffs: Coeffs, target_landmarks: torch.Tensor, scale_px: float,
                landmark_set: Optional[LandmarkSet] = None, slide_contour: bool = False) -> torch.Tensor:
    """q_j = 1 / (1 + (rmse_j / scale)^2) from each image's landmark RMSE (224-crop px).

    target_landmarks: (M, P, 2) y-down crop pixels of ``landmark_set``'s points (default:
    the model's 68 iBUG vertices). Returns (M,).
    """
    landmark_set = _resolve(face_model, landmark_set)
    check_landmarks(target_landmarks, landmark_set.count, what="target landmarks")
    with torch.no_grad():
        predicted = _landmarks(face_model, coeffs, landmark_set, _paths(face_model, landmark_set, slide_contour))
        rmse = ((predicted - target_landmarks) ** 2).sum(-1).mean(-1).sqrt()
    return 1.0 / (1.0 + (rmse / scale_px) ** 2)


def aggregate_identity(face_model, coeffs: Coeffs, target_landmarks: Optional[torch.Tensor] = None,
                       config: AggregationConfig = AggregationConfig(),
                       valid: Optional[torch.Tensor] = None,
                       landmark_set: Optional[LandmarkSet] = None) -> AggregatedIdentity:
    """Fuse the identity of M images of one person (see the module docstring).

    coeffs: (M, ...) per-image coefficients (from R-Net or the landmark fit);
    target_landmarks: (M, P, 2) y-down crop pixels of ``landmark_set``'s points (default:
    the model's 68 iBUG vertices), needed for ``"confidence"``;
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
        quality = fit_quality(face_model, coeffs, target_landmarks, config.residual_scale_px,
                              landmark_set, config.slide_contour)[:, None]
        info = landmark_information(face_model, coeffs, landmark_set, config.slide_contour)
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

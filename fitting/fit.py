"""Analysis-by-synthesis: refine coefficients by rendering and comparing with the photos.

``fit_images`` fits every image of a batch independently (the batch only shares the
work); ``fit_subject`` fits one identity and one albedo shared by all images of a person,
with expression, pose and lighting per image. Both minimise the losses of training
(``recon.losses.loss_terms``, SPEC 5, per image) through the differentiable renderer,
coarse to fine over an image pyramid, with Adam and a stopping rule on relative
improvement. Beyond the
original, the photometric term can also see the face's outline (``silhouette_weight``),
and a log-contrast term compares the shading of render and photo independently of
their overall brightness (``weights.contrast``); both on by default, see
``fitting.config``.

All images live in the face model's camera (the 224 aligned crop of the original); a
pyramid level at scale s renders with a camera whose focal length and principal point are
scaled by s, which matches an area-downsampled copy of the full-size render exactly (the
rasterizer samples pixel centres at (j + 0.5) / W in NDC).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from recon import losses as L
from recon.contour import ContourPaths, slid_points
from recon.crop_camera import with_intrinsics
from recon.face_model import rotation_matrix
from recon.landmark_fit import check_landmarks, refit_pose_expression
from recon.landmark_set import LandmarkSet
from recon.preprocess.skin import skin_probability_torch
from recon.render import MeshRenderer
from recon.types import Coeffs

from .config import FitConfig

IdentityEncoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SHARED_GROUPS = ("id", "tex")


@dataclass
class FitTargets:
    """What one batch of images is fitted to.

    images: (M, 3, H, W) float RGB in [0, 1], the aligned crops (H, W = the face model
        camera's size, 224 for the original camera);
    landmarks: (M, P, 2) float, y-down pixels of the crop (a detector's P points);
    landmark_visibility: optional (M, P) in [0, 1], multiplies each landmark's weight;
    landmark_set: where the P points lie on the model (``recon.landmark_set``); None: the
        model's 68 iBUG landmark vertices (P = 68), the original's term;
    intrinsics: optional (M, 3) ``[focal, center_x, center_y_up]`` crop pixels, each photo's
        own camera (``recon.crop_camera``); None: the face model's camera for all.
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    landmark_visibility: Optional[torch.Tensor] = None
    landmark_set: Optional[LandmarkSet] = None
    intrinsics: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"target images must be (M, 3, H, W), got {tuple(self.images.shape)}")
        count = 68 if self.landmark_set is None else self.landmark_set.count
        check_landmarks(self.landmarks, count, self.landmark_visibility, what="target landmarks")
        if self.landmarks.shape[0] != self.images.shape[0]:
            raise ValueError(f"target landmarks are for {self.landmarks.shape[0]} images, "
                             f"the images are {self.images.shape[0]}")
        if self.intrinsics is not None and tuple(self.intrinsics.shape) != (self.images.shape[0], 3):
            raise ValueError(f"target intrinsics must be ({self.images.shape[0]}, 3), "
                             f"got {tuple(self.intrinsics.shape)}")

    def to(self, device) -> "FitTargets":
        return FitTargets(self.images.to(device), self.landmarks.to(device),
                          None if self.landmark_visibility is None else self.landmark_visibility.to(device),
                          None if self.landmark_set is None else self.landmark_set.to(device),
                          None if self.intrinsics is None else self.intrinsics.to(device))

    @property
    def count(self) -> int:
        return self.images.shape[0]


@dataclass
class FitResult:
    """coeffs (M, ...): fitted coefficients (detached); history: one dict per step with the
    level, its scale and the mean per-image weighted terms (total, color, lm, reg, gamma,
    reflc[, contrast][, feat]); final_loss (M,): each image's total at the last step;
    iterations (per level, steps run); seconds: wall time."""

    coeffs: Coeffs
    history: list[dict] = field(default_factory=list)
    final_loss: Optional[torch.Tensor] = None
    iterations: list[int] = field(default_factory=list)
    seconds: float = 0.0


class FitInterrupted(Exception):
    """Ctrl-C during a fit. coeffs (M, ...): the coefficients reached (detached);
    iterations: steps run per level so far; history: the per-step rows so far."""

    def __init__(self, coeffs: Coeffs, iterations: list[int], history: list[dict]):
        super().__init__(f"fit interrupted after {sum(iterations)} steps")
        self.coeffs, self.iterations, self.history = coeffs, iterations, history


def downsample(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w) by area averaging (no-op at full size)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="area")


class _Parameters:
    """The optimised tensors; shared groups are (1, K) and broadcast over the images."""

    def __init__(self, init: Coeffs, optimize: tuple[str, ...], shared: bool):
        self.shared = shared
        self.count = init.batch_size
        self.tensors: dict[str, torch.Tensor] = {}
        for group in Coeffs.GROUPS:
            value = getattr(init, group).detach().clone()
            if shared and group in SHARED_GROUPS:
                value = value.mean(0, keepdim=True)
            self.tensors[group] = value.requires_grad_(group in optimize)

    def coeffs(self) -> Coeffs:
        return Coeffs(**{g: t.expand(self.count, -1) if t.shape[0] == 1 and self.count > 1 else t
                         for g, t in self.tensors.items()})

    def optimizer(self, learning_rates: dict[str, float]) -> torch.optim.Optimizer:
        groups = [{"params": [t], "lr": learning_rates[g], "base_lr": learning_rates[g]}
                  for g, t in self.tensors.items() if t.requires_grad]
        if not groups:
            raise ValueError("nothing to optimise")
        return torch.optim.Adam(groups)


class _Level:
    """One pyramid level: its renderer, downsampled targets, skin attention."""

    def __init__(self, face_model, targets: FitTargets, scale: float, config: FitConfig,
                 skin_full: Optional[torch.Tensor]):
        self.scale = scale
        self.camera = face_model.camera.scaled(scale)
        self.renderer = MeshRenderer(self.camera, backend=config.renderer_backend)
        self.silhouette_renderer = (None if config.silhouette_weight is None else
                                    MeshRenderer(self.camera, backend=config.renderer_backend, antialias=True))
        size = (self.camera.height, self.camera.width)
        self.images = downsample(targets.images, size)
        self.skin = None if skin_full is None else downsample(skin_full, size)
        self.outlier_keep: Optional[torch.Tensor] = None
        # The contrast blur is in pixels of the 224 crop; a coarse level blurs proportionally less.
        self.contrast_sigma = config.contrast_sigma * scale
        self.contrast = (L.log_contrast(self.images, self.contrast_sigma)
                         if config.weights.contrast > 0 else None)


def _skin_attention(images: torch.Tensor) -> torch.Tensor:
    """(M, 3, H, W) [0, 1] -> (M, 1, H, W) skin posterior (SPEC 6.5), computed once."""
    with torch.no_grad():
        return skin_probability_torch(images)[:, None]


def _render_face(face_model, geometry, level: _Level):
    """The render the photometric term compares, and its front-face mask (M, 1, h, w).

    Without the silhouette term: the front triangles alone (the original's). With it: the
    whole mesh antialiased over the photo, so pixels at the silhouette blend face and
    photo; the front-face mask then comes from the triangle ids of the same render.
    """
    if level.silhouette_renderer is None:
        # Over the photo, so that the contrast term's blur sees the same surroundings in
        # render and photo; the colour term looks inside the mask only.
        rendered = level.renderer.render(geometry, face_model.front_triangles, background=level.images)
        return rendered, rendered.mask
    rendered = level.silhouette_renderer.render(geometry, face_model.triangles, background=level.images)
    front = face_model.front_triangle_flags[rendered.rast[..., 3].long()]
    return rendered, front[:, None].to(rendered.image.dtype)


def _without_outliers(attention: torch.Tensor, level: _Level) -> torch.Tensor:
    """Pixel weights with the outlier mask's dropped pixels at zero (when there is one)."""
    return attention if level.outlier_keep is None else attention * level.outlier_keep


def _photo_attention(config: FitConfig, rendered, interior: torch.Tensor) -> torch.Tensor:
    """The colour term's pixel weights: the interior ones (skin x front face, outliers out)
    and, with the silhouette term, the band around the render's outline. The outlier mask
    drops interior pixels the model cannot explain; the band stays whole: a large residual
    there is the misplaced outline the band exists to see."""
    if config.silhouette_weight is None:
        return interior
    coverage = (rendered.rast[..., 3:4] > 0).permute(0, 3, 1, 2).to(interior.dtype)
    return torch.maximum(interior, config.silhouette_weight * L.silhouette_band(coverage))


def _contrast_images(rendered, interior: torch.Tensor, level: _Level):
    """The contrast term's inputs (``recon.losses.TermInputs.contrast``) over the face's
    interior pixels, or None when the term is off."""
    if level.contrast is None:
        return None
    return L.log_contrast(rendered.image, level.contrast_sigma), level.contrast, interior


def _update_outliers(config: FitConfig, rendered, front: torch.Tensor, level: _Level) -> None:
    """Outlier mask: drop pixels whose residual exceeds k x the image's median face residual."""
    with torch.no_grad():
        residual = L.pixel_residual(rendered.image, level.images)
        inside = front > 0.5
        keep = torch.ones_like(residual)
        for b in range(residual.shape[0]):
            values = residual[b][inside[b]]
            if values.numel():
                keep[b] = (residual[b] <= config.outlier_threshold * values.median()).to(keep.dtype)
        level.outlier_keep = keep


@dataclass
class _LandmarkTerm:
    """The landmark term's fixed parts: the set, its weights and normaliser
    (``recon.losses.set_landmark_weights``) and, when contour points slide, their paths."""

    landmark_set: LandmarkSet
    weights: torch.Tensor
    normaliser: float
    paths: Optional[ContourPaths]

    @classmethod
    def of(cls, face_model, targets: FitTargets, config: FitConfig) -> "_LandmarkTerm":
        device = face_model.mean_shape.device
        landmark_set = (targets.landmark_set or LandmarkSet.ibug68(face_model.landmark_ids)).to(device)
        weights, normaliser = L.set_landmark_weights(landmark_set, device)
        paths = ContourPaths.build(landmark_set, face_model) if config.slide_contour else None
        return cls(landmark_set, weights, normaliser, paths)

    def points(self, face_model, geometry, coeffs: Coeffs) -> torch.Tensor:
        """(M, P, 2) the set's points projected, y-down crop pixels (contour points
        re-picked on the current silhouette when sliding)."""
        return slid_points(self.landmark_set, self.paths, geometry.camera,
                           rotation_matrix(coeffs.angle), face_model.camera)


def _loss_terms(face_model, params: _Parameters, targets: FitTargets, level: _Level,
                config: FitConfig, identity: Optional[tuple[IdentityEncoder, torch.Tensor]],
                refresh_outliers: bool, landmark_term: _LandmarkTerm) -> dict[str, torch.Tensor]:
    """Unweighted per-image terms (M,) of the current coefficients at one level."""
    coeffs = params.coeffs()
    geometry = with_intrinsics(face_model.compute(coeffs), face_model.camera, face_model.landmark_ids,
                               targets.intrinsics)
    rendered, front = _render_face(face_model, geometry, level)
    if refresh_outliers:
        _update_outliers(config, rendered, front, level)
    interior = _without_outliers(L.photo_attention(front, level.skin), level)
    inputs = L.TermInputs(
        rendered=rendered.image, images=level.images, attention=_photo_attention(config, rendered, interior),
        landmarks=landmark_term.points(face_model, geometry, coeffs), target_landmarks=targets.landmarks,
        landmark_visibility=targets.landmark_visibility, landmark_weights=landmark_term.weights,
        landmark_normaliser=landmark_term.normaliser, coeffs=coeffs, albedo=geometry.albedo,
        skin_mask=face_model.skin_mask, contrast=_contrast_images(rendered, interior, level),
        features=_identity_features(face_model, geometry, level, identity))
    # A shared group's prior counts once for the set: one identity seen M times is one
    # draw from the prior.
    return L.loss_terms(inputs, config.weights, reduction="none",
                        shared_groups=SHARED_GROUPS if params.shared else (),
                        photo_robust_scale=config.robust_scale,
                        landmark_robust_scale=config.landmark_robust_scale)


def _identity_features(face_model, geometry, level: _Level,
                       identity: Optional[tuple[IdentityEncoder, torch.Tensor]]):
    """(render's, photos' target) identity features (M, D), or None without an encoder.
    The whole mesh is rendered over black, as training renders it."""
    if identity is None:
        return None
    encoder, target_features = identity
    full = level.renderer.render(geometry, face_model.triangles)
    return encoder(full.image, geometry.landmarks), target_features


def _set_learning_rates(optimizer: torch.optim.Optimizer, config: FitConfig, progress: float,
                        warmup: float = 1.0) -> None:
    """Cosine decay from the base rate to ``final_lr_fraction`` of it over each level: the
    L2-norm photometric term has a gradient of constant size near the optimum, so a
    constant Adam step would keep circling it. ``warmup`` in (0, 1] scales the first
    steps: Adam's first step moves every coefficient by the full rate at once."""
    factor = config.final_lr_fraction + (1 - config.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
    factor *= warmup
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def _converged(totals: list[float], window: int, rel_tol: float) -> bool:
    if len(totals) < 2 * window:
        return False
    previous = sum(totals[-2 * window:-window]) / window
    recent = sum(totals[-window:]) / window
    return (previous - recent) < rel_tol * abs(previous)


def _progress(total: int, show: bool):
    from tqdm import tqdm
    return tqdm(total=total, disable=not show, desc="fit", leave=False)


def _fit_level(face_model, params: _Parameters, targets: FitTargets, level: _Level, level_index: int,
               steps: int, optimizer: torch.optim.Optimizer, config: FitConfig, identity, result: FitResult,
               bar, landmark_term: _LandmarkTerm) -> Optional[torch.Tensor]:
    """Run one pyramid level (at most ``steps`` Adam steps); returns the last per-image totals."""
    use_identity = identity is not None and level.scale == max(config.pyramid_scales)
    totals: list[float] = []
    per_image = None
    for step in range(steps):
        warmup = min(1.0, (step + 1) / config.warmup_steps) if level_index == 0 else 1.0
        _set_learning_rates(optimizer, config, step / max(steps - 1, 1), warmup)
        refresh = config.outlier_threshold is not None and step % config.outlier_every == 0
        with_feat = use_identity and step % config.identity_every == 0
        terms = _loss_terms(face_model, params, targets, level, config,
                            identity if with_feat else None, refresh, landmark_term)
        per_image = L.total_loss(terms, config.weights)
        optimizer.zero_grad(set_to_none=True)
        per_image.sum().backward()
        optimizer.step()
        totals.append(float(per_image.detach().mean()))
        result.history.append(_history_row(level_index, level.scale, terms, config, totals[-1]))
        bar.update(1)
        if _converged(totals, config.stop_window, config.stop_rel_tol):
            break
    result.iterations.append(len(totals))
    return per_image


def _run(face_model, targets: FitTargets, init: Coeffs, config: FitConfig, shared: bool,
         identity_encoder: Optional[IdentityEncoder]) -> FitResult:
    start = time.perf_counter()
    device = face_model.mean_shape.device
    targets = targets.to(device)
    landmark_term = _LandmarkTerm.of(face_model, targets, config)
    params = _Parameters(init.map(lambda t: t.to(device)), config.optimize, shared)
    skin_full = _skin_attention(targets.images) if config.use_skin_attention else None
    identity = None
    if identity_encoder is not None:
        with torch.no_grad():
            identity = (identity_encoder, identity_encoder(targets.images, _encoder_landmarks(face_model, targets, init)))
    result = FitResult(coeffs=init)
    bar = _progress(sum(config.iterations), config.show_progress)
    # One optimiser for all levels: fresh Adam moments would restart with full-size steps
    # and undo part of the coarse level's progress.
    optimizer = params.optimizer(config.learning_rates)
    per_image = None
    try:
        for level_index, (scale, steps) in enumerate(zip(config.pyramid_scales, config.iterations)):
            if steps == 0:  # a resumed fit skips the levels it finished before
                result.iterations.append(0)
                continue
            level = _Level(face_model, targets, scale, config, skin_full)
            per_image = _fit_level(face_model, params, targets, level, level_index, steps,
                                   optimizer, config, identity, result, bar, landmark_term)
    except KeyboardInterrupt:
        bar.close()
        done = [sum(row["level"] == i for row in result.history) for i in range(len(config.iterations))]
        raise FitInterrupted(params.coeffs().map(lambda t: t.detach().clone()), done,
                             result.history) from None
    bar.close()
    result.coeffs = params.coeffs().map(lambda t: t.detach().clone())
    if config.refit_landmarks is not None:
        result.coeffs = refit_pose_expression(face_model, result.coeffs, targets.landmarks,
                                              config.refit_landmarks, landmark_set=targets.landmark_set,
                                              visibility=targets.landmark_visibility,
                                              intrinsics=targets.intrinsics)
    result.final_loss = None if per_image is None else per_image.detach()
    result.seconds = time.perf_counter() - start
    return result


def _encoder_landmarks(face_model, targets: FitTargets, init: Coeffs) -> torch.Tensor:
    """The 68 points an identity encoder aligns the target photos with: the detected ones
    for the iBUG 68 set; for another set, the start coefficients' 68 model landmarks
    (the encoder's alignment needs the iBUG order, the start was fitted to the set)."""
    if targets.landmark_set is None or targets.landmark_set.name == "ibug68":
        return targets.landmarks
    with torch.no_grad():
        return face_model.compute(init.map(lambda t: t.to(targets.images.device)), with_color=False).landmarks


def _history_row(level: int, scale: float, terms: dict, config: FitConfig, total: float) -> dict:
    row = {"level": level, "scale": scale, "total": total}
    for name, value in terms.items():
        row[name] = float(getattr(config.weights, name) * value.detach().mean())
    return row


def fit_images(face_model, targets: FitTargets, init: Coeffs, config: Optional[FitConfig] = None,
               identity_encoder: Optional[IdentityEncoder] = None) -> FitResult:
    """Per-image fit: every image's coefficients move independently.

    face_model: ``recon.face_model.FaceModel`` (its camera is the crop's; its device is
        where the fit runs, CPU or CUDA); targets: FitTargets of M images;
    init: (M, ...) start coefficients (R-Net outputs or the landmark initialiser);
    identity_encoder: optional callable (images (M,3,H,W) [0,1], landmarks (M,68,2) y-down)
        -> (M, D) features, differentiable; adds the SPEC 5 identity term at full scale
        (with a landmark set other than iBUG 68, the photos are aligned with the start's
        projected 68 model landmarks).
    The coefficient prior is ``config.per_image()``'s: ``weights.reg`` times
    ``per_image_prior_scale``.
    Returns FitResult with (M, ...) coefficients.
    """
    return _run(face_model, targets, init, (config or FitConfig()).per_image(), False, identity_encoder)


def fit_subject(face_model, targets: FitTargets, init: Coeffs, config: Optional[FitConfig] = None,
                identity_encoder: Optional[IdentityEncoder] = None) -> FitResult:
    """Joint fit of one person: one id and one tex shared by all M images (exactly: they are
    one (1, K) tensor each), expression, pose and lighting per image.

    init: (M, ...) start; its id and tex rows are averaged into the shared start (pass an
    aggregated identity in every row to start from it). Other arguments as ``fit_images``.
    Returns FitResult whose coeffs have identical id and tex rows.
    """
    return _run(face_model, targets, init, config or FitConfig(), True, identity_encoder)

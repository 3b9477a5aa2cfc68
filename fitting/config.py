"""Configuration of analysis-by-synthesis fitting."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from recon.constants import COEFF_GROUPS
from recon.landmark_fit import LandmarkFitConfig
from recon.losses import LossWeights

# The fitting defaults and why, in one line each; the measurements behind every choice (the
# tuning log) are in benchmarks/results/fit_eval.md (in-model sets) and
# benchmarks/results/fit_eval_photo.md (out-of-model sets, issue 12).
#
# Coefficient prior: 10x the in-model choice (1.5e-5), half training's 3e-4. On photos the
# model did not render, the photometric and landmark residuals are mostly what the model
# cannot express (specular, shadows, beards, a detector's misplaced points): with the weak
# prior the shared identity ran to 34-38 SD-norm (the truth projects to 13-20) and 4 of 18
# subjects ended worse than the mean face. 40x (6e-4) kept every subject of the tuning sets
# above the mean face but cost 38 % on the in-model joint fit and did not hold on held-out sets.
FIT_REG_WEIGHT = 1.5e-4
# A photo fitted alone pins its identity far less than a set: the per-image fit's
# coefficient prior is 4x the joint fit's (6e-4). Out-of-model sets, per-image gap closed
# (median over subjects): +18 % / -8 % (tuning seeds / held-out seeds) at 1x, +17.5 % / +14 %
# at 4x, and the real photos' landmark RMSE rise +0.48 -> +0.23 px (dlib's 68).
PER_IMAGE_PRIOR_SCALE = 4.0
FIT_LANDMARK_WEIGHT = 0.4e-3  # landmark term (training: 1.6e-3)
FIT_EXP_PRIOR_WEIGHT = 16.0   # inner weight of the expression prior (training: 0.8): shape goes to identity
SILHOUETTE_WEIGHT = 0.5       # photometric attention next to the face's outline (not the original's)
CONTRAST_WEIGHT = 2.0         # log-contrast term (``recon.losses.contrast_loss``, not the original's)
CONTRAST_SIGMA = 16.0         # its blur, pixels of the 224 crop
# Cauchy landmark penalty beyond 3 px (``recon.losses.landmark_loss``): a detector's points
# on beards, occluders and hair stop dragging the shape.
LANDMARK_ROBUST_SCALE = 3.0
# Photometric outlier mask: pixels whose colour residual exceeds 2.5x the image's median
# face residual leave the colour and contrast terms (specular highlights, cast shadows,
# stubble, glasses), refreshed every ``outlier_every`` steps.
OUTLIER_THRESHOLD = 2.5
# After the photometric levels, pose and expression are re-fitted to the landmarks with the
# identity and colour kept (``recon.landmark_fit.refit_pose_expression``): the photometric
# terms and the fit's strong priors pull the posed face off the points (real example
# photos: 1.34 -> 3.43 px against mediapipe's points, 1.97 -> 5.23 px against dlib's 68),
# while the neutral identity, which the benchmarks score, is what they improve. The refit's
# expression prior is a tenth of the initialiser's: the identity no longer moves, and the
# point residual it would have absorbed goes to the expression (1.66 -> 1.48 px, 2.95 ->
# 2.45 px against the initialiser's prior; benchmarks/results/fit_eval_photo.md).
REFIT_EXP_PRIOR = 0.1
# Sliding contour points (``recon.contour``): off, see benchmarks/results/contour_sliding.md.
SLIDE_CONTOUR = False


@dataclass
class FitConfig:
    """How a fit runs.

    pyramid_scales: image scales of the coarse-to-fine levels, coarse first (1.0 = the
        224 crop); iterations: Adam steps per level (an upper bound, see the stopping rule).
    learning_rates: Adam step size per coefficient group (coefficients are in standard
        deviations, angles in radians, translation in dm, so these are per-unit steps).
    warmup_steps: the first level's rates ramp up linearly over this many steps.
    final_lr_fraction: each level's learning rates fall (cosine) from the base value to
        this fraction of it.
    weights: the loss weights: the original's (SPEC 5) except the coefficient prior and
        the landmark term and the expression prior's inner weight (FIT_REG_WEIGHT,
        FIT_LANDMARK_WEIGHT, FIT_EXP_PRIOR_WEIGHT, see there), plus the log-contrast
        term (CONTRAST_WEIGHT), which is not the original's.
    optimize: the groups that move; a per-image fit of a set whose identity is fixed
        drops "id" and "tex".
    stop_rel_tol / stop_window: a level ends when the mean total loss of the last
        ``stop_window`` steps improved by less than ``stop_rel_tol`` (relative) on the
        mean of the window before.
    landmark_robust_scale: pixels (224 crop) beyond which a landmark's squared distance
        becomes the Cauchy penalty (LANDMARK_ROBUST_SCALE); None: the original's squares.
    robust_scale: scale of the robust photometric penalty (colour distance in [0, 1]
        units); None uses the original's plain norm.
    outlier_threshold: if set, pixels whose colour residual exceeds this multiple of the
        image's median face residual are dropped from the photometric attention (an
        outlier mask, refreshed at every ``outlier_every`` steps); None disables it.
    use_skin_attention: weight pixels by the skin posterior of the target (SPEC 5, 6.5).
    silhouette_weight: photometric attention of the pixels next to the face's silhouette
        (beyond the original, see SILHOUETTE_WEIGHT); the whole mesh is then rendered
        antialiased over the photo. None keeps the original's term: front triangles only,
        whose silhouette gets no gradient and may cover background for free (the skin
        attention is low there).
    contrast_sigma: std (pixels of the 224 crop, scaled with each pyramid level) of the
        blur that ``recon.losses.log_contrast`` takes away; the term's weight is
        ``weights.contrast`` (CONTRAST_WEIGHT; 0 switches it off).
    identity_every: evaluate the identity-feature term every k steps of the finest level
        (it costs a CNN forward/backward); only when an encoder is given.
    slide_contour: the landmark set's contour points (the iBUG jaw line, mediapipe's face
        oval) slide along the model's silhouette (``recon.contour``), re-picked at every
        step; off by default, see SLIDE_CONTOUR.
    per_image_prior_scale: ``fit_images`` multiplies the coefficient prior (``weights.reg``)
        by this (PER_IMAGE_PRIOR_SCALE); the joint fit keeps ``weights.reg``.
    refit_landmarks: after the last level, pose and expression are re-fitted to the
        landmarks with identity, colour and lighting kept, by the landmark initialiser's
        solver with this configuration (see REFIT_EXP_PRIOR); None: the fit ends with the
        last Adam step.
    """

    pyramid_scales: tuple[float, ...] = (0.25, 0.5, 1.0)
    iterations: tuple[int, ...] = (80, 30, 20)
    learning_rates: dict[str, float] = field(default_factory=lambda: {
        "id": 0.1, "exp": 0.06, "tex": 0.1, "angle": 0.008, "gamma": 0.04, "trans": 0.008})
    final_lr_fraction: float = 0.1
    warmup_steps: int = 5
    optimize: tuple[str, ...] = COEFF_GROUPS
    weights: LossWeights = field(default_factory=lambda: LossWeights(
        reg=FIT_REG_WEIGHT, lm=FIT_LANDMARK_WEIGHT, reg_exp=FIT_EXP_PRIOR_WEIGHT, contrast=CONTRAST_WEIGHT))
    contrast_sigma: float = CONTRAST_SIGMA
    stop_rel_tol: float = 2e-3
    stop_window: int = 5
    robust_scale: float | None = 0.1
    landmark_robust_scale: float | None = LANDMARK_ROBUST_SCALE
    outlier_threshold: float | None = OUTLIER_THRESHOLD
    outlier_every: int = 10
    use_skin_attention: bool = True
    silhouette_weight: float | None = SILHOUETTE_WEIGHT
    identity_every: int = 1
    slide_contour: bool = SLIDE_CONTOUR
    per_image_prior_scale: float = PER_IMAGE_PRIOR_SCALE
    refit_landmarks: LandmarkFitConfig | None = field(
        default_factory=lambda: LandmarkFitConfig(exp_weight=REFIT_EXP_PRIOR))
    renderer_backend: str = "auto"
    show_progress: bool = False

    def __post_init__(self) -> None:
        if len(self.pyramid_scales) != len(self.iterations):
            raise ValueError("pyramid_scales and iterations need one entry per level")
        unknown = set(self.optimize) - set(COEFF_GROUPS)
        if unknown:
            raise ValueError(f"unknown coefficient groups to optimise: {sorted(unknown)}")
        if any(not 0 < s <= 1 for s in self.pyramid_scales):
            raise ValueError("pyramid scales must be in (0, 1]")
        if self.contrast_sigma <= 0:
            raise ValueError(f"contrast_sigma must be positive, got {self.contrast_sigma}")
        if self.per_image_prior_scale <= 0:
            raise ValueError(f"per_image_prior_scale must be positive, got {self.per_image_prior_scale}")

    def per_image(self) -> "FitConfig":
        """The configuration ``fit_images`` runs: the coefficient prior times
        ``per_image_prior_scale``."""
        return replace(self, weights=replace(self.weights, reg=self.weights.reg * self.per_image_prior_scale),
                       per_image_prior_scale=1.0)

    def with_total_iterations(self, total: int) -> "FitConfig":
        """The same schedule rescaled so the levels sum to about ``total`` steps."""
        if total < len(self.iterations):
            raise ValueError(f"need at least {len(self.iterations)} iterations, got {total}")
        base = sum(self.iterations)
        counts = tuple(max(1, round(n * total / base)) for n in self.iterations)
        return replace(self, iterations=counts)

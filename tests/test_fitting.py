"""fitting: recovery on model-made images, shared identity, falling loss, occlusion.

A 112-pixel camera (the original's at half scale) and the embedded model at its coarsest
resolution keep these fast."""

import copy
from dataclasses import replace

import pytest
import torch

from fitting import FitConfig, FitTargets, fit_images, fit_subject
from recon.face_model import FaceModel
from recon.losses import LossWeights
from recon.render import MeshRenderer
from recon.types import Camera, Coeffs

SMALL_CAMERA = Camera().scaled(0.5)


@pytest.fixture(scope="module")
def face_model(tiny_model):
    torch.manual_seed(0)
    return FaceModel(tiny_model, camera=SMALL_CAMERA)


def _truth(face_model, count, seed=0, shared_id=True):
    g = torch.Generator().manual_seed(seed)
    s = face_model.coeff_sizes
    gamma = torch.zeros(count, 27)
    gamma[:, [0, 9, 18]] = 0.1
    gamma[:, [2, 11, 20]] = 0.15
    id_c = 0.6 * torch.randn(1 if shared_id else count, s["id"], generator=g)
    return Coeffs.zeros(count, s).replace(
        id=id_c.expand(count, -1).clone(), tex=(0.5 * torch.randn(1, s["tex"], generator=g)).expand(count, -1).clone(),
        exp=0.4 * torch.randn(count, s["exp"], generator=g),
        angle=torch.stack([0.1 * torch.randn(count, generator=g), torch.linspace(-0.5, 0.5, count),
                           torch.zeros(count)], 1),
        gamma=gamma)


def _render(face_model, coeffs, background=0.4):
    geometry = face_model.compute(coeffs)
    out = MeshRenderer(face_model.camera).render(geometry, face_model.triangles)
    return (out.image + (1 - out.mask) * background).clamp(0, 1), geometry.landmarks


def _perturbed(truth, seed=1):
    g = torch.Generator().manual_seed(seed)
    return truth.replace(id=truth.id + 0.3 * torch.randn(truth.id.shape, generator=g),
                         exp=truth.exp + 0.2 * torch.randn(truth.exp.shape, generator=g),
                         tex=torch.zeros_like(truth.tex), gamma=torch.zeros_like(truth.gamma),
                         angle=truth.angle + 0.03, trans=truth.trans + 0.02)


def _posed_error(face_model, a, b):
    """Mean vertex distance (model units) of the posed faces over the skin vertices."""
    wa, wb = face_model.compute(a).world, face_model.compute(b).world
    return float((wa - wb).norm(dim=-1)[:, face_model.skin_mask].mean())


NO_CONTRAST = replace(FitConfig().weights, contrast=0.0)
EXACT = FitConfig(pyramid_scales=(0.5, 1.0), iterations=(40, 50), robust_scale=None,
                  use_skin_attention=False, stop_rel_tol=-1.0,
                  weights=LossWeights(reg=1e-6, reflc=0.0, gamma=0.0))


@pytest.fixture(scope="module")
def exact_fit(face_model):
    """A model-made image (no detail, no noise) fitted from a perturbed start."""
    truth = _truth(face_model, 2)
    images, landmarks = _render(face_model, truth)
    init = _perturbed(truth)
    return truth, init, fit_images(face_model, FitTargets(images, landmarks), init, EXACT)


def test_fit_recovers_coefficients_of_a_model_image(face_model, exact_fit):
    truth, init, result = exact_fit
    fitted = result.coeffs
    # 90 Adam steps on a 112-px image: pose, light and the posed surface come back; id and
    # exp trade off against each other, so the coefficients themselves are not compared
    assert _posed_error(face_model, fitted, truth) < 0.8 * _posed_error(face_model, init, truth)
    assert float((fitted.angle - truth.angle).abs().mean()) < 0.5 * float((init.angle - truth.angle).abs().mean())
    assert float((fitted.gamma - truth.gamma).abs().mean()) < 0.8 * float((init.gamma - truth.gamma).abs().mean())
    albedo_error = (face_model.albedo(fitted.tex) - face_model.albedo(truth.tex)).abs().mean()
    assert float(albedo_error) < 0.9 * float((face_model.albedo(init.tex) - face_model.albedo(truth.tex)).abs().mean())
    assert result.history[-1]["color"] < 0.1 * result.history[0]["color"]


def test_loss_falls_on_average_and_history_is_complete(exact_fit):
    result = exact_fit[2]
    assert len(result.history) == sum(result.iterations)
    for level in range(2):
        totals = [h["total"] for h in result.history if h["level"] == level]
        windows = [sum(totals[i:i + 5]) / 5 for i in range(0, len(totals) - 4, 5)]
        assert all(b < a for a, b in zip(windows, windows[1:])), windows
    # EXACT weighs reflectance, gamma and contrast zero: those terms are left out, not logged as zeros
    assert set(result.history[0]) == {"level", "scale", "total", "color", "lm", "reg"}


def test_joint_fit_shares_identity_exactly(face_model):
    truth = _truth(face_model, 3, seed=5)
    images, landmarks = _render(face_model, truth)
    init = _perturbed(truth, 6)
    config = FitConfig(pyramid_scales=(0.5,), iterations=(8,), use_skin_attention=False)
    result = fit_subject(face_model, FitTargets(images, landmarks), init, config)
    for group in ("id", "tex"):
        rows = getattr(result.coeffs, group)
        assert all(torch.equal(rows[0], rows[k]) for k in range(1, 3))
    assert not torch.equal(result.coeffs.exp[0], result.coeffs.exp[1])
    # the shared start is the mean of the given rows
    per_image = fit_images(face_model, FitTargets(images, landmarks), init,
                           FitConfig(pyramid_scales=(0.5,), iterations=(1,), use_skin_attention=False))
    assert not torch.equal(per_image.coeffs.id[0], per_image.coeffs.id[1])


def test_landmark_refit_moves_only_pose_and_expression_towards_the_points(face_model):
    truth = _truth(face_model, 2, seed=9)
    images, landmarks = _render(face_model, truth)
    targets = FitTargets(images, landmarks + torch.randn(landmarks.shape, generator=torch.Generator().manual_seed(3)))
    config = FitConfig(pyramid_scales=(0.5,), iterations=(10,), use_skin_attention=False)
    refitted = fit_images(face_model, targets, _perturbed(truth), config).coeffs
    plain = fit_images(face_model, targets, _perturbed(truth), replace(config, refit_landmarks=None)).coeffs
    for group in ("id", "tex", "gamma"):
        assert torch.equal(getattr(refitted, group), getattr(plain, group))

    def rmse(coeffs):
        return float((face_model.compute(coeffs).landmarks - targets.landmarks).norm(dim=-1).square().mean().sqrt())
    assert rmse(refitted) < rmse(plain)


def test_stopping_rule_ends_a_converged_level_early(face_model):
    truth = _truth(face_model, 1, seed=7)
    images, landmarks = _render(face_model, truth)
    config = FitConfig(pyramid_scales=(0.5,), iterations=(60,), stop_rel_tol=0.5, stop_window=3,
                       use_skin_attention=False)
    result = fit_images(face_model, FitTargets(images, landmarks), truth, config)
    assert result.iterations[0] < 60


def test_large_occluder_keeps_landmarks_outside_it(face_model):
    truth = _truth(face_model, 1, seed=8)
    images, landmarks = _render(face_model, truth)
    lm = landmarks[0]
    # a block over the image-left half of the face, including an eye and the mouth corner
    x0, x1 = int(lm[:, 0].min()) - 2, int(lm[:, 0].mean())
    y0, y1 = int(lm[:, 1].min()) - 2, int(lm[:, 1].max()) + 2
    occluded = images.clone()
    occluded[0, 0, y0:y1, x0:x1], occluded[0, 1, y0:y1, x0:x1], occluded[0, 2, y0:y1, x0:x1] = 0.1, 0.8, 0.2
    inside = (lm[:, 0] >= x0) & (lm[:, 0] < x1) & (lm[:, 1] >= y0) & (lm[:, 1] < y1)
    assert 15 < int(inside.sum()) < 50
    # a detector cannot see the hidden points: give them zero weight
    visibility = (~inside).float()[None]
    # The in-model prior: on an exact render the default prior's shrinkage (tuned for photos
    # the model did not make) costs ~0.1 px by itself, which is not what this test measures.
    weights = replace(FitConfig().weights, reg=1.5e-5)
    config = FitConfig(pyramid_scales=(0.5, 1.0), iterations=(25, 25), outlier_threshold=3.0, outlier_every=5,
                       weights=weights)
    init = _perturbed(truth, 9)
    result = fit_images(face_model, FitTargets(occluded, landmarks, visibility), init, config)
    fitted_lm = face_model.compute(result.coeffs).landmarks[0]
    error = (fitted_lm - lm).norm(dim=-1)
    assert float(error[~inside].mean()) < 1.0          # px of the 112 image
    assert float(error[inside].mean()) < 3.0           # the prior carries the hidden ones


def test_silhouette_term_finds_a_face_only_its_outline_shows(tiny_model):
    """A flat-coloured face under ambient light over a dark background, landmarks hidden:
    inside the face every position looks the same, only the outline tells where it is.
    The original's interior-only term cannot move it; the silhouette term brings it back."""
    flat = FaceModel(copy.deepcopy(tiny_model), camera=SMALL_CAMERA)
    flat.mean_albedo[:] = flat.mean_albedo.view(-1, 3).mean(0).repeat(flat.n_vertices)
    truth = Coeffs.zeros(1, flat.coeff_sizes)
    truth.gamma[:, [0, 9, 18]] = 0.2            # ambient (constant) light only
    images, landmarks = _render(flat, truth, background=0.1)
    start = truth.replace(trans=truth.trans + torch.tensor([[0.08, -0.05, 0.0]]))   # ~4 px off
    hidden = FitTargets(images, landmarks, landmark_visibility=torch.zeros(1, 68))
    errors = {}
    for weight in (None, 0.5):
        config = FitConfig(pyramid_scales=(0.5, 1.0), iterations=(30, 30), optimize=("trans",),
                           silhouette_weight=weight, stop_rel_tol=-1.0, weights=NO_CONTRAST)
        result = fit_images(flat, hidden, start, config)
        errors[weight] = float((result.coeffs.trans - truth.trans).norm())
    start_error = float((start.trans - truth.trans).norm())
    assert errors[None] == pytest.approx(start_error, rel=1e-3)
    assert errors[0.5] < 0.15 * start_error


def test_contrast_term_alone_brings_a_shaded_face_back(face_model):
    """Colour term off, landmarks hidden: the log-contrast images of render and photo alone
    pull a face that starts about 4 px off back to where the photo's shading shows it."""
    truth = _truth(face_model, 1, seed=13)
    images, landmarks = _render(face_model, truth)
    start = truth.replace(trans=truth.trans + torch.tensor([[0.08, -0.05, 0.0]]))
    hidden = FitTargets(images, landmarks, landmark_visibility=torch.zeros(1, 68))
    config = FitConfig(pyramid_scales=(0.5, 1.0), iterations=(30, 30), optimize=("trans",),
                       silhouette_weight=None, stop_rel_tol=-1.0, use_skin_attention=False,
                       weights=replace(NO_CONTRAST, color=0.0, contrast=2.0))
    result = fit_images(face_model, hidden, start, config)
    assert "contrast" in result.history[0]
    error = float((result.coeffs.trans - truth.trans).norm())
    assert error < 0.2 * float((start.trans - truth.trans).norm())


def test_contrast_term_is_in_the_history_unless_switched_off(face_model):
    truth = _truth(face_model, 1, seed=14)
    images, landmarks = _render(face_model, truth)
    for weights, present in ((FitConfig().weights, True), (NO_CONTRAST, False)):
        config = FitConfig(pyramid_scales=(0.5,), iterations=(2,), weights=weights)
        result = fit_images(face_model, FitTargets(images, landmarks), truth, config)
        assert ("contrast" in result.history[0]) == present


def test_bad_targets_raise(face_model):
    with pytest.raises(ValueError, match="landmarks"):
        FitTargets(torch.zeros(2, 3, 8, 8), torch.zeros(1, 68, 2))
    with pytest.raises(ValueError, match="groups"):
        FitConfig(optimize=("id", "shape"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_matches_cpu(face_model, tiny_model):
    truth = _truth(face_model, 2, seed=10)
    images, landmarks = _render(face_model, truth)
    init = _perturbed(truth, 11)
    config = FitConfig(pyramid_scales=(0.5, 1.0), iterations=(5, 5), stop_rel_tol=-1.0, renderer_backend="torch")
    cpu = fit_images(face_model, FitTargets(images, landmarks), init, config)
    gpu_model = FaceModel(tiny_model, camera=SMALL_CAMERA).to("cuda")
    gpu = fit_images(gpu_model, FitTargets(images.cuda(), landmarks.cuda()), init.map(lambda t: t.cuda()), config)
    assert gpu.coeffs.id.device.type == "cuda"
    for group in Coeffs.GROUPS:
        torch.testing.assert_close(getattr(gpu.coeffs, group).cpu(), getattr(cpu.coeffs, group),
                                   atol=2e-3, rtol=1e-2)
    joint = fit_subject(gpu_model, FitTargets(images.cuda(), landmarks.cuda()), init.map(lambda t: t.cuda()), config)
    assert torch.equal(joint.coeffs.id[0], joint.coeffs.id[1])


def test_identity_term_enters_the_fit(face_model, tiny_model):
    """With a face-recognition encoder the SPEC 5 identity term is evaluated at full scale
    and is a valid 1 - cos value; gradients reach the coefficients through the render."""
    from recon.identity import load_identity_encoder
    try:
        encoder = load_identity_encoder("dlib")
    except (FileNotFoundError, ImportError) as err:
        pytest.skip(f"no dlib identity network: {err}")
    truth = _truth(face_model, 1, seed=12)
    # the dlib chip needs a face of some size: the same model with the full 224 camera
    big = FaceModel(tiny_model)
    images, landmarks = _render(big, truth)
    config = FitConfig(pyramid_scales=(1.0,), iterations=(2,), stop_rel_tol=-1.0, use_skin_attention=False)
    result = fit_images(big, FitTargets(images, landmarks), _perturbed(truth, 13), config, identity_encoder=encoder)
    values = [h["feat"] / config.weights.feat for h in result.history]
    assert len(values) == 2 and all(0.0 <= v <= 2.0 for v in values)


def test_fit_with_a_dense_sliding_set_lowers_its_landmark_term(face_model):
    """End to end through fit_images (kept short; the term's gradient is checked in
    test_contour, pose recovery with sliding in test_landmark_fit): 200 surface points of a
    turned face, the 40 outermost flagged contour and given where the silhouette puts them;
    from a start 0.05 dm and 0.05 rad off, a few steps lower the landmark term."""
    from recon.contour import ContourPaths, slid_points
    from recon.face_model import rotation_matrix
    from recon.landmark_set import LandmarkSet
    g = torch.Generator().manual_seed(21)
    triangles = face_model.front_triangles[torch.randint(0, face_model.front_triangles.shape[0], (200,), generator=g)]
    bary = torch.rand(200, 3, generator=g) + 0.05
    contour = torch.zeros(200, dtype=torch.bool)
    contour[face_model.mean_shape.view(-1, 3)[triangles[:, 0], 0].abs().argsort(descending=True)[:40]] = True
    dense = LandmarkSet("dense-test", triangles, bary / bary.sum(1, keepdim=True), torch.ones(200), contour)
    truth = _truth(face_model, 1, seed=22)
    images, _ = _render(face_model, truth)
    geometry = face_model.compute(truth)
    targets = slid_points(dense, ContourPaths.build(dense, face_model), geometry.camera,
                          rotation_matrix(truth.angle), face_model.camera)
    start = truth.replace(trans=truth.trans + 0.05, angle=truth.angle + 0.05)
    config = FitConfig(pyramid_scales=(0.25,), iterations=(12,), optimize=("angle", "trans"), stop_rel_tol=-1.0,
                       slide_contour=True, weights=replace(NO_CONTRAST, color=0.0, lm=1e-3))
    result = fit_images(face_model, FitTargets(images, targets, landmark_set=dense), start, config)
    assert result.history[-1]["lm"] < 0.5 * result.history[0]["lm"]

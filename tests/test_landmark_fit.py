"""The landmark initialiser recovers known pose and shape from synthetic landmarks."""

import math

import numpy as np
import pytest
import torch

from recon.face_model import FaceModel, rotation_matrix
from recon.landmark_fit import (LandmarkFitConfig, estimate_lighting, euler_from_rotation, fit_landmarks,
                                refit_pose_expression)
from recon.morphable import MorphableModel, incident_triangles
from recon.types import Coeffs



def synthetic_batch(fm, seed=0):
    gen = torch.Generator().manual_seed(seed)
    coeffs = Coeffs.zeros(4, fm.coeff_sizes)
    coeffs.id = torch.randn(4, 5, generator=gen) * 0.5
    coeffs.exp = torch.randn(4, 4, generator=gen) * 0.5
    coeffs.angle = torch.tensor([[0.1, 0.3, 0.05], [-0.2, -0.6, 0.0], [0.0, 0.0, 0.0], [0.05, 0.9, -0.1]])
    coeffs.trans = torch.tensor([[0.1, -0.05, 0.3], [0.0, 0.0, -0.5], [0.0, 0.0, 0.0], [0.2, 0.1, 1.0]])
    return coeffs


def test_euler_round_trip():
    angles = torch.tensor([[0.3, -0.7, 1.1], [-1.0, 0.2, -2.5]])
    torch.testing.assert_close(euler_from_rotation(rotation_matrix(angles)), angles)


def test_recovers_pose_and_shape_from_exact_landmarks(octahedron_model):
    fm = FaceModel(octahedron_model, recenter=False)
    truth = synthetic_batch(fm)
    target = fm.compute(truth).landmarks
    # weak priors: with exact landmarks the MAP estimate approaches the truth
    fit = fit_landmarks(fm, target, LandmarkFitConfig(sigma_px=0.01, lm_iterations=15))
    torch.testing.assert_close(fit.angle, truth.angle, atol=2e-3, rtol=0)
    torch.testing.assert_close(fit.trans, truth.trans, atol=2e-2, rtol=0)
    torch.testing.assert_close(fit.id, truth.id, atol=0.05, rtol=0)
    residual = (fm.compute(fit).landmarks - target).norm(dim=-1)
    assert residual.max() < 0.05


def test_noisy_landmarks_give_a_plausible_fit(octahedron_model):
    fm = FaceModel(octahedron_model, recenter=False)
    truth = synthetic_batch(fm, seed=1)
    target = fm.compute(truth).landmarks + torch.randn(4, 68, 2, generator=torch.Generator().manual_seed(2))
    fit = fit_landmarks(fm, target)
    assert (fit.angle - truth.angle).abs().max() < 0.05
    assert (fm.compute(fit).landmarks - target).norm(dim=-1).mean() < 1.5


def test_refit_recovers_pose_and_expression_with_the_identity_kept(octahedron_model):
    fm = FaceModel(octahedron_model, recenter=False)
    truth = synthetic_batch(fm, seed=3)
    truth.tex = torch.randn(truth.tex.shape, generator=torch.Generator().manual_seed(4))
    target = fm.compute(truth).landmarks
    start = truth.replace(angle=truth.angle + 0.1, trans=truth.trans * 0.5, exp=torch.zeros_like(truth.exp))
    refit = refit_pose_expression(fm, start, target, LandmarkFitConfig(sigma_px=0.01, lm_iterations=15))
    assert torch.equal(refit.id, truth.id) and torch.equal(refit.tex, truth.tex)
    assert torch.equal(refit.gamma, truth.gamma)
    torch.testing.assert_close(refit.angle, truth.angle, atol=2e-3, rtol=0)
    torch.testing.assert_close(refit.exp, truth.exp, atol=0.05, rtol=0)
    assert (fm.compute(refit).landmarks - target).norm(dim=-1).max() < 0.05


def test_refit_with_a_wrong_identity_does_not_move_away_from_the_points(octahedron_model):
    fm = FaceModel(octahedron_model, recenter=False)
    truth = synthetic_batch(fm, seed=5)
    target = fm.compute(truth).landmarks
    start = truth.replace(id=truth.id + 0.5)
    refit = refit_pose_expression(fm, start, target)
    before = (fm.compute(start).landmarks - target).norm(dim=-1).mean()
    after = (fm.compute(refit).landmarks - target).norm(dim=-1).mean()
    assert torch.equal(refit.id, start.id)
    assert after < before


def sphere_model(n_lat=40, n_lon=80, radius=0.8) -> MorphableModel:
    lat = torch.linspace(0.05, math.pi - 0.05, n_lat)
    lon = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    verts = radius * torch.stack([la.sin() * lo.sin(), la.cos(), la.sin() * lo.cos()], -1).reshape(-1, 3)
    idx = torch.arange(n_lat * n_lon).view(n_lat, n_lon)
    a, b = idx[:-1], idx[:-1].roll(-1, 1)
    c, d = idx[1:], idx[1:].roll(-1, 1)
    tri = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    n = verts.shape[0]
    return MorphableModel(
        name="sphere", mean_shape=verts, id_basis=torch.zeros(3 * n, 1), exp_basis=torch.zeros(3 * n, 1),
        mean_albedo=torch.full((n, 3), 180.0), tex_basis=torch.zeros(3 * n, 1), triangles=tri,
        landmark_ids=torch.arange(68), point_buf=incident_triangles(tri, n),
        front_vertex_ids=torch.arange(n), front_triangles=tri, skin_mask=torch.ones(n, dtype=torch.bool))


def test_lighting_is_recovered_from_an_image_of_the_face_colours():
    """Fill an image with the lit colour of the nearest visible vertex; fit the light back."""
    from scipy.interpolate import griddata
    fm = FaceModel(sphere_model(), recenter=False)
    coeffs = Coeffs.zeros(1, fm.coeff_sizes)
    gen = torch.Generator().manual_seed(3)
    coeffs.gamma = torch.randn(1, 27, generator=gen) * 0.08
    geo = fm.compute(coeffs)
    front = geo.normals[0, :, 2] > 0
    pts = fm.camera.project(geo.camera[0, front])
    grid_y, grid_x = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    channels = [griddata(pts.numpy(), geo.color[0, front, c].numpy(), (grid_x.numpy(), grid_y.numpy()),
                         method="linear", fill_value=0.0) for c in range(3)]
    image = torch.tensor(np.stack(channels), dtype=torch.float32)[None]
    gamma = estimate_lighting(fm, coeffs, image, ridge=1e-6)
    torch.testing.assert_close(gamma, coeffs.gamma, atol=0.03, rtol=0)


def test_lighting_of_a_face_outside_the_crop_is_the_ambient_default():
    """No visible skin vertex (a start turned away from the camera, as an extreme-yaw photo's
    can be): gamma 0, not a singular solve."""
    fm = FaceModel(sphere_model(), recenter=False)
    coeffs = Coeffs.zeros(2, fm.coeff_sizes)
    coeffs.trans = torch.tensor([[30.0, 0.0, 0.0], [0.0, 0.0, 0.0]])   # the first far off the crop
    gamma = estimate_lighting(fm, coeffs, torch.full((2, 3, 224, 224), 0.5))
    assert torch.isfinite(gamma).all()
    torch.testing.assert_close(gamma[0], torch.zeros(27))
    assert gamma[1].abs().sum() > 0


# ----------------------------------------------------------------- landmark sets, sliding

def _embedded_without_size_mode(model):
    """The embedded model (coarse) with 10 id and 6 expression modes, without the overall
    size mode: a larger, nearer face and a smaller, farther one project alike under a
    narrow-angle camera, so the size mode is left out where exact recovery is asserted."""
    from dataclasses import replace as replace_fields
    return FaceModel(replace_fields(model, id_basis=model.id_basis[:, 1:11].contiguous(),
                                    exp_basis=model.exp_basis[:, :6].contiguous(),
                                    tex_basis=model.tex_basis[:, :4].contiguous()))


def _dense_set(fm, count=300, contour_count=40, seed=0):
    """Random points on random front triangles with random barycentrics; the points
    furthest from the midline are flagged contour."""
    from recon.landmark_set import LandmarkSet
    g = torch.Generator().manual_seed(seed)
    triangles = fm.front_triangles[torch.randint(0, fm.front_triangles.shape[0], (count,), generator=g)]
    bary = torch.rand(count, 3, generator=g) + 0.05
    bary = bary / bary.sum(1, keepdim=True)
    contour = torch.zeros(count, dtype=torch.bool)
    side = fm.mean_shape.view(-1, 3)[triangles[:, 0], 0].abs()
    contour[side.argsort(descending=True)[:contour_count]] = True
    return LandmarkSet("dense-test", triangles, bary, torch.ones(count), contour)


def _dense_truth(fm):
    g = torch.Generator().manual_seed(0)
    coeffs = Coeffs.zeros(4, fm.coeff_sizes)
    coeffs.id = torch.randn(coeffs.id.shape, generator=g) * 0.5
    coeffs.exp = torch.randn(coeffs.exp.shape, generator=g) * 0.5
    coeffs.angle = torch.tensor([[0.1, 0.3, 0.05], [-0.2, -0.6, 0.0], [0.0, 0.0, 0.0], [0.05, 0.7, -0.1]])
    coeffs.trans = torch.tensor([[0.1, -0.05, 0.3], [0.0, 0.0, -0.5], [0.0, 0.0, 0.0], [0.2, 0.1, 1.0]])
    return coeffs


def _set_projections(fm, coeffs, landmark_set, slide):
    from recon.contour import ContourPaths, slid_points
    paths = ContourPaths.build(landmark_set, fm) if slide else None
    return slid_points(landmark_set, paths, fm.compute(coeffs).camera, rotation_matrix(coeffs.angle), fm.camera)


def _assert_recovered(fm, fit, truth):
    torch.testing.assert_close(fit.angle, truth.angle, atol=1e-4, rtol=0)
    torch.testing.assert_close(fit.trans, truth.trans, atol=3e-2, rtol=0)
    vertex_error = (fm.shape(fit.id, fit.exp) - fm.shape(truth.id, truth.exp)).norm(dim=-1).mean(1)
    assert float(vertex_error.max()) < 0.015   # dm: 1.5 mm mean over the mesh


@pytest.mark.parametrize("slide", [False, True])
def test_dense_set_recovers_pose_and_shape_from_exact_projections(slide, tiny_model):
    """300 surface points: exact projections of a known face (contour points on its
    silhouette when sliding) give back its pose and shape; with sliding targets, a fit
    that does not slide cannot explain them."""
    fm = _embedded_without_size_mode(tiny_model)
    landmark_set = _dense_set(fm)
    truth = _dense_truth(fm)
    target = _set_projections(fm, truth, landmark_set, slide)
    config = LandmarkFitConfig(sigma_px=0.01, lm_iterations=15, slide_contour=slide)
    fit = fit_landmarks(fm, target, config, landmark_set=landmark_set)
    _assert_recovered(fm, fit, truth)
    assert float((_set_projections(fm, fit, landmark_set, slide) - target).norm(dim=-1).max()) < 0.01
    if slide:
        fixed = fit_landmarks(fm, target, LandmarkFitConfig(sigma_px=0.01, lm_iterations=15), landmark_set=landmark_set)
        assert float((_set_projections(fm, fixed, landmark_set, False) - target).norm(dim=-1).max()) > 5.0


def test_the_68_set_is_the_default_and_visibility_weights_points(octahedron_model):
    from recon.landmark_set import LandmarkSet
    fm = FaceModel(octahedron_model, recenter=False)
    truth = synthetic_batch(fm, seed=1)
    target = fm.compute(truth).landmarks + torch.randn(4, 68, 2, generator=torch.Generator().manual_seed(2))
    default = fit_landmarks(fm, target)
    explicit = fit_landmarks(fm, target, landmark_set=LandmarkSet.ibug68(fm.landmark_ids, contour_weight=0.5))
    for group in Coeffs.GROUPS:
        assert torch.equal(getattr(default, group), getattr(explicit, group))
    # a point marked invisible is a point of weight zero
    visibility = torch.ones(4, 68)
    visibility[:, 40:48] = 0.0
    weights = torch.ones(68)
    weights[:17] = 0.5
    weights[40:48] = 0.0
    hidden = fit_landmarks(fm, target, visibility=visibility)
    zero_weight = fit_landmarks(fm, target, landmark_set=LandmarkSet.from_vertices("ibug68", fm.landmark_ids, weights))
    torch.testing.assert_close(hidden.id, zero_weight.id, atol=1e-4, rtol=0)
    torch.testing.assert_close(hidden.angle, zero_weight.angle, atol=1e-5, rtol=0)
    assert float((hidden.id - default.id).abs().max()) > 1e-3


def test_landmark_count_must_match_the_set(octahedron_model):
    from recon.landmark_set import LandmarkSet
    fm = FaceModel(octahedron_model, recenter=False)
    dense = LandmarkSet.from_vertices("dense", torch.arange(70))
    with pytest.raises(ValueError, match=r"must be \(M, 70, 2\) for a landmark set of 70 points, got \(2, 68, 2\)"):
        fit_landmarks(fm, torch.zeros(2, 68, 2), landmark_set=dense)
    with pytest.raises(ValueError, match=r"visibility must be \(2, 68\)"):
        fit_landmarks(fm, torch.zeros(2, 68, 2), visibility=torch.ones(2, 70))


# ----------------------------------------------------------------- each photo's own camera

def test_selfie_camera_intrinsics_recover_the_face_and_the_default_camera_does_not(tiny_model):
    """Landmarks of faces seen from 3.5 dm with a wide lens (focal 355 px in the crop,
    principal point off centre): given those intrinsics the fit recovers pose and shape;
    with the original's 1 m camera it cannot explain the perspective."""
    from recon.crop_camera import with_intrinsics
    fm = _embedded_without_size_mode(tiny_model)
    truth = _dense_truth(fm)
    truth.trans = truth.trans + torch.tensor([0.0, 0.0, 6.5])     # face ~3.5 dm from the camera
    intrinsics = torch.tensor([[355.0, 104.0, 118.0]]).expand(4, 3).clone()
    seen = with_intrinsics(fm.compute(truth), fm.camera, fm.landmark_ids, intrinsics)
    config = LandmarkFitConfig(sigma_px=0.01, lm_iterations=20)
    fit = fit_landmarks(fm, seen.landmarks, config, intrinsics=intrinsics)
    _assert_recovered(fm, fit, truth)
    refit = with_intrinsics(fm.compute(fit), fm.camera, fm.landmark_ids, intrinsics).landmarks
    assert float((refit - seen.landmarks).norm(dim=-1).max()) < 0.05
    plain = fit_landmarks(fm, seen.landmarks, config)
    assert float((fm.compute(plain).landmarks - seen.landmarks).norm(dim=-1).mean()) > 0.2

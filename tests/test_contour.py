"""Sliding contour points: paths, the silhouette pick against a rendered mask, gradients of
the landmark term, the 68-point term unchanged, clear shape errors."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from fitting import FitTargets
from recon import losses as L
from recon.contour import ContourPaths, slid_points
from recon.face_model import FaceModel, rotation_matrix
from recon.landmark_set import LandmarkSet
from recon.models.procedural import build_embedded_model
from recon.render import MeshRenderer
from recon.types import Coeffs

NEAR_SIDE_UPPER_JAW = [0, 1, 2]          # at yaw +40 deg: towards the camera
FAR_SIDE_UPPER_JAW = [12, 13, 14, 15, 16]  # at yaw +40 deg: turned away, the cheek outline


@pytest.fixture(scope="module")
def face_model():
    return FaceModel(build_embedded_model(resolution=48))


def _posed(face_model, yaw_deg, pitch_deg=0.0, batch=1, seed=None):
    coeffs = Coeffs.zeros(batch, face_model.coeff_sizes)
    coeffs.angle = torch.tensor([[math.radians(pitch_deg), math.radians(yaw_deg), 0.0]] * batch)
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        coeffs.id = 0.5 * torch.randn(coeffs.id.shape, generator=g)
        coeffs.exp = 0.3 * torch.randn(coeffs.exp.shape, generator=g)
    return coeffs


def _slid(face_model, landmark_set, paths, coeffs):
    geometry = face_model.compute(coeffs, with_color=False)
    return slid_points(landmark_set, paths, geometry.camera, rotation_matrix(coeffs.angle), face_model.camera)


def _distance_to_mask_boundary(mask: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """mask (H, W) 0/1, points (P, 2) y-down pixels -> (P,) distance to the nearest pixel
    of the mask's boundary band (inside or outside, 8-neighbourhood)."""
    inside = mask[None, None].float()
    band = (F.max_pool2d(inside, 3, 1, 1) - (-F.max_pool2d(-inside, 3, 1, 1)))[0, 0] > 0
    rows, columns = torch.nonzero(band, as_tuple=True)
    return torch.cdist(points, torch.stack([columns, rows], 1).float()).min(1).values


def test_paths_start_at_the_point_and_leave_a_frontal_face_unchanged(face_model):
    landmark_set = LandmarkSet.ibug68(face_model.landmark_ids)
    paths = ContourPaths.build(landmark_set, face_model)
    assert torch.equal(paths.point_index, torch.arange(17))
    assert torch.equal(paths.vertex_ids[:, 0], landmark_set.vertex_ids[:17])
    assert bool((paths.valid.sum(1) > 10).all())
    coeffs = _posed(face_model, 0.0)
    fixed = face_model.compute(coeffs).landmarks
    torch.testing.assert_close(_slid(face_model, landmark_set, paths, coeffs), fixed, atol=1e-4, rtol=0)


def test_slid_jaw_points_lie_on_the_rendered_silhouette(face_model):
    """Yaw 40 deg: the far side's upper jaw points slide to the cheek outline, the near
    side's towards the ear, both onto the rendered mask's boundary; the fixed jaw vertices
    lie well inside (far side) or short of it (near side). The lower jaw and chin are
    inside the mask here (the model's neck continues below them), so they are not checked."""
    landmark_set = LandmarkSet.ibug68(face_model.landmark_ids)
    paths = ContourPaths.build(landmark_set, face_model)
    coeffs = _posed(face_model, 40.0)
    geometry = face_model.compute(coeffs)
    mask = MeshRenderer(face_model.camera, backend="torch").render(geometry, face_model.triangles).mask[0, 0] > 0.5
    slid = _slid(face_model, landmark_set, paths, coeffs)[0]
    checked = NEAR_SIDE_UPPER_JAW + FAR_SIDE_UPPER_JAW
    assert float(_distance_to_mask_boundary(mask, slid[checked]).max()) < 1.0
    fixed = _distance_to_mask_boundary(mask, geometry.landmarks[0, checked])
    assert float(fixed.min()) > 3.0
    # the far side's fixed jaw lies inside the face, many pixels from its outline
    assert float(_distance_to_mask_boundary(mask, geometry.landmarks[0, FAR_SIDE_UPPER_JAW]).min()) > 10.0


def test_landmark_term_gradients_match_finite_differences(face_model):
    """The sliding landmark term's gradient w.r.t. the coefficients (the choice held, as
    autograd sees it) against central differences, in float64."""
    model = copy.deepcopy(face_model).double()
    landmark_set = LandmarkSet.ibug68(model.landmark_ids)
    paths = ContourPaths.build(landmark_set, model)
    weights, normaliser = L.set_landmark_weights(landmark_set, dtype=torch.float64)
    coeffs = _posed(model, 35.0, 10.0, batch=1, seed=3).map(lambda t: t.double())
    target = _slid(model, landmark_set, paths, coeffs).detach() + 2.0 * torch.randn(
        1, 68, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def term(values: dict) -> torch.Tensor:
        posed = coeffs.replace(**values)
        points = _slid(model, landmark_set, paths, posed)
        return L.landmark_loss(points, target, weights=weights, normaliser=normaliser)

    values = {g: getattr(coeffs, g).clone().requires_grad_(True) for g in ("id", "exp", "angle", "trans")}
    gradients = dict(zip(values, torch.autograd.grad(term(values), list(values.values()))))
    step = 1e-6
    for group, entries in (("id", [0, 5, 20]), ("exp", [0, 7]), ("angle", [0, 1, 2]), ("trans", [0, 2])):
        for k in entries:
            up = {g: v.detach().clone() for g, v in values.items()}
            down = {g: v.detach().clone() for g, v in values.items()}
            up[group][0, k] += step
            down[group][0, k] -= step
            numeric = float((term(up) - term(down)) / (2 * step))
            analytic = float(gradients[group][0, k])
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8), (group, k)


def test_the_68_set_gives_the_original_landmark_term_exactly(face_model):
    """Set-based points and weights of the default iBUG 68 set against the hard-wired
    computation (FaceGeometry.landmarks, the SPEC 5 weights over 68)."""
    landmark_set = LandmarkSet.ibug68(face_model.landmark_ids)
    coeffs = _posed(face_model, 25.0, -10.0, batch=3, seed=5)
    geometry = face_model.compute(coeffs)
    points = slid_points(landmark_set, None, geometry.camera, rotation_matrix(coeffs.angle), face_model.camera)
    assert torch.equal(points, geometry.landmarks)
    target = geometry.landmarks + torch.randn(3, 68, 2, generator=torch.Generator().manual_seed(6))
    visibility = torch.rand(3, 68, generator=torch.Generator().manual_seed(7))
    weights, normaliser = L.set_landmark_weights(landmark_set)
    for vis in (None, visibility):
        assert torch.equal(L.landmark_loss(points, target, "none", vis, weights=weights, normaliser=normaliser),
                           L.landmark_loss(geometry.landmarks, target, "none", vis))


def test_other_sets_are_normalised_to_the_68_point_scale():
    """Points that all miss by r pixels cost what the 68-point term costs for the same miss."""
    landmark_set = LandmarkSet.from_vertices("dense", torch.arange(300), weights=torch.rand(300) + 0.5)
    weights, normaliser = L.set_landmark_weights(landmark_set)
    miss = torch.tensor([3.0, 4.0])  # 5 px
    dense = L.landmark_loss(torch.zeros(1, 300, 2) + miss, torch.zeros(1, 300, 2), weights=weights,
                            normaliser=normaliser)
    original = L.landmark_loss(torch.zeros(1, 68, 2) + miss, torch.zeros(1, 68, 2))
    torch.testing.assert_close(dense, original)


def test_bad_shapes_give_one_clear_error(face_model):
    dense = LandmarkSet.from_vertices("dense", torch.arange(300))
    images = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(M, 300, 2\) for a landmark set of 300 points, got \(2, 68, 2\)"):
        FitTargets(images, torch.zeros(2, 68, 2), landmark_set=dense)
    with pytest.raises(ValueError, match=r"visibility must be \(2, 300\)"):
        FitTargets(images, torch.zeros(2, 300, 2), torch.ones(2, 68), landmark_set=dense)
    with pytest.raises(ValueError, match=r"\(M, 68, 2\)"):
        FitTargets(images, torch.zeros(2, 300, 2))
    with pytest.raises(ValueError, match=r"weights must be \(68,\)"):
        L.landmark_loss(torch.zeros(1, 68, 2), torch.zeros(1, 68, 2), weights=torch.ones(300), normaliser=1.0)
    with pytest.raises(ValueError, match="68 iBUG points"):
        L.landmark_loss(torch.zeros(1, 300, 2), torch.zeros(1, 300, 2))
    no_contour = LandmarkSet.from_vertices("plain", face_model.landmark_ids)
    with pytest.raises(ValueError, match="contour paths need both"):
        ContourPaths.build(no_contour, face_model)

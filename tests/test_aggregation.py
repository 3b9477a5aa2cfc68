"""aggregation: the weighted mean, the information weights (against finite differences)
and the fused identity on landmark fits of a small random model."""

import numpy as np
import pytest
import torch
from scipy.spatial import Delaunay

from aggregation import AggregationConfig, aggregate_identity, landmark_information, weighted_mean
from recon.face_model import FaceModel
from recon.morphable import MorphableModel, incident_triangles
from recon.standard_landmarks import STANDARD_LANDMARKS_68
from recon.types import Coeffs


def small_model(n_id=6, n_exp=4, n_tex=5, seed=0) -> MorphableModel:
    """The 68 standard landmarks plus a jittered grid, Delaunay in xy, smooth random bases."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.linspace(-0.7, 0.7, 9), np.linspace(-0.8, 0.5, 9))
    grid = np.stack([gx.ravel(), gy.ravel(), 0.3 - 0.5 * (gx.ravel() ** 2 + gy.ravel() ** 2)], 1)
    verts = np.concatenate([STANDARD_LANDMARKS_68, grid])
    tri = Delaunay(verts[:, :2]).simplices
    n = len(verts)

    def basis(k, amp):
        centres = rng.normal(size=(k, 3)) * 0.4
        fields = np.exp(-((verts[None] - centres[:, None]) ** 2).sum(-1) / 0.2)   # (k, n)
        dirs = rng.normal(size=(k, 1, 3))
        return (fields[..., None] * dirs * amp).reshape(k, 3 * n).T

    tri_t = torch.tensor(tri, dtype=torch.int64)
    return MorphableModel(
        name="small", mean_shape=torch.tensor(verts, dtype=torch.float32),
        id_basis=torch.tensor(basis(n_id, 0.05), dtype=torch.float32),
        exp_basis=torch.tensor(basis(n_exp, 0.03), dtype=torch.float32),
        mean_albedo=torch.full((n, 3), 150.0), tex_basis=torch.tensor(basis(n_tex, 10.0), dtype=torch.float32),
        triangles=tri_t, landmark_ids=torch.arange(68), point_buf=incident_triangles(tri_t, n),
        front_vertex_ids=torch.arange(n), front_triangles=tri_t,
        skin_mask=torch.ones(n, dtype=torch.bool))


def test_weighted_mean_brute_force_and_errors():
    rng = np.random.default_rng(0)
    values, conf = rng.normal(size=(4, 3)), rng.random((4, 3))
    ref = [sum(conf[j, k] * values[j, k] for j in range(4)) / conf[:, k].sum() for k in range(3)]
    np.testing.assert_allclose(weighted_mean(torch.tensor(values), torch.tensor(conf)).numpy(), ref)
    with pytest.raises(ValueError):
        weighted_mean(torch.tensor(values), -torch.tensor(conf))
    with pytest.raises(ValueError):
        weighted_mean(torch.tensor(values), torch.zeros(4, 3, dtype=torch.float64))


def _posed_coeffs(face_model, n, seed):
    g = torch.Generator().manual_seed(seed)
    coeffs = Coeffs.zeros(n, face_model.coeff_sizes)
    yaw = torch.linspace(-0.8, 0.8, n)
    return coeffs.replace(id=torch.randn(1, coeffs.id.shape[1], generator=g).expand(n, -1).clone(),
                          exp=0.5 * torch.randn(n, coeffs.exp.shape[1], generator=g),
                          angle=torch.stack([0.1 * torch.randn(n, generator=g), yaw, torch.zeros(n)], 1),
                          trans=torch.zeros(n, 3))


def _information_by_differences(coeffs: Coeffs, project, weights: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """(B, K_id) sum_i w_i |d p_i / d id_k|^2 of each image, the derivative of its points
    ``project(one image's Coeffs)`` (1, P, 2) by central differences of step ``h``."""
    info = torch.zeros(coeffs.batch_size, coeffs.id.shape[1], dtype=coeffs.id.dtype)
    for b in range(coeffs.batch_size):
        for k in range(coeffs.id.shape[1]):
            up, down = coeffs[b].id.clone(), coeffs[b].id.clone()
            up[0, k] += h
            down[0, k] -= h
            d = (project(coeffs[b].replace(id=up)) - project(coeffs[b].replace(id=down))) / (2 * h)
            info[b, k] = (weights[:, None] * d[0] ** 2).sum()
    return info


def test_landmark_information_matches_finite_differences():
    face_model = FaceModel(small_model())
    coeffs = _posed_coeffs(face_model, 2, 1).map(lambda t: t.double())
    face_model = face_model.double()
    info = landmark_information(face_model, coeffs)
    w = torch.ones(68, dtype=torch.float64)
    w[[28, 29, 30, 60, 61, 62, 63, 64, 65, 66, 67]] = 20
    expected = _information_by_differences(coeffs, lambda c: face_model.compute(c).landmarks, w)
    torch.testing.assert_close(info, expected, rtol=1e-5, atol=1e-12)


def test_aggregation_mean_and_confidence_recover_shared_identity():
    face_model = FaceModel(small_model())
    truth = _posed_coeffs(face_model, 5, 2)
    noisy = truth.replace(id=truth.id + 0.3 * torch.randn(truth.id.shape, generator=torch.Generator().manual_seed(3)))
    targets = face_model.compute(truth).landmarks
    mean = aggregate_identity(face_model, noisy, config=AggregationConfig(method="mean"))
    torch.testing.assert_close(mean.id[0], noisy.id.mean(0))
    conf = aggregate_identity(face_model, noisy, targets)
    assert conf.id.shape == (1, truth.id.shape[1])
    torch.testing.assert_close(conf.weights.sum(0), torch.ones(truth.id.shape[1]))
    # an image whose fit is bad (large landmark residual) gets less weight than a good one
    bad = noisy.replace(trans=noisy.trans + torch.tensor([[0.2, 0, 0]] + [[0, 0, 0]] * 4))
    bad_weights = aggregate_identity(face_model, bad, targets).weights
    assert bool((bad_weights[0] < conf.weights[0]).all())


def test_aggregation_skips_invalid_images():
    face_model = FaceModel(small_model())
    coeffs = _posed_coeffs(face_model, 3, 4)
    coeffs.id[2] = 100.0  # garbage from an unusable photo
    valid = torch.tensor([True, True, False])
    fused = aggregate_identity(face_model, coeffs, face_model.compute(coeffs).landmarks, valid=valid)
    torch.testing.assert_close(fused.id[0], coeffs.id[0])
    assert float(fused.weights[2].abs().max()) == 0.0
    with pytest.raises(ValueError, match="no valid"):
        aggregate_identity(face_model, coeffs, valid=torch.zeros(3, dtype=torch.bool))


def test_information_and_quality_on_a_landmark_set():
    """The default is the iBUG 68 set; another set's information is J^T W J over its own
    points with its weights scaled to the 68-point term (checked by finite differences),
    and fitting it exactly gives quality 1."""
    from recon.landmark_set import LandmarkSet
    from recon.losses import set_landmark_weights
    face_model = FaceModel(small_model())
    coeffs = _posed_coeffs(face_model, 2, 5)
    explicit = LandmarkSet.ibug68(face_model.landmark_ids)
    assert torch.equal(landmark_information(face_model, coeffs), landmark_information(face_model, coeffs, explicit))
    g = torch.Generator().manual_seed(6)
    triangles = face_model.triangles[torch.randint(0, face_model.triangles.shape[0], (120,), generator=g)]
    bary = torch.rand(120, 3, generator=g) + 0.05
    dense = LandmarkSet("dense-test", triangles, bary / bary.sum(1, keepdim=True), torch.rand(120, generator=g) + 0.5,
                        torch.zeros(120, dtype=torch.bool))
    face_model = face_model.double()
    coeffs = coeffs.map(lambda t: t.double())
    info = landmark_information(face_model, coeffs, dense)
    weights, normaliser = set_landmark_weights(dense, dtype=torch.float64)
    weights = weights * 68.0 / normaliser

    def points(c):
        return dense.points(face_model.camera.to_camera_space(face_model.compute(c).world))

    expected = _information_by_differences(coeffs, lambda c: face_model.camera.project(points(c)), weights)
    torch.testing.assert_close(info, expected, rtol=1e-5, atol=1e-12)
    exact = face_model.camera.project(points(coeffs))
    from aggregation.identity import fit_quality
    torch.testing.assert_close(fit_quality(face_model, coeffs, exact, 3.0, dense), torch.ones(2, dtype=torch.float64))
    fused = aggregate_identity(face_model, coeffs, exact, landmark_set=dense)
    assert fused.id.shape == (1, coeffs.id.shape[1])
    with pytest.raises(ValueError, match="120 points"):
        aggregate_identity(face_model, coeffs, exact[:, :68], landmark_set=dense)

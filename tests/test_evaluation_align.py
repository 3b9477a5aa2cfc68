"""Procrustes, rotation derivatives, scan-to-mesh refinement and scaled ICP."""

import numpy as np
import pytest

from evaluation.align import (IcpConfig, RefineConfig, Similarity, icp_similarity, procrustes,
                              refine_to_surface, rodrigues, rotated_point_jacobian)
from evaluation.distance import TriangleMeshIndex
from evaluation.synthetic import face_landmarks, face_mesh, random_similarity


def test_procrustes_recovers_a_random_similarity():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(7, 3)) * 30
    truth = random_similarity(rng, scale=7.5)
    fit, residual = procrustes(truth.apply(source), source)
    assert fit.scale == pytest.approx(7.5)
    np.testing.assert_allclose(fit.rotation, truth.rotation, atol=1e-10)
    np.testing.assert_allclose(fit.translation, truth.translation, atol=1e-8)
    assert residual == pytest.approx(0.0, abs=1e-12)


def test_procrustes_best_allows_a_reflection_as_matlab():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(7, 3))
    mirror = np.diag([-1.0, 1.0, 1.0])
    target = 2.0 * source @ mirror.T + [1, 2, 3]
    best, residual = procrustes(target, source, reflection="best")
    assert np.linalg.det(best.rotation) == pytest.approx(-1.0)
    np.testing.assert_allclose(best.apply(source), target, atol=1e-10)
    assert residual == pytest.approx(0.0, abs=1e-12)
    proper, proper_residual = procrustes(target, source, reflection=False)
    assert np.linalg.det(proper.rotation) == pytest.approx(1.0)
    assert proper_residual > 0.01
    forced, _ = procrustes(source, source, reflection=True)
    assert np.linalg.det(forced.rotation) == pytest.approx(-1.0)


def test_procrustes_matches_matlab_formulas_with_noise():
    # MATLAB: d = 1 - trace^2 for the standardised configurations; check against an
    # independent computation of the residual of the returned transform.
    rng = np.random.default_rng(2)
    source = rng.normal(size=(7, 3))
    target = random_similarity(rng, 3.0).apply(source) + rng.normal(scale=0.05, size=(7, 3))
    fit, d = procrustes(target, source)
    residual = np.sum((target - fit.apply(source)) ** 2)
    assert d == pytest.approx(residual / np.sum((target - target.mean(0)) ** 2))
    # Optimality: small perturbations of the scale do not improve the fit.
    for factor in (0.99, 1.01):
        worse = Similarity(fit.scale * factor, fit.rotation, fit.translation
                           + (1 - factor) * fit.scale * fit.rotation @ source.mean(0))
        assert np.sum((target - worse.apply(source)) ** 2) > residual


def test_rotation_jacobian_matches_finite_differences():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(5, 3))
    for r in (np.zeros(3), np.array([0.3, -1.2, 0.7]), np.array([1e-7, 0, 2e-7])):
        analytic = rotated_point_jacobian(r, points)
        step = 1e-6
        numeric = np.stack([(points @ rodrigues(r + step * e).T - points @ rodrigues(r - step * e).T)
                            / (2 * step) for e in np.eye(3)], axis=2)
        np.testing.assert_allclose(analytic, numeric, atol=1e-8)


def test_rodrigues_is_a_rotation_about_its_axis():
    rotation = rodrigues(np.array([0.0, 0.0, np.pi / 2]))
    np.testing.assert_allclose(rotation @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-15)


@pytest.mark.parametrize("fit_scale", [True, False])
def test_refinement_undoes_a_small_misalignment(fit_scale):
    mesh = face_mesh(60, ripple_mm=2.0)
    scan = mesh.vertices[np.linalg.norm(mesh.vertices[:, :2], axis=1) < 60]
    offset = Similarity(1.01 if fit_scale else 1.0, rodrigues(np.array([0.02, -0.01, 0.015])),
                        np.array([0.8, -0.5, 0.4]))
    moved = offset.apply(mesh.vertices)
    index = TriangleMeshIndex(moved, mesh.faces, "scipy")
    before = index.query(scan).distances
    result = refine_to_surface(scan, index, RefineConfig(fit_scale=fit_scale))
    after = abs(result.transform.scale) * index.query(
        result.transform.inverse_apply(scan)).distances
    assert before.mean() > 0.3
    assert after.max() < 1e-5
    composed = offset.then(result.transform)  # must be the identity
    assert composed.scale == pytest.approx(1.0, abs=1e-7)
    np.testing.assert_allclose(composed.rotation, np.eye(3), atol=1e-7)
    np.testing.assert_allclose(composed.translation, 0.0, atol=1e-5)


def test_refinement_of_a_perfect_fit_stays_at_zero():
    mesh = face_mesh(30)
    index = TriangleMeshIndex(mesh.vertices, mesh.faces, "scipy")
    result = refine_to_surface(mesh.vertices, index)
    assert result.cost == pytest.approx(0.0, abs=1e-18)
    np.testing.assert_allclose(result.transform.rotation, np.eye(3), atol=1e-12)


def test_scaled_icp_recovers_a_similarity_from_landmarks():
    rng = np.random.default_rng(5)
    gt = face_mesh(70, ripple_mm=1.0)
    truth = random_similarity(rng, scale=0.012)  # a prediction in other units
    prediction = Similarity(1 / truth.scale, truth.rotation.T,
                            -truth.rotation.T @ truth.translation / truth.scale)
    moved = prediction.apply(gt.vertices)
    init, _ = procrustes(face_landmarks(gt), prediction.apply(face_landmarks(gt)),
                         reflection=False)
    # Perturb the start so ICP has work to do.
    init = init.then(Similarity(1.02, rodrigues(np.array([0.03, 0.0, -0.02])), np.array([2.0, 1, 0])))
    targets = gt.vertices[np.linalg.norm(gt.vertices[:, :2], axis=1) < 70]
    result = icp_similarity(moved, gt.faces, targets, init, IcpConfig())
    assert result.rmse < 1e-4
    np.testing.assert_allclose(result.transform.apply(moved), gt.vertices, atol=1e-3)


@pytest.mark.parametrize("scale", [1.1, -0.9])
def test_refinement_residuals_and_jacobian_against_references(scale):
    from evaluation.align import _ScanToMeshObjective
    from evaluation.distance import point_to_mesh_distance

    mesh = face_mesh(30, ripple_mm=1.0)
    rng = np.random.default_rng(0)
    points = mesh.vertices[::7] + rng.normal(size=(len(mesh.vertices[::7]), 3))
    objective = _ScanToMeshObjective(points, TriangleMeshIndex(mesh.vertices, mesh.faces, "scipy"),
                                     fit_scale=True)
    x = np.array([scale, 0.1, -0.2, 0.05, 1.0, 2.0, 3.0])
    moved = Similarity(scale, rodrigues(x[1:4]), x[4:]).apply(mesh.vertices)
    np.testing.assert_allclose(objective.distances(x),
                               point_to_mesh_distance(points, moved, mesh.faces, "scipy"),
                               atol=1e-10)
    analytic = objective.jacobian(x)[:-1]  # the last row is the scale penalty
    step = 1e-6
    numeric = np.stack([(objective.distances(x + step * e).copy()
                         - objective.distances(x - step * e).copy()) / (2 * step)
                        for e in np.eye(7)], axis=1)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6)

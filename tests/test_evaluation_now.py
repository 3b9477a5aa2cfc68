"""The NoW protocol: known answers on synthetic faces and the official folder layout."""

import numpy as np
import pytest

from evaluation.align import Similarity
from evaluation.distance import closest_points_on_triangles
from evaluation.meshio import TriangleMesh
from evaluation.now import (NowDataset, challenge_statistics, crop_scan, crop_sphere,
                            evaluate_now, evaluate_now_image, keep_vertices, pooled_statistics)
from evaluation.synthetic import (face_landmarks, face_mesh, random_similarity,
                                  write_now_dataset, write_now_prediction)


@pytest.fixture(scope="module")
def scan():
    return face_mesh(90, ripple_mm=1.0)


@pytest.fixture(scope="module")
def prediction():
    return face_mesh(60, ripple_mm=0.0, phase=0.7)  # a different, smoother face


def _moved(mesh, transform):
    return TriangleMesh(transform.apply(mesh.vertices), mesh.faces)


def test_crop_sphere_known_answer():
    landmarks = np.array([[-40.0, 0, 0], [-10, 0, 0], [10, 0, 0], [40, 0, 0], [0, -50, 0],
                          [-20, -70, 0], [20, -70, 0]])
    centre, radius = crop_sphere(landmarks)
    np.testing.assert_allclose(centre, [0, -35.0, 0])  # 0.3 of the way up the nose
    assert radius == pytest.approx(1.4 * (80 + 50) / 2)


def test_keep_vertices_keeps_only_whole_faces():
    mesh = TriangleMesh(np.arange(15.0).reshape(5, 3), np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]]))
    kept = keep_vertices(mesh, np.array([1, 2, 3, 4]))
    np.testing.assert_array_equal(kept.faces, [[0, 1, 2], [1, 2, 3]])
    np.testing.assert_array_equal(kept.vertices, mesh.vertices[1:])


def test_scan_against_itself_is_zero(scan):
    result = evaluate_now_image(scan, face_landmarks(scan), scan, face_landmarks(scan))
    assert result.distances.max() < 1e-6
    assert len(result.distances) == len(crop_scan(scan, face_landmarks(scan)).vertices)


@pytest.mark.parametrize("scale", [1.0, 0.01, 1e-3])  # mm, decimetres, metres
def test_moved_copy_is_zero_after_alignment(scan, scale):
    transform = random_similarity(np.random.default_rng(7), scale=scale)
    result = evaluate_now_image(scan, face_landmarks(scan), _moved(scan, transform),
                                transform.apply(face_landmarks(scan)))
    assert result.distances.max() < 1e-4
    assert result.landmark_transform.scale == pytest.approx(1 / scale, rel=1e-5)


def test_reflected_prediction_is_aligned_by_a_reflection(scan):
    # procrustes 'best' (as the official code) lets a mirrored prediction align exactly.
    mirror = Similarity(1.0, np.diag([-1.0, 1.0, 1.0]), np.zeros(3))
    result = evaluate_now_image(scan, face_landmarks(scan), _moved(scan, mirror),
                                mirror.apply(face_landmarks(scan)))
    assert np.linalg.det(result.landmark_transform.rotation) == pytest.approx(-1.0)
    assert result.distances.max() < 1e-4


def test_errors_are_exact_scan_to_surface_distances(scan, prediction):
    transform = random_similarity(np.random.default_rng(8), scale=0.1)
    result = evaluate_now_image(scan, face_landmarks(scan), _moved(prediction, transform),
                                transform.apply(face_landmarks(prediction)), backend="scipy")
    points = result.cropped_scan.vertices[::37]
    corners = result.aligned_vertices[prediction.faces]
    n, f = len(points), len(corners)
    closest, _ = closest_points_on_triangles(
        np.repeat(points, f, axis=0), np.tile(corners[:, 0], (n, 1)),
        np.tile(corners[:, 1], (n, 1)), np.tile(corners[:, 2], (n, 1)))
    brute = np.linalg.norm(np.repeat(points, f, axis=0) - closest, axis=1).reshape(n, f).min(1)
    np.testing.assert_allclose(result.distances[::37], brute, atol=1e-9)
    # The refinement may only improve on the landmark alignment.
    assert 0.05 < np.mean(result.distances) < 2.0


def test_refinement_improves_on_landmarks(scan, prediction):
    landmarks = face_landmarks(prediction) + np.random.default_rng(9).normal(scale=2, size=(7, 3))
    refined = evaluate_now_image(scan, face_landmarks(scan), prediction, landmarks)
    aligned = refined.landmark_transform.apply(prediction.vertices)
    from evaluation.distance import point_to_mesh_distance

    landmarks_only = point_to_mesh_distance(refined.cropped_scan.vertices, aligned, prediction.faces)
    assert np.sum(refined.distances ** 2) < np.sum(landmarks_only ** 2)


def test_metrical_variant_uses_the_unit_scale(scan):
    transform = random_similarity(np.random.default_rng(10), scale=1e-3)  # mm -> m
    moved, landmarks = _moved(scan, transform), transform.apply(face_landmarks(scan))
    exact = evaluate_now_image(scan, face_landmarks(scan), moved, landmarks, metrical=True,
                               unit="m")
    assert exact.distances.max() < 1e-4
    assert exact.refinement.scale == 1.0
    wrong = evaluate_now_image(scan, face_landmarks(scan), moved, landmarks, metrical=True,
                               unit="cm")  # 100 times too small: large errors remain
    assert np.median(wrong.distances) > 5.0


def test_pooled_statistics_pool_vertices_not_images():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0])
    stats = pooled_statistics([a, b])
    pooled = np.hstack([a, b])
    assert stats == {"median": np.median(pooled), "mean": np.mean(pooled),
                     "std": np.std(pooled)}
    assert np.isnan(pooled_statistics([])["median"])


def test_dataset_run_counts_missing_and_broken_predictions(tmp_path, scan, prediction):
    images = [("S1", "multiview_neutral", "IMG_0001.jpg"), ("S1", "selfie", "IMG_0002.jpg"),
              ("S1", "selfie", "IMG_0003.jpg"), ("S1", "multiview_expressions", "IMG_0004.jpg")]
    write_now_dataset(tmp_path / "now", {"S1": scan}, images)
    predictions = tmp_path / "pred"
    write_now_prediction(predictions, "S1", "multiview_neutral", "IMG_0001", prediction,
                         face_landmarks(prediction), ".obj", ".npy")
    write_now_prediction(predictions, "S1", "selfie", "IMG_0002", scan, face_landmarks(scan),
                         ".ply", ".txt")
    # IMG_0003: mesh without landmarks; IMG_0004: a malformed mesh.
    write_now_prediction(predictions, "S1", "selfie", "IMG_0003", scan, face_landmarks(scan))
    (predictions / "S1" / "selfie" / "IMG_0003.npy").unlink()
    folder = predictions / "S1" / "multiview_expressions"
    folder.mkdir(parents=True)
    (folder / "IMG_0004.obj").write_text("v 0 0 0\nf 1 2 3\n")
    np.save(folder / "IMG_0004.npy", face_landmarks(scan))

    records = evaluate_now(NowDataset(tmp_path / "now"), predictions, progress=False)
    status = {r.image: (r.status, r.missing) for r in records}
    assert status == {"IMG_0001.jpg": ("ok", ""), "IMG_0002.jpg": ("ok", ""),
                      "IMG_0003.jpg": ("missing", "landmarks"),
                      "IMG_0004.jpg": ("failed", "")}
    table = challenge_statistics(records)
    assert table["all"]["images"] == 2 and table["all"]["missing"] == 2
    assert table["selfie"]["median"] < 1e-5
    assert table["multiview_neutral"]["median"] > 0.05
    selfie_only = evaluate_now(NowDataset(tmp_path / "now"), predictions, "selfie",
                               progress=False)
    assert [r.image for r in selfie_only] == ["IMG_0002.jpg", "IMG_0003.jpg"]

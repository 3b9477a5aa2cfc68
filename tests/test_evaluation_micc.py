"""MICC Florence / FaceWarehouse protocol: region, scaled ICP, RMSE, layouts."""

import numpy as np
import pytest

from evaluation.meshio import TriangleMesh, write_landmarks, write_mesh
from evaluation.micc import (FACEWAREHOUSE_REGION, MICC_REGION, RegionConfig, discover_pairs,
                             evaluate_pairs, load_ground_truth, read_pairs, region_points,
                             run_statistics, score_mesh)
from evaluation.synthetic import face_landmarks, face_mesh, random_similarity


@pytest.fixture(scope="module")
def gt():
    return face_mesh(80, half_width_mm=110, ripple_mm=1.0)


def _nose(mesh):
    return mesh.vertices[np.argmax(mesh.vertices[:, 2])]


def test_region_is_a_ball_minus_the_forehead():
    axis = np.linspace(-100, 100, 41)
    x, y = np.meshgrid(axis, axis)
    points = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    ball = region_points(points, np.zeros(3), FACEWAREHOUSE_REGION)
    assert np.all(np.linalg.norm(ball, axis=1) <= 95)
    assert len(ball) == np.sum(np.linalg.norm(points, axis=1) <= 95)
    cut = region_points(points, np.zeros(3), MICC_REGION)
    assert cut[:, 1].max() <= 65 and len(cut) < len(ball)
    with pytest.raises(ValueError, match="no ground-truth vertex"):
        region_points(points + 1000, np.zeros(3), MICC_REGION)


def test_moved_copy_scores_zero_with_landmarks(gt):
    transform = random_similarity(np.random.default_rng(0), scale=0.01)
    prediction = TriangleMesh(transform.apply(gt.vertices), gt.faces)
    score = score_mesh(gt.vertices, _nose(gt), prediction, MICC_REGION, face_landmarks(gt),
                       transform.apply(face_landmarks(gt)))
    assert score.rmse < 1e-4
    assert score.transform.scale == pytest.approx(100.0, rel=1e-5)


def test_plane_offset_is_measured_then_removed_by_icp():
    # A plane 1.5 mm in front of the GT plane: the point-to-plane distance is exactly 1.5,
    # and one rigid point-to-plane ICP step removes it.
    axis = np.linspace(-120, 120, 61)
    x, y = np.meshgrid(axis, axis)
    plane = TriangleMesh(np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1),
                         face_mesh(61).faces)
    lifted = TriangleMesh(plane.vertices + [0, 0, 1.5], plane.faces)
    from evaluation.align import IcpConfig

    score = score_mesh(plane.vertices, np.zeros(3), lifted, FACEWAREHOUSE_REGION,
                       icp=IcpConfig(max_iterations=1, fit_scale=False))
    # One point-to-plane step moves the plane exactly onto the target.
    assert score.rmse < 1e-8
    from evaluation.distance import point_to_plane_distance

    errors, _ = point_to_plane_distance(plane.vertices, lifted.vertices, lifted.faces)
    np.testing.assert_allclose(errors, 1.5, atol=1e-12)


def test_icp_without_landmarks_from_a_near_start(gt):
    transform = random_similarity(np.random.default_rng(1), scale=1.02, max_angle=0.05)
    transform.translation = np.array([1.5, -1.0, 0.5])
    prediction = TriangleMesh(transform.apply(gt.vertices), gt.faces)
    score = score_mesh(gt.vertices, _nose(gt), prediction, MICC_REGION)
    assert score.rmse < 1e-3


def test_different_face_gives_a_positive_rmse(gt):
    other = face_mesh(70, half_width_mm=110, ripple_mm=0.0, phase=1.0)
    other.vertices[:, 2] *= 1.05
    score = score_mesh(gt.vertices, _nose(gt), other, MICC_REGION, face_landmarks(gt),
                       face_landmarks(other))
    assert 0.2 < score.rmse < 5.0
    assert score.rmse == pytest.approx(np.sqrt(np.mean(score.errors ** 2)))


def _write_layout(root, gt):
    gt_dir, predictions = root / "gt", root / "pred"
    write_mesh(gt_dir / "subject01.obj", gt)
    np.savetxt(gt_dir / "subject01_nose.txt", _nose(gt)[None])
    write_landmarks(gt_dir / "subject01_lmk7.txt", face_landmarks(gt))
    transform = random_similarity(np.random.default_rng(2), scale=0.1)
    write_mesh(predictions / "subject01" / "frame_000.obj",
               TriangleMesh(transform.apply(gt.vertices), gt.faces))
    write_landmarks(predictions / "subject01" / "frame_000.npy",
                    transform.apply(face_landmarks(gt)))
    (predictions / "subject02").mkdir(parents=True)
    write_mesh(predictions / "subject02" / "frame_000.ply", gt)  # no GT for subject02
    return gt_dir, predictions


def test_layout_discovery_and_missing_gt_counted(tmp_path, gt):
    gt_dir, predictions = _write_layout(tmp_path, gt)
    ground = load_ground_truth(gt_dir / "subject01.obj", MICC_REGION)
    np.testing.assert_allclose(ground.nose_tip, _nose(gt))
    assert ground.landmarks.shape == (7, 3)
    pairs = discover_pairs(gt_dir, predictions)
    assert [p.subject for p in pairs] == ["subject01", "subject02"]
    records = evaluate_pairs(pairs, MICC_REGION, progress=False)
    assert [r.status for r in records] == ["ok", "missing"]
    assert records[1].missing == "gt"
    assert records[0].rmse < 1e-4
    stats = run_statistics(records)
    assert stats["meshes"] == 1 and stats["missing"] == 1


def test_pairs_file(tmp_path, gt):
    gt_dir, predictions = _write_layout(tmp_path, gt)
    pairs_file = tmp_path / "pairs.csv"
    pairs_file.write_text("# prediction,gt\nsubject01/frame_000.obj,subject01.obj\n"
                          "subject01/absent.obj,subject01.obj\n")
    records = evaluate_pairs(read_pairs(pairs_file, gt_dir, predictions), MICC_REGION,
                             progress=False)
    assert [(r.status, r.missing) for r in records] == [("ok", ""), ("missing", "prediction")]
    (tmp_path / "bad.csv").write_text("only_one_field\n")
    with pytest.raises(ValueError, match="bad.csv:1"):
        read_pairs(tmp_path / "bad.csv", gt_dir, predictions)


def test_gt_scale_converts_units(tmp_path, gt):
    write_mesh(tmp_path / "s.obj", TriangleMesh(gt.vertices / 10.0, gt.faces))  # cm
    ground = load_ground_truth(tmp_path / "s.obj", RegionConfig(gt_scale=10.0))
    np.testing.assert_allclose(ground.vertices, gt.vertices, atol=1e-6)


def test_score_item_outcomes(tmp_path):
    """The record every protocol fills: absent inputs, an exception, figures."""
    from evaluation.micc import MeshRecord
    from evaluation.records import score_item
    present = tmp_path / "a.obj"
    present.write_text("")
    blank = MeshRecord(subject="s", prediction="a")
    missing = score_item(blank, {"prediction": present, "gt": tmp_path / "no.obj", "lmk": None},
                         lambda: {"rmse": 1.0})
    assert (missing.status, missing.missing, np.isnan(missing.rmse)) == ("missing", "gt+lmk", True)

    def fails():
        raise ValueError("bad mesh")
    failed = score_item(blank, {"prediction": present}, fails)
    assert (failed.status, failed.message, failed.seconds) == ("failed", "ValueError: bad mesh", 0.0)
    scored = score_item(blank, {"prediction": present}, lambda: {"rmse": 2.0, "vertices": 3})
    assert (scored.status, scored.rmse, scored.vertices) == ("ok", 2.0, 3) and scored.seconds >= 0
    assert blank.status == "missing" and list(scored.row())[:4] == ["subject", "prediction", "status", "vertices"]

"""mediapipe's 478 dense points: the detector, its place in the pipeline, and the
"mediapipe478" landmark set of the embedded model (recon.dense_correspondence)."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mediapipe")

from faceset.pipeline import PhotoPreparer                                   # noqa: E402
from recon import dense_correspondence as dc                                 # noqa: E402
from recon.face_model import FaceModel                                       # noqa: E402
from recon.landmark_set import LandmarkSet                                   # noqa: E402
from recon.models.procedural import build_embedded_model                     # noqa: E402
from recon.preprocess.detect import LandmarkDetector                         # noqa: E402
from recon.preprocess.mediapipe_detect import (MediaPipeConfig, MediaPipeDetector,  # noqa: E402
                                               face_oval_ids, ibug68_from_dense)

# Poses (pitch, yaw degrees) off the build grid (multiples of 10), for the reprojection check.
HELD_OUT_POSES = np.array([[7.0, 12.0], [-4.0, -23.0], [14.0, 33.0]])


@pytest.fixture(scope="module")
def detector():
    with MediaPipeDetector() as mediapipe:
        yield mediapipe


@pytest.fixture(scope="module")
def dlib_detector():
    return LandmarkDetector()


@pytest.fixture(scope="module")
def embedded():
    return FaceModel(build_embedded_model())


@pytest.fixture
def small_face_photo(shared_data, tmp_path):
    """A real failure of mediapipe's short-range detector: a small face in a large photo
    (example 000033, 250 x 262, pasted into a 1200 x 1200 grey picture); dlib finds it."""
    canvas = Image.new("RGB", (1200, 1200), (128, 128, 128))
    canvas.paste(Image.open(shared_data / "examples" / "000033.jpg"), (400, 300))
    path = tmp_path / "distant.png"
    canvas.save(path)
    return path


@pytest.mark.parametrize("stem", ["000006", "000033", "000114"])
def test_detector_finds_478_points_and_five_points_near_dlibs(shared_data, detector, dlib_detector, stem):
    image = Image.open(shared_data / "examples" / f"{stem}.jpg")
    face = detector.detect_largest(image)
    assert face is not None and face.landmarks_dense.shape == (478, 2)
    assert face.landmarks68.shape == (68, 2) and np.isnan(face.score)
    left, top, right, bottom = face.box
    assert (face.landmarks_dense[:, 0] > 0).all() and (face.landmarks_dense[:, 0] < image.width).all()
    assert left < face.five_points[:, 0].min() and face.five_points[:, 0].max() < right
    assert top < face.five_points[:, 1].min() and face.five_points[:, 1].max() < bottom
    reference = dlib_detector.detect_largest(image).five_points
    distance = np.linalg.norm(face.five_points - reference, axis=1)
    assert distance.mean() < 3.0 and distance.max() < 7.0, distance


def test_downscaled_detection_scales_back(shared_data, detector):
    """A large photo is detected on a copy (longest side max_side); the points come back in
    the photo's pixels, within the detector's own jitter of the full-size detection."""
    image = Image.open(shared_data / "examples" / "000126.jpg")          # 700 x 873
    full = detector.detect_largest(image).landmarks_dense
    with MediaPipeDetector(MediaPipeConfig(max_side=400)) as small:
        scaled = small.detect_largest(image).landmarks_dense
    eye_distance = np.linalg.norm(full[33] - full[263])
    assert np.median(np.linalg.norm(scaled - full, axis=1)) < 0.02 * eye_distance


def test_ibug68_from_dense_averages_the_listed_points():
    dense = np.random.default_rng(0).normal(size=(478, 2))
    points = ibug68_from_dense(dense)
    np.testing.assert_allclose(points[3], dense[[132, 58]].mean(0))
    np.testing.assert_allclose(points[30], dense[4])
    with pytest.raises(ValueError, match="478"):
        ibug68_from_dense(dense[:468])


def test_preparer_uses_mediapipe_and_maps_dense_points_into_the_crop(shared_data, tmp_path):
    shutil.copy(shared_data / "examples" / "000006.jpg", tmp_path)
    photo = PhotoPreparer().prepare(tmp_path / "000006.jpg")
    assert photo.source == "mediapipe"
    assert photo.landmarks_dense.shape == (478, 2)
    # The crop transform is affine, so the 68 points are the same means of the dense ones.
    np.testing.assert_allclose(ibug68_from_dense(photo.landmarks_dense), photo.landmarks68, atol=1e-6)
    assert ((photo.landmarks_dense > 0) & (photo.landmarks_dense < 224)).all()


def test_mediapipe_falls_back_to_dlib_when_it_finds_no_face(small_face_photo, detector, dlib_detector):
    image = Image.open(small_face_photo)
    assert detector.detect_faces(image) == [] and len(dlib_detector.detect_faces(image)) == 1
    photo = PhotoPreparer(detector="mediapipe").prepare(small_face_photo)
    assert photo.source == "dlib (fallback)"
    assert photo.landmarks_dense is None and photo.landmarks68.shape == (68, 2)
    with pytest.raises(ValueError, match=r"1 face\(s\) found \(dlib \(fallback\)\), face 1 asked"):
        PhotoPreparer(detector="mediapipe", face_index=1).prepare(small_face_photo)


def test_landmark_file_still_wins_over_the_detector(shared_data, tmp_path, dlib_detector):
    shutil.copy(shared_data / "examples" / "000006.jpg", tmp_path)
    given = dlib_detector.detect_largest(Image.open(tmp_path / "000006.jpg")).landmarks68 + 1.5
    (tmp_path / "landmarks").mkdir()
    np.savetxt(tmp_path / "landmarks" / "000006.txt", given)
    photo = PhotoPreparer(detector="mediapipe").prepare(tmp_path / "000006.jpg")
    assert photo.source == "landmark file" and photo.landmarks_dense is None
    np.testing.assert_allclose(photo.transform.to_photo(photo.landmarks68), given, atol=1e-6)


def test_shipped_set_loads_and_fits_the_embedded_model(embedded, tmp_path, monkeypatch):
    shipped = dc.shipped_path(embedded)
    assert shipped.is_file(), "the embedded model's mediapipe478 set is not in the package"
    landmark_set = LandmarkSet.load(shipped)
    assert landmark_set.name == "mediapipe478" and landmark_set.count == 478
    assert int(landmark_set.vertex_ids.max()) < embedded.n_vertices
    assert (landmark_set.weights > 0).sum() > 400
    assert torch.equal(torch.nonzero(landmark_set.contour)[:, 0], torch.from_numpy(face_oval_ids()))
    monkeypatch.setenv("FACESET_CACHE", str(tmp_path / "cache"))
    found = dc.mediapipe_landmark_set(embedded, progress=False)
    assert torch.equal(found.vertex_ids, landmark_set.vertex_ids)
    assert not (tmp_path / "cache").exists()          # no rebuild for the shipped model


def test_correspondence_maps_the_models_renders_back_within_a_pixel(embedded, detector):
    """Mean face rendered at 224 px in 3 poses not used to build the set: mediapipe's points
    lie on the projections of the set's surface points (the weighted median, as the
    landmark term weights them)."""
    landmark_set = dc.mediapipe_landmark_set(embedded, progress=False)
    errors = dc.reprojection_errors(embedded, landmark_set, HELD_OUT_POSES, detector, size=224)
    used = (landmark_set.weights > 0).numpy() & ~landmark_set.contour.numpy()
    errors, weights = errors[:, used], np.broadcast_to(landmark_set.weights.numpy()[used], errors[:, used].shape)
    seen = np.isfinite(errors)
    assert seen.sum(1).min() > 250                     # most points visible in every pose
    order = np.argsort(errors[seen])
    cumulative = np.cumsum(weights[seen][order])
    weighted_median = errors[seen][order][np.searchsorted(cumulative, cumulative[-1] / 2)]
    assert weighted_median <= 1.0, weighted_median
    assert np.median(errors[seen]) <= 1.5


def test_other_model_resolution_builds_and_caches(tmp_path, monkeypatch):
    """A model the shipped set does not fit (another resolution) is built and then read
    from the cache; a changed mean shape does not reuse it."""
    coarse = FaceModel(build_embedded_model(resolution=60, n_id=4, n_exp=4, n_tex=4))
    monkeypatch.setenv("FACESET_CACHE", str(tmp_path))
    assert dc.model_key(coarse) != dc.model_key(FaceModel(build_embedded_model(n_id=4, n_exp=4, n_tex=4)))
    assert dc.load_for_model(dc.shipped_path(coarse), coarse) is None
    built = dc.build_mediapipe_landmark_set(coarse, poses_deg=dc.pose_grid((-20, 0, 20), (0,)), progress=False)
    assert int(built.vertex_ids.max()) < coarse.n_vertices and (built.weights > 0).sum() > 200
    dc.save_for_model(built, coarse, dc.cached_path(coarse))
    again = dc.mediapipe_landmark_set(coarse, progress=False)
    assert torch.equal(again.vertex_ids, built.vertex_ids) and torch.equal(again.weights, built.weights)
    coarse.mean_shape += 0.01                           # 1 mm: another model, same topology
    assert dc.load_for_model(dc.cached_path(coarse), coarse) is None


def test_closest_surface_points_on_a_known_surface():
    """Points on a plane mesh come back as themselves; points above it at their foot."""
    grid = np.stack(np.meshgrid(np.arange(6.0), np.arange(6.0)), -1).reshape(-1, 2)
    vertices = np.concatenate([grid, np.zeros((36, 1))], 1)
    quads = [(r * 6 + c, r * 6 + c + 1, (r + 1) * 6 + c) for r in range(5) for c in range(5)]
    quads += [(r * 6 + c + 1, (r + 1) * 6 + c + 1, (r + 1) * 6 + c) for r in range(5) for c in range(5)]
    triangles = np.array(quads)
    from recon.morphable import incident_triangles
    point_buf = incident_triangles(torch.from_numpy(triangles), 36).numpy()
    rng = np.random.default_rng(1)
    targets = np.concatenate([rng.uniform(0.5, 4.5, (50, 2)), np.zeros((50, 1))], 1)
    lifted = targets + np.array([0.0, 0.0, 0.3])
    outside = np.array([[-1.0, 2.5, 0.0]])               # beyond the edge x = 0
    triangle, bary, distance = dc.closest_surface_points(np.concatenate([lifted, outside]), vertices,
                                                         triangles, point_buf)
    located = (bary[:, :, None] * vertices[triangles[triangle]]).sum(1)
    np.testing.assert_allclose(located[:50], targets, atol=1e-9)
    np.testing.assert_allclose(distance[:50], 0.3, atol=1e-9)
    np.testing.assert_allclose(located[50], [0.0, 2.5, 0.0], atol=1e-9)
    np.testing.assert_allclose(bary.sum(1), 1.0)

"""The embedded procedural morphable model: structure, geometry and bases, checked against
independent computations (brute-force edge counts, cross products, direct projections)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.face_model import FaceModel
from recon.models.procedural import BFM_DENSITY_RESOLUTION, build_embedded_model
from recon.standard_landmarks import STANDARD_LANDMARKS_68
from recon.types import Camera, Coeffs

JAW_OPEN, SMILE, BLINK = 0, 1, 6   # designed leading expression modes


@pytest.fixture(scope="module")
def model():
    return build_embedded_model()


def face_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unnormalised triangle normals with the original's (v1 - v2) x (v2 - v3)."""
    v1, v2, v3 = (points[triangles[:, k]] for k in range(3))
    return np.cross(v1 - v2, v2 - v3)


def shape_of(model, exp: dict[int, float] | None = None, id_: dict[int, float] | None = None):
    coeff_exp = torch.zeros(model.exp_basis.shape[1])
    coeff_id = torch.zeros(model.id_basis.shape[1])
    for k, v in (exp or {}).items():
        coeff_exp[k] = v
    for k, v in (id_ or {}).items():
        coeff_id[k] = v
    flat = model.mean_shape.reshape(-1) + model.exp_basis @ coeff_exp + model.id_basis @ coeff_id
    return flat.reshape(-1, 3).double().numpy()


def test_builds_deterministically_and_seed_only_changes_random_modes():
    a = build_embedded_model(60, n_id=24, n_exp=24, n_tex=16, seed=0)
    b = build_embedded_model(60, n_id=24, n_exp=24, n_tex=16, seed=0)
    c = build_embedded_model(60, n_id=24, n_exp=24, n_tex=16, seed=1)
    for name, value in vars(a).items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, getattr(b, name)), name
    assert torch.equal(a.mean_shape, c.mean_shape)
    assert torch.equal(a.id_basis[:, :20], c.id_basis[:, :20])       # designed modes
    assert not torch.allclose(a.id_basis[:, 20:], c.id_basis[:, 20:])  # random modes


def test_fields_shapes_dtypes_and_index_ranges(model):
    model.validate()
    n = model.n_vertices
    assert 8_000 <= n <= 12_000
    for name in ("mean_shape", "id_basis", "exp_basis", "mean_albedo", "tex_basis", "uvs"):
        assert getattr(model, name).dtype == torch.float32, name
    for name in ("triangles", "landmark_ids", "point_buf", "front_vertex_ids", "front_triangles"):
        assert getattr(model, name).dtype == torch.int64, name
    assert model.skin_mask.dtype == torch.bool
    assert model.coeff_sizes["id"] == 80 and model.coeff_sizes["exp"] == 64 and model.coeff_sizes["tex"] == 80
    assert len(set(model.landmark_ids.tolist())) == 68
    assert float(model.uvs.min()) >= 0.0 and float(model.uvs.max()) <= 1.0
    # u runs with azimuth (x on the face), v up with height.
    assert np.corrcoef(model.uvs[:, 1].numpy(), model.mean_shape[:, 1].numpy())[0, 1] > 0.999
    facing = model.mean_shape[:, 2] > 0
    assert np.corrcoef(model.uvs[facing, 0].numpy(), model.mean_shape[facing, 0].numpy())[0, 1] > 0.99
    # Front triangles are triangles of the mesh, over front vertices only.
    all_tris = {tuple(t) for t in model.triangles.tolist()}
    assert all(tuple(t) in all_tris for t in model.front_triangles.tolist())
    front = set(model.front_vertex_ids.tolist())
    assert set(model.front_triangles.unique().tolist()) <= front
    assert set(torch.nonzero(model.skin_mask).flatten().tolist()) <= front
    assert 0.5 * n < len(front) < 0.9 * n


def test_point_buf_lists_exactly_the_incident_triangles(model):
    tris = model.triangles.numpy()
    incident = [set() for _ in range(model.n_vertices)]
    for t, tri in enumerate(tris):
        for v in tri:
            incident[v].add(t)
    assert max(len(s) for s in incident) <= 8 and min(len(s) for s in incident) >= 1
    buf = model.point_buf.numpy()
    for v in range(0, model.n_vertices, 97):
        assert set(buf[v][buf[v] < model.n_triangles].tolist()) == incident[v]


def test_landmarks_sit_on_the_standard_landmarks(model):
    got = model.mean_shape[model.landmark_ids].double().numpy()
    assert np.abs(got - STANDARD_LANDMARKS_68).max() < 1e-5   # dm: 1 micrometre


def test_recentring_keeps_landmarks_in_place(model):
    # The face model subtracts the vertex centroid; it is within a millimetre of the origin.
    assert float(model.mean_shape.double().mean(0).norm()) < 0.01


def test_triangles_are_consistently_oriented_outwards(model):
    tris = model.triangles.numpy()
    directed = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    # A consistently oriented manifold uses every directed edge at most once.
    assert len(np.unique(directed, axis=0)) == len(directed)
    points = model.mean_shape.double().numpy()
    normals = face_normals(points, tris)
    nose_tip = int(model.landmark_ids[30])
    around_tip = normals[(tris == nose_tip).any(1)].sum(0)
    assert around_tip[2] / np.linalg.norm(around_tip) > 0.8
    # Every triangle faces away from the head's vertical axis (through the ears' z).
    radial = points[tris].mean(1) - np.array([0.0, 0.0, STANDARD_LANDMARKS_68[0, 2]])
    radial[:, 1] = 0.0
    assert np.all((normals * radial).sum(1) > 0)


def test_mesh_is_manifold_without_degenerate_triangles(model):
    tris = model.triangles.numpy()
    points = model.mean_shape.double().numpy()
    areas = 0.5 * np.linalg.norm(face_normals(points, tris), axis=1)
    assert areas.min() > 0.2 * np.median(areas)   # the landmark slide keeps cells well shaped
    assert len(np.unique(np.sort(tris, axis=1), axis=0)) == len(tris)
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert counts.max() <= 2
    # Closed rows/columns grid: boundary edges only along the outline of the domain.
    assert (counts == 1).sum() < 0.05 * len(counts)


def test_basis_magnitudes_and_orthogonality(model):
    n = model.n_vertices
    def rms_mm(basis):   # per-vertex RMS displacement of each column, in mm
        return (basis.double().reshape(n, 3, -1) ** 2).sum(1).mean(0).sqrt().numpy() * 100.0
    id_rms, exp_rms = rms_mm(model.id_basis), rms_mm(model.exp_basis)
    assert 2.0 <= id_rms[0] <= 6.0
    assert np.all(id_rms > 0.05) and np.all(id_rms < 6.0)
    assert id_rms[60:].mean() < id_rms[:10].mean() / 4          # variance decays
    assert 1.0 <= exp_rms[JAW_OPEN] <= 5.0 and np.all(exp_rms < 5.0)
    tex_rms = (model.tex_basis.double().reshape(n, 3, -1) ** 2).mean(1).mean(0).sqrt().numpy()
    assert 15.0 <= tex_rms[0] <= 40.0 and np.all(tex_rms < 40.0)
    for basis in (model.id_basis, model.exp_basis, model.tex_basis):
        gram = basis.double().T @ basis.double()
        scale = gram.diag().sqrt()
        assert (gram / scale[:, None] / scale[None] - torch.eye(len(scale), dtype=torch.float64)).abs().max() < 1e-4
    albedo = model.mean_albedo
    assert 0.0 <= float(albedo.min()) and float(albedo.max()) <= 255.0


def test_jaw_open_moves_the_chin_down_and_opens_the_mouth(model):
    lm = model.landmark_ids.numpy()
    neutral, opened = shape_of(model), shape_of(model, exp={JAW_OPEN: 3.0})
    assert opened[lm[8], 1] - neutral[lm[8], 1] < -0.05                    # chin down > 5 mm
    gap = (opened[lm[62], 1] - opened[lm[66], 1]) - (neutral[lm[62], 1] - neutral[lm[66], 1])
    assert 0.08 < gap < 0.3                                                 # 0.8 - 3 cm at 3 sigma
    assert abs(opened[lm[27], 1] - neutral[lm[27], 1]) < 0.005             # nose bridge stays


def test_blink_closes_the_eyes_and_smile_lifts_the_corners(model):
    lm = model.landmark_ids.numpy()
    neutral, blink = shape_of(model), shape_of(model, exp={BLINK: 4.0})
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        assert neutral[lm[upper], 1] - neutral[lm[lower], 1] > 0.05
        assert abs(blink[lm[upper], 1] - blink[lm[lower], 1]) < 0.02
    smile = shape_of(model, exp={SMILE: 2.0})
    assert smile[lm[48], 1] - neutral[lm[48], 1] > 0.03 and smile[lm[54], 1] - neutral[lm[54], 1] > 0.03


def test_random_faces_stay_valid_surfaces(model):
    """Random identities and expressions flip no front triangle away from the mouth and eyes.

    Between the lips the mesh is closed by a ~2 mm strip (as BFM09's is); a negative jaw-open
    coefficient below about -0.35 closes the lips past touching and folds that strip, and
    blink + wink together can close an eye past its lower lid (a linear model like BFM09
    does the same), so the mouth and eye openings only get a loose bound."""
    g = torch.Generator().manual_seed(0)
    tris = model.front_triangles.numpy()
    points = model.mean_shape.double().numpy()
    lips = STANDARD_LANDMARKS_68[48:60, :2]
    centres = points[tris].mean(1)[:, :2]
    near_openings = ((np.abs(centres[:, 0]) < np.abs(lips[:, 0]).max() + 0.08)
                  & (centres[:, 1] > lips[:, 1].min() - 0.04) & (centres[:, 1] < lips[:, 1].max() + 0.04))
    eyes = STANDARD_LANDMARKS_68[36:48, :2]
    near_eyes = ((np.abs(centres[:, 0]) > np.abs(eyes[:, 0]).min() - 0.02)
                 & (np.abs(centres[:, 0]) < np.abs(eyes[:, 0]).max() + 0.02)
                 & (centres[:, 1] > eyes[:, 1].min() - 0.02) & (centres[:, 1] < eyes[:, 1].max() + 0.02))
    near_openings |= near_eyes
    reference = face_normals(points, tris)
    for _ in range(8):
        flat = (model.mean_shape.reshape(-1) + model.id_basis @ torch.randn(80, generator=g)
                + model.exp_basis @ (0.7 * torch.randn(64, generator=g)))
        flipped = (face_normals(flat.reshape(-1, 3).double().numpy(), tris) * reference).sum(1) <= 0
        assert not flipped[~near_openings].any()
        assert flipped[near_openings].mean() < 0.15


def test_masks_exclude_facial_features(model):
    skin = model.skin_mask.numpy()
    lm = model.landmark_ids.numpy()
    assert not skin[lm[36:68]].any()         # eyes, lips
    assert not skin[lm[17:27]].any()         # brows
    points = model.mean_shape.numpy()
    for spot in ([0.0, 0.65, 0.35], [0.40, -0.15, 0.20], [-0.40, -0.15, 0.20]):   # forehead, cheeks
        nearest = np.argmin(((points - np.array(spot)) ** 2).sum(1))
        assert skin[nearest], spot
    front = np.zeros(model.n_vertices, dtype=bool)
    front[model.front_vertex_ids.numpy()] = True
    assert front[lm[17:68]].all()
    assert not front[np.argmin(points[:, 1])]        # the neck is outside


def test_projects_like_a_face_through_the_original_camera(model):
    face_model = FaceModel(model, Camera())
    with torch.no_grad():
        geometry = face_model.compute(Coeffs.zeros(1, face_model.coeff_sizes))
    landmarks = geometry.landmarks[0].numpy()
    width = landmarks[16, 0] - landmarks[0, 0]
    assert 130.0 < width < 170.0                        # ~1.5 dm at 10 dm with focal 1015
    assert landmarks[8, 1] > landmarks[33, 1] > landmarks[27, 1]   # y down: chin below nose
    assert np.all((landmarks > 0) & (landmarks < 224))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="resolution"):
        build_embedded_model(resolution=10)
    with pytest.raises(ValueError, match="n_exp"):
        build_embedded_model(n_exp=0)


@pytest.mark.slow
def test_bfm_density_resolution():
    model = build_embedded_model(BFM_DENSITY_RESOLUTION, n_id=8, n_exp=8, n_tex=8)
    assert 30_000 <= model.n_vertices <= 40_000
    got = model.mean_shape[model.landmark_ids].double().numpy()
    assert np.abs(got - STANDARD_LANDMARKS_68).max() < 1e-5


@pytest.mark.slow
def test_fits_real_faces_from_their_68_landmarks(shared_data):
    """Human proportions: a MAP landmark fit to dlib's 68 points on real photos lands within
    a few pixels (on a ~150 px face) with moderate coefficients."""
    from recon.landmark_fit import fit_landmarks
    from recon.preprocess.align import align_face, open_rgb
    from recon.preprocess.detect import LandmarkDetector

    detector = LandmarkDetector()
    targets = []
    for path in sorted((shared_data / "examples").glob("*.jpg"))[:4]:
        photo = open_rgb(path)
        detection = detector.detect_largest(photo)
        assert detection is not None, path.name
        targets.append(align_face(photo, detection.landmarks68).landmarks)
    face_model = FaceModel(build_embedded_model(), Camera())
    target = torch.tensor(np.stack(targets), dtype=torch.float32)
    coeffs = fit_landmarks(face_model, target)
    with torch.no_grad():
        fitted = face_model.compute(coeffs).landmarks
    assert (fitted - target).norm(dim=-1).mean(1).max() < 3.0
    assert coeffs.id.abs().max() < 4.0 and coeffs.exp.abs().max() < 4.0

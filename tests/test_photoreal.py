"""faceset synth --realism photo: its files agree with each other, its renderer is its own and
matches analytic answers, and its shapes lie outside the fitted model's basis."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy.ndimage import binary_dilation
import torch
from PIL import Image

from evaluation.distance import vertex_normals
from evaluation.meshio import read_mesh, read_pp
from faceset.photoreal.generate import PhotoConfig, synthesize_photos
from faceset.photoreal.mesh import DenseMesh, ellipsoid, subdivide
from faceset.photoreal.render import Light, ShadowMap, rasterize, shade
from faceset.synth import NOW_FROM_IBUG68, default_model
from recon.face_model import FaceModel, rotation_matrix
from recon.preprocess.detections import read_detections
from recon.standard_landmarks import five_point_template
from recon.types import Camera

RESOLUTION = 40
CONFIG = dict(subjects=1, images=2, seed=4, image_size=(96, 128), texture_size=128,
              occluder_probability=0.5)


@pytest.fixture(scope="module")
def face_model():
    return FaceModel(default_model(RESOLUTION))


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, face_model):
    out = tmp_path_factory.mktemp("photoreal")
    synthesize_photos(out, PhotoConfig(**CONFIG), default_model(RESOLUTION))
    return out


def _truth(folder: Path, stem: str) -> dict:
    return scipy.io.loadmat(folder / "subject_000" / "truth" / f"{stem}.mat")


def _posed_landmarks(face_model, vertices_mm, truth):
    """The 68 landmarks re-projected from the truth files with the fitted model's camera
    maths (recon.types.Camera, recon.face_model.rotation_matrix), y-down pixels."""
    width, height = (int(v) for v in truth["image_size"].ravel())
    camera = Camera.from_intrinsics(torch.tensor(truth["intrinsics"]), width, height)
    exp = torch.tensor(truth["exp"], dtype=torch.float32).reshape(1, -1)
    expression = (exp @ face_model.exp_basis.T).view(-1, 3)[face_model.landmark_ids].double()
    canonical = torch.tensor(vertices_mm, dtype=torch.float64)[face_model.landmark_ids] / 100.0 + expression
    angle = torch.tensor(truth["angle"], dtype=torch.float64).reshape(1, 3)
    world = canonical @ rotation_matrix(angle)[0].T + torch.tensor(truth["trans"], dtype=torch.float64).reshape(3)
    return camera.project(camera.to_camera_space(world)).numpy(), camera


def test_layout_manifest_and_jpeg_photos(photo_dir):
    manifest = json.loads((photo_dir / "synth.json").read_text())
    assert manifest["config"]["realism"] == "photo"
    images = manifest["subjects"]["subject_000"]["images"]
    assert len(images) == 2
    for item in images:
        path = photo_dir / item["photo"]
        assert path.suffix == ".jpg"
        with Image.open(path) as im:
            assert im.format == "JPEG"
        truth = _truth(photo_dir, path.stem)
        assert tuple(truth["image_size"].ravel()) == im.size
        for key in ("intrinsics", "angle", "trans", "exp", "yaw_deg", "occluded",
                    "camera_distance_mm", "focal_px"):
            assert key in truth, key
        assert int(truth["occluded"].ravel()[0]) == int(item["occluded"])
    assert (photo_dir / "scans" / "subject_000" / "subject_000.obj").is_file()


def test_landmarks_detections_and_scan_agree(photo_dir, face_model):
    subject = scipy.io.loadmat(photo_dir / "subject_000" / "truth" / "subject.mat")
    vertices_mm = subject["model_vertices_mm"]
    assert vertices_mm.shape == (face_model.n_vertices, 3)
    scan = read_mesh(photo_dir / "scans" / "subject_000" / "subject_000.obj")
    np.testing.assert_allclose(scan.vertices[:face_model.n_vertices], vertices_mm, atol=1e-3)
    pp, _ = read_pp(photo_dir / "scans_lmks_onlypp" / "subject_000" / "subject_000_picked_points.pp")
    np.testing.assert_allclose(pp, vertices_mm[face_model.landmark_ids.numpy()[list(NOW_FROM_IBUG68)]], atol=1e-3)
    for k in range(2):
        stem = f"subject_000_{k:02d}"
        truth = _truth(photo_dir, stem)
        written = np.loadtxt(photo_dir / "subject_000" / "images" / "landmarks" / f"{stem}.txt")
        expected, _ = _posed_landmarks(face_model, vertices_mm, truth)
        np.testing.assert_allclose(written, expected, atol=2e-3)   # mm-rounded scan points
        five = read_detections(photo_dir / "subject_000" / "images" / "detections" / f"{stem}.txt")
        np.testing.assert_allclose(five, five_point_template(written), atol=1e-3)


def test_landmarks_fall_on_the_rendered_face(photo_dir, face_model):
    """Rasterize the written scan (posed with the truth) and check the written landmarks
    land on covered pixels, and that the visible ones are at the front of the z-buffer."""
    scan = read_mesh(photo_dir / "scans" / "subject_000" / "subject_000.obj")
    mesh = DenseMesh.of(face_model)
    np.testing.assert_array_equal(scan.faces, mesh.triangles)
    for k in range(2):
        stem = f"subject_000_{k:02d}"
        truth = _truth(photo_dir, stem)
        exp = truth["exp"].reshape(-1)
        expression = mesh.lift((face_model.exp_basis.double().numpy() @ exp).reshape(-1, 3))
        canonical = scan.vertices / 100.0 + expression
        angle = torch.tensor(truth["angle"], dtype=torch.float64).reshape(1, 3)
        world = canonical @ rotation_matrix(angle)[0].numpy().T + truth["trans"].reshape(3)
        width, height = (int(v) for v in truth["image_size"].ravel())
        camera = Camera.from_intrinsics(torch.tensor(truth["intrinsics"]), width, height)
        cam = camera.to_camera_space(torch.tensor(world)).numpy()
        xy = camera.project(torch.tensor(cam)).numpy()
        raster = rasterize(xy, cam[:, 2], mesh.triangles, width, height, cull_back=True)
        written = np.loadtxt(photo_dir / "subject_000" / "images" / "landmarks" / f"{stem}.txt")
        cols, rows = np.round(written).astype(int).T
        # nose, eyes and mouth lie inside the face; brow ends and the jaw line may sit on
        # the silhouette, within a pixel of it
        assert raster.mask[rows[27:], cols[27:]].all()
        assert binary_dilation(raster.mask, iterations=1)[rows, cols].all()
        depth = cam[face_model.landmark_ids.numpy(), 2]
        # points that face the camera squarely are the nearest surface at their pixel (a
        # pixel of these small photos spans a few mm of a sloped face: 5 mm tolerance)
        ids = face_model.landmark_ids.numpy()
        normals = vertex_normals(world, mesh.triangles)[ids]
        towards_eye = np.array([0.0, 0.0, camera.distance]) - world[ids]
        facing = (normals * towards_eye).sum(1) / np.linalg.norm(towards_eye, axis=1) > 0.5
        visible = np.abs(raster.depth[rows, cols] - depth) < 0.05
        assert facing.sum() >= 20
        assert visible[facing].mean() > 0.9, (visible, facing)


def test_renderer_shares_no_code_with_the_fitted_renderer():
    package = Path(__file__).resolve().parents[1] / "faceset" / "photoreal"
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 5
    forbidden_names = {"shade", "sh_basis", "vertex_normals", "compute"}
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
                assert not any(n.startswith("recon.render") or n == "recon.face_model" for n in names), path
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not module.startswith("recon.render"), path
                if module == "recon.face_model" or module.endswith("face_model"):
                    assert not forbidden_names & {a.name for a in node.names}, (path, module)
                    assert {a.name for a in node.names} <= {"FaceModel"}, (path, module)
            elif isinstance(node, ast.Attribute) and node.attr in ("sh_basis", "MeshRenderer"):
                raise AssertionError(f"{path} uses {node.attr}")


def test_plane_depth_at_pixel_centres_is_exact():
    f, cx, cy, size = 80.0, 31.5, 27.0, 64
    z0, a, b = 5.0, 0.3, -0.2
    corners = np.array([[-3.0, -3.0], [3.0, -3.0], [3.0, 3.0], [-3.0, 3.0]])
    z = z0 + a * corners[:, 0] + b * corners[:, 1]
    xy = np.stack([f * corners[:, 0] / z + cx, cy - f * corners[:, 1] / z], 1)
    raster = rasterize(xy, z, np.array([[0, 1, 2], [0, 2, 3]]), size, size)
    rows, cols = np.nonzero(raster.mask)
    assert len(rows) > 1000
    # ray through pixel centre (u, v): X = Z (u - cx) / f, Y = Z (cy - v) / f on the plane
    expected = z0 / (1 - a * (cols - cx) / f - b * (cy - rows) / f)
    np.testing.assert_allclose(raster.depth[rows, cols], expected, rtol=1e-9)


def test_triangle_coverage_counts_the_pixel_centres_inside():
    tri = np.array([[10.3, 20.7], [180.2, 40.1], [60.5, 170.9]])
    raster = rasterize(tri, np.ones(3), np.array([[0, 1, 2]]), 200, 200, perspective=False)
    yy, xx = np.mgrid[0:200, 0:200]
    p = np.stack([xx, yy], -1).astype(float)
    def side(a, b):   # independent inside test: the sign of each edge's cross product
        return (b[0] - a[0]) * (p[..., 1] - a[1]) - (b[1] - a[1]) * (p[..., 0] - a[0])
    s = np.stack([side(tri[0], tri[1]), side(tri[1], tri[2]), side(tri[2], tri[0])])
    inside = (s >= 0).all(0) | (s <= 0).all(0)
    np.testing.assert_array_equal(raster.mask, inside)
    (ax, ay), (bx, by) = tri[1] - tri[0], tri[2] - tri[0]
    area = 0.5 * abs(ax * by - ay * bx)
    perimeter = sum(np.linalg.norm(tri[k] - tri[(k + 1) % 3]) for k in range(3))
    assert abs(raster.mask.sum() - area) < 0.5 * perimeter


def test_sphere_lambert_shading_matches_the_analytic_value():
    radius, distance, f, size = 1.0, 6.0, 150.0, 96
    vertices, triangles = ellipsoid((radius,) * 3, (0.0, 0.0, 0.0), 96, 192)
    depth = distance - vertices[:, 2]
    c = (size - 1) / 2
    xy = np.stack([f * vertices[:, 0] / depth + c, c - f * vertices[:, 1] / depth], 1)
    raster = rasterize(xy, depth, triangles, size, size, cull_back=True)
    normals = vertex_normals(vertices, triangles)
    pixels, values = raster.gather(np.concatenate([vertices, normals], 1), triangles)
    nrm = values[:, 3:] / np.linalg.norm(values[:, 3:], axis=1, keepdims=True)
    light = Light(np.array([0.4, 0.5, 0.77]), np.ones(3))
    ones = np.ones(len(pixels))
    got = shade(values[:, :3], nrm, np.tile([0, 0, 1.0], (len(pixels), 1)), np.ones((len(pixels), 3)),
                0 * ones, [light], np.zeros(3), ones, [ones])[:, 0]
    # analytic: intersect the pixel's ray with the sphere, Lambert at the hit point
    rows, cols = np.divmod(pixels, size)
    ray = np.stack([(cols - c) / f, (c - rows) / f, -np.ones(len(rows))], 1)
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    eye = np.array([0.0, 0.0, distance])
    b = ray @ eye
    disc = b ** 2 - (eye @ eye - radius ** 2)
    interior = disc > 0.05 * radius ** 2          # away from the silhouette's facets
    t = -b[interior] - np.sqrt(disc[interior])
    hit = eye + t[:, None] * ray[interior]
    expected = np.clip(hit @ (light.direction / np.linalg.norm(light.direction)), 0, None)
    assert interior.sum() > 1500
    assert np.abs(got[interior] - expected).max() < 0.02


def test_shadow_of_a_square_on_a_plane():
    ground = np.array([[-2.0, -2.0, 0.0], [2.0, -2.0, 0.0], [2.0, 2.0, 0.0], [-2.0, 2.0, 0.0]])
    height, half = 0.5, 0.3
    square = np.array([[-half, -half, height], [half, -half, height], [half, half, height], [-half, half, height]])
    vertices = np.concatenate([ground, square])
    triangles = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    direction = np.array([0.4, 0.2, 1.0])
    shadow = ShadowMap.build(vertices, triangles, direction, 512)
    g = np.linspace(-1.5, 1.5, 61)
    points = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    points = np.column_stack([points, np.zeros(len(points))])
    lit = shadow.lit(points, bias=2.0 / shadow.scale, soft=0)
    # towards the light the ray p + s d reaches the square's height at s = height / d_z
    reach = points[:, :2] + height / direction[2] * direction[:2]
    margin = 3.0 / shadow.scale
    inside = (np.abs(reach) < half - margin).all(1)
    outside = (np.abs(reach) > half + margin).any(1)
    assert inside.sum() > 20
    assert (lit[inside] == 0).all()
    assert (lit[outside] == 1).all()


def test_subdivision_keeps_model_vertices_and_quadruples_triangles(face_model):
    mesh = DenseMesh.of(face_model)
    assert mesh.n_vertices > 3 * face_model.n_vertices
    assert len(mesh.triangles) == 4 * len(face_model.triangles)
    np.testing.assert_allclose(mesh.mean[:face_model.n_vertices], face_model.mean_shape.view(-1, 3).numpy())
    edges, tris = subdivide(np.array([[0, 1, 2]]), 3)
    assert len(edges) == 3 and len(tris) == 4


def test_scan_is_denser_and_out_of_the_basis(photo_dir, face_model):
    subject = scipy.io.loadmat(photo_dir / "subject_000" / "truth" / "subject.mat")
    vertices_mm = subject["model_vertices_mm"]
    scan = read_mesh(photo_dir / "scans" / "subject_000" / "subject_000.obj")
    assert len(scan.vertices) > 3 * len(vertices_mm)
    # every model vertex lies on the scan surface (it is one of the scan's vertices)
    gap = np.linalg.norm(scan.vertices[None, :, :] - vertices_mm[:200, None, :], axis=-1).min(1)
    assert gap.max() < 1e-3
    # the best identity of the fitted basis leaves a residual: the shape is out of it
    mean_mm = face_model.mean_shape.double().numpy() * 100.0
    basis_mm = face_model.id_basis.double().numpy() * 100.0
    front = face_model.front_vertex_ids.numpy()
    rows = (3 * front[:, None] + np.arange(3)).ravel()
    target = vertices_mm.reshape(-1) - mean_mm
    coeffs, *_ = np.linalg.lstsq(basis_mm[rows], target[rows], rcond=None)
    residual = (target - basis_mm @ coeffs)[rows].reshape(-1, 3)
    rms = np.sqrt((residual ** 2).sum(1).mean())
    assert rms > 0.5, rms
    assert np.abs(subject["id"]).max() > 2.0            # some coefficients beyond 2 SD


def test_same_seed_same_files_other_seed_other_photos(photo_dir, tmp_path):
    synthesize_photos(tmp_path / "again", PhotoConfig(**CONFIG), default_model(RESOLUTION))
    for path in sorted(photo_dir.rglob("*")):
        if path.is_file() and path.suffix != ".mat":
            assert (tmp_path / "again" / path.relative_to(photo_dir)).read_bytes() == path.read_bytes(), path
    other = dict(CONFIG, seed=5, images=1)
    synthesize_photos(tmp_path / "other", PhotoConfig(**other), default_model(RESOLUTION))
    stem = Path("subject_000/images/subject_000_00.jpg")
    assert (tmp_path / "other" / stem).read_bytes() != (photo_dir / stem).read_bytes()


def test_bad_config_is_refused_with_one_message():
    with pytest.raises(ValueError, match="occluder_probability.*in \\[0, 1\\].*detail_mm must be non-negative"):
        PhotoConfig(occluder_probability=1.5, detail_mm=-1.0).validate()
    with pytest.raises(ValueError, match="image_size"):
        PhotoConfig(image_size=(300, 200)).validate()
    with pytest.raises(ValueError, match="subjects must be >= 1"):
        synthesize_photos("/nonexistent-never-written", PhotoConfig(subjects=0))


def test_cli_photo_mode_refuses_bad_probability(tmp_path, capsys):
    from faceset.cli import main
    assert main(["synth", str(tmp_path / "x"), "--realism", "photo", "--occluder-probability", "-0.5"]) == 2
    assert "--occluder-probability is a probability (0 to 1), got -0.5" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

"""faceset synth: files agree with each other (photos, landmarks, detections, scans) and
a seed reproduces them."""

import hashlib
import json

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from evaluation.meshio import read_mesh, read_pp
from faceset.cli import main
from faceset.synth import NOW_FROM_IBUG68, SynthConfig, default_model, synthesize
from recon.face_model import FaceModel
from recon.io import read_coeffs_mat
from recon.preprocess.detections import read_detections
from recon.standard_landmarks import five_point_template
from recon.types import Camera, Coeffs

RESOLUTION = 40


@pytest.fixture(scope="module")
def model():
    return default_model(RESOLUTION)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory, model):
    out = tmp_path_factory.mktemp("synth")
    config = SynthConfig(subjects=1, images=3, seed=5, image_size=(120, 160), occluder_probability=0.5)
    synthesize(out, config, model)
    return out


def _digest(folder):
    """File name -> content hash; .mat files by their arrays (scipy stamps the date)."""
    def content(path):
        if path.suffix != ".mat":
            return path.read_bytes()
        data = scipy.io.loadmat(path)
        return b"".join(k.encode() + np.ascontiguousarray(data[k]).tobytes()
                        for k in sorted(data) if not k.startswith("__"))
    return {p.relative_to(folder).as_posix(): hashlib.sha256(content(p)).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_and_manifest(synth_dir):
    manifest = json.loads((synth_dir / "synth.json").read_text())
    images = manifest["subjects"]["subject_000"]["images"]
    assert len(images) == 3
    for item in images:
        stem = item["photo"].split("/")[-1][:-4]
        assert (synth_dir / item["photo"]).is_file()
        assert (synth_dir / "subject_000" / "images" / "detections" / f"{stem}.txt").is_file()
        assert (synth_dir / "subject_000" / "images" / "landmarks" / f"{stem}.txt").is_file()
        assert (synth_dir / "subject_000" / "truth" / f"{stem}.mat").is_file()
    assert (synth_dir / "scans" / "subject_000" / "subject_000.obj").is_file()


def test_true_coefficients_project_onto_written_landmarks_and_detections(synth_dir, model):
    truth = scipy.io.loadmat(synth_dir / "subject_000" / "truth" / "subject.mat")
    displacement = torch.tensor(truth["displacement"], dtype=torch.float32)
    for k in range(3):
        stem = f"subject_000_{k:02d}"
        coeffs = read_coeffs_mat(synth_dir / "subject_000" / "truth" / f"{stem}.mat")
        extra = scipy.io.loadmat(synth_dir / "subject_000" / "truth" / f"{stem}.mat")
        width, height = (int(v) for v in extra["image_size"].ravel())
        camera = Camera.from_intrinsics(torch.tensor(extra["intrinsics"]), width, height)
        c = Coeffs(**{g: torch.tensor(coeffs[g])[None] for g in Coeffs.GROUPS})
        np.testing.assert_allclose(coeffs["id"], truth["id"].ravel(), rtol=1e-6)
        # project the true landmark vertices independently of the generator's code path
        fm = FaceModel(model, camera=camera)
        shape = fm.shape(c.id, c.exp)[0] + displacement
        from recon.face_model import rotation_matrix
        world = shape @ rotation_matrix(c.angle)[0].T + c.trans[0]
        points = world[fm.landmark_ids].double()
        z = camera.distance - points[:, 2]
        u = camera.focal_x * points[:, 0] / z + camera.center_x
        v = (height - 1) - (camera.focal_y * points[:, 1] / z + camera.center_y)
        written = np.loadtxt(synth_dir / "subject_000" / "images" / "landmarks" / f"{stem}.txt")
        np.testing.assert_allclose(written, torch.stack([u, v], 1).numpy(), atol=1e-3)
        five = read_detections(synth_dir / "subject_000" / "images" / "detections" / f"{stem}.txt")
        np.testing.assert_allclose(five, five_point_template(written), atol=1e-9)
        photo = np.asarray(Image.open(synth_dir / "subject_000" / "images" / f"{stem}.png"))
        assert photo.shape == (height, width, 3) and photo.dtype == np.uint8


def test_scan_is_neutral_shape_in_mm_and_pp_holds_its_landmark_vertices(synth_dir, model):
    truth = scipy.io.loadmat(synth_dir / "subject_000" / "truth" / "subject.mat")
    fm = FaceModel(model)
    neutral = fm.shape(torch.tensor(truth["id"], dtype=torch.float32),
                       torch.zeros(1, fm.coeff_sizes["exp"]))[0] + torch.tensor(truth["displacement"])
    scan = read_mesh(synth_dir / "scans" / "subject_000" / "subject_000.obj")
    np.testing.assert_allclose(scan.vertices, neutral.double().numpy() * 100.0, atol=1e-5)
    np.testing.assert_array_equal(scan.faces, fm.triangles.numpy())
    points, names = read_pp(synth_dir / "scans_lmks_onlypp" / "subject_000" / "subject_000_picked_points.pp")
    ids = fm.landmark_ids.numpy()[list(NOW_FROM_IBUG68)]
    np.testing.assert_allclose(points, scan.vertices[ids], atol=1e-3)
    assert names[0] == "right_eye_outer"
    # the subject's right eye is on the image left: negative x in model space
    assert points[0, 0] < points[1, 0] < 0 < points[2, 0] < points[3, 0]
    # the detail is a few mm, not zero: the model cannot express the scan exactly
    rms = float(torch.tensor(truth["displacement"]).norm(dim=1)[fm.skin_mask].pow(2).mean().sqrt()) * 100
    assert 1.5 < rms < 2.5


def test_seed_reproduces_and_cli_runs(tmp_path, synth_dir, model, monkeypatch):
    again = tmp_path / "again"
    synthesize(again, SynthConfig(subjects=1, images=3, seed=5, image_size=(120, 160),
                                  occluder_probability=0.5), model)
    assert _digest(again) == _digest(synth_dir)
    other = tmp_path / "other"
    synthesize(other, SynthConfig(subjects=1, images=1, seed=6, image_size=(120, 160)), model)
    assert _digest(other)["subject_000/images/subject_000_00.png"] != _digest(synth_dir)["subject_000/images/subject_000_00.png"]
    code = main(["synth", str(tmp_path / "cli"), "--subjects", "1", "--images", "1",
                 "--model-resolution", str(RESOLUTION)])
    assert code == 0 and (tmp_path / "cli" / "synth.json").is_file()
    assert main(["synth", str(tmp_path / "bad"), "--subjects", "0"]) == 2

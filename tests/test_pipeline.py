"""The per-image reconstruct job end to end, on real photos, with the embedded model."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from faceset.cli import build_parser
from faceset.pipeline import PhotoPreparer, ReconstructOptions, output_paths, reconstruct_folder
from recon.io import read_obj
from recon.preprocess.align import CropTransform


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("photos")
    (folder / "detections").mkdir()
    for stem in ("000002", "000031"):
        shutil.copy(shared_data / "examples" / f"{stem}.jpg", folder)
        shutil.copy(shared_data / "examples" / "detections" / f"{stem}.txt", folder / "detections")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.fixture(scope="module")
def first_run(photo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    report = reconstruct_folder(photo_dir, out, ReconstructOptions(device="cpu"), show_progress=False)
    return out, report


def test_bad_photo_is_reported_and_the_rest_done(first_run):
    _, report = first_run
    assert sorted(report.done) == ["000002.jpg", "000031.jpg"]
    assert list(report.failed) == ["broken.jpg"]
    assert "broken.jpg" in report.failed["broken.jpg"]


def test_outputs_have_the_original_formats(first_run):
    out, _ = first_run
    mat = scipy.io.loadmat(out / "000002.mat")
    for key, size in {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}.items():
        assert mat[key].shape == (1, size) and mat[key].dtype == np.float32
    assert mat["lm68"].shape == (1, 68, 2)
    strip = np.asarray(Image.open(out / "000002.png"))
    assert strip.shape == (224, 672, 3)
    mesh = read_obj(out / "000002.obj")
    assert mesh["colors"] is not None and mesh["triangles"].min() == 0
    canonical = read_obj(out / "000002_canonical.obj")
    assert canonical["vertices"].shape == mesh["vertices"].shape
    CropTransform.load(out / "000002_transform.json")


def test_canonical_outputs_are_a_drop_in_now_prediction(first_run):
    """The canonical mesh + its 7 landmarks score ~0 mm against itself scaled to mm as a
    NoW scan, through the evaluation suite's own readers and protocol."""
    from evaluation.meshio import read_mesh
    from evaluation.now import evaluate_now_image
    out, _ = first_run
    prediction = read_mesh(out / "000002_canonical.obj")
    lmk7 = np.load(out / "000002_canonical_lmk7.npy")
    assert lmk7.shape == (7, 3)
    scan = read_mesh(out / "000002_canonical.obj")
    scan.vertices = scan.vertices * 100.0  # decimetres -> mm, as a scan
    result = evaluate_now_image(scan, lmk7 * 100.0, prediction, lmk7)
    assert np.median(result.distances) < 1e-3


def test_predicted_landmarks_follow_the_photo(first_run, photo_dir):
    """The fitted face's eye and mouth landmarks land near the given 5 points."""
    out, _ = first_run
    lm68 = scipy.io.loadmat(out / "000031.mat")["lm68"][0]
    transform = CropTransform.load(out / "000031_transform.json")
    five = np.loadtxt(photo_dir / "detections" / "000031.txt")
    crop_five = transform.to_crop(five)
    predicted = np.stack([lm68[[36, 39]].mean(0), lm68[[42, 45]].mean(0), lm68[30], lm68[48], lm68[54]])
    assert np.abs(predicted - crop_five).max() < 8.0


def test_rerun_skips_finished_photos(first_run, photo_dir):
    out, _ = first_run
    stamps = {p: p.stat().st_mtime_ns for p in output_paths(out, "000002")}
    report = reconstruct_folder(photo_dir, out, ReconstructOptions(device="cpu"), show_progress=False)
    assert sorted(report.skipped) == ["000002.jpg", "000031.jpg"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_every_subcommand_has_help():
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert {"reconstruct", "demo", "convert-bfm"} <= names
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "faceset", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "reconstruct" in result.stdout


def test_checkpoint_path_writes_the_network_coefficients(photo_dir, tmp_path):
    """With a checkpoint in the original's layout, the .mat holds R-Net's output on the crop."""
    import torch

    from recon.rnet import load_checkpoint
    from test_rnet_io import original_layout_state_dict

    state = original_layout_state_dict(seed=3)
    for i in range(7):  # small heads keep the face in front of the camera
        state[f"final_layers.{i}.weight"] *= 0.01
        state[f"final_layers.{i}.bias"] *= 0.01
    checkpoint = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": state}, checkpoint)
    out = tmp_path / "out"
    report = reconstruct_folder(photo_dir, out, ReconstructOptions(checkpoint=checkpoint, device="cpu"),
                                show_progress=False)
    assert "000002.jpg" in report.done
    crop = PhotoPreparer().prepare(photo_dir / "000002.jpg").crop_tensor()[None]
    with torch.no_grad():
        expected = load_checkpoint(checkpoint).predict(crop)
    mat = scipy.io.loadmat(out / "000002.mat")
    for group in ("id", "exp", "tex", "angle", "gamma", "trans"):
        np.testing.assert_allclose(mat[group][0], getattr(expected, group)[0].numpy(), rtol=1e-5, atol=1e-6)


def test_preparer_without_68_landmarks_skips_dlibs_predictor(photo_dir):
    """R-Net does not use the 68 points: a photo with a detections file is prepared
    without loading dlib at all, and the crop is the same."""
    lean = PhotoPreparer(need_landmarks68=False)
    photo = lean.prepare(photo_dir / "000002.jpg")
    assert photo.landmarks68 is None and lean._detector is None
    full = PhotoPreparer().prepare(photo_dir / "000002.jpg")
    assert full.landmarks68.shape == (68, 2)
    np.testing.assert_array_equal(photo.crop, full.crop)


def test_insightface_detector_is_optional(photo_dir, tmp_path):
    """Asking for the insightface detector without the extra gives one clear message."""
    import importlib.util

    from faceset.pipeline import PhotoPreparer
    if importlib.util.find_spec("insightface") is not None:
        pytest.skip("insightface is installed here")
    preparer = PhotoPreparer(detector="insightface")
    with pytest.raises(ImportError, match="faceset\\[insightface\\]"):
        preparer.face_detector
    with pytest.raises(ValueError, match="unknown face detector"):
        PhotoPreparer(detector="mtcnn")


def test_torchrun_ranks_share_the_photos(monkeypatch, tmp_path):
    from faceset.pipeline import this_process_share
    photos = [tmp_path / f"{i}.jpg" for i in range(5)]
    monkeypatch.setenv("WORLD_SIZE", "2")
    shares = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        shares.append(this_process_share(photos))
    assert shares == [photos[0::2], photos[1::2]]
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="outside WORLD_SIZE"):
        this_process_share(photos)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert this_process_share(photos) == photos

"""The shipped default R-Net (``recon.weights``) and ``reconstruct --init auto|rnet|landmarks``:
a real (tiny, untrained) MobileNetV3 checkpoint is shipped into a temporary folder through
the same code the integrator uses, and the lookup, the CLI and the face-model check are run
against it; and, once the package ships one, the real file is checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from recon.models import load_face_model
from recon.models.procedural import build_embedded_model
from recon.rnet import ReconNet, load_checkpoint
from recon.weights import (MAX_SHIPPED_BYTES, RNET_DIR_ENV, WEIGHTS_DIR, add_shipped_rnet,
                           face_model_fingerprint, find_shipped_rnet, fingerprints_match, shipped_rnet)

ARCH = "mobilenet_v3_small"
COMMAND = "faceset train DATA --out ckpt --arch mobilenet_v3_small --iters 2"


@pytest.fixture(scope="module")
def face_model():
    return load_face_model(None, "cpu")


@pytest.fixture(scope="module")
def other_model():
    """The embedded model at another resolution: same coefficient sizes, other vertices."""
    from recon.face_model import FaceModel
    return FaceModel(build_embedded_model(resolution=48))


def tiny_rnet(sizes: dict[str, int], seed: int = 0) -> ReconNet:
    """A freshly initialised MobileNet R-Net whose id / exp / tex heads are random (small), so
    its coefficients differ from photo to photo and from the landmark initialiser's."""
    torch.manual_seed(seed)
    net = ReconNet(ARCH, sizes=sizes)
    for head in net.final_layers[:3]:
        torch.nn.init.normal_(head.weight, std=0.05)
    return net.eval()


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory, face_model):
    """A checkpoint in the training loop's format (net_recon + optimiser + scheduler)."""
    from recon.training.checkpoint import checkpoint_state
    net = tiny_rnet(face_model.coeff_sizes)
    optimizer = torch.optim.Adam(net.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)
    path = tmp_path_factory.mktemp("train") / "epoch_1.pth"
    torch.save(checkpoint_state(net, optimizer, scheduler), path)
    return path


@pytest.fixture(scope="module")
def shipped_dir(tmp_path_factory, trained_file, face_model):
    folder = tmp_path_factory.mktemp("weights")
    add_shipped_rnet(trained_file, ARCH, face_model, COMMAND, "2025-01-02", folder=folder)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory, small_photo_sets):
    """One out-of-model person, one photo."""
    out = small_photo_sets(tmp_path_factory.mktemp("shipped_photos"), subjects=1, images=1, seed=5)
    return out / "subject_000" / "images"


def test_fingerprint_tells_face_models_apart(face_model, other_model):
    own = face_model_fingerprint(face_model)
    assert fingerprints_match(own, face_model_fingerprint(build_embedded_model())) is None  # unrecentred
    assert json.loads(json.dumps(own)) == own
    assert "name" in fingerprints_match(own, face_model_fingerprint(other_model))
    reseeded = face_model_fingerprint(build_embedded_model(seed=1))
    assert fingerprints_match(own, reseeded) is not None
    fewer = face_model_fingerprint(build_embedded_model(n_id=40))
    assert "coeff_sizes" in fingerprints_match(own, fewer)
    nudged = json.loads(json.dumps(own))
    nudged["basis_column_norms"]["tex"][3] *= 1.01
    assert fingerprints_match(own, nudged) == "the tex basis differs"


def test_shipping_writes_weights_only_and_a_sidecar(shipped_dir, trained_file, face_model):
    found, reason = find_shipped_rnet(face_model, shipped_dir)
    assert reason == "" and found.arch == ARCH
    assert found.path.parent == shipped_dir and found.path.suffix == ".pth"
    sidecar = json.loads(found.path.with_suffix(".json").read_text())
    assert sidecar["training"]["command"] == COMMAND and sidecar["training"]["date"] == "2025-01-02"
    assert sidecar["face_model"] == face_model_fingerprint(face_model)
    stored = torch.load(found.path, weights_only=True)
    assert list(stored) == ["net_recon"]  # no optimiser state: a third of the training file
    assert found.path.stat().st_size < trained_file.stat().st_size
    net = load_checkpoint(found.path, found.arch, sizes=face_model.coeff_sizes)  # strict
    original = torch.load(trained_file, weights_only=True)["net_recon"]
    for name, value in net.state_dict().items():
        assert torch.equal(value, original[name])


def test_lookup_refuses_other_models_and_altered_files(shipped_dir, face_model, other_model, tmp_path):
    found, reason = find_shipped_rnet(other_model, shipped_dir)
    assert found is None and "procedural-r96-s0" in reason and "not this one" in reason
    assert shipped_rnet(face_model, tmp_path) is None
    assert "no R-Net ships" in find_shipped_rnet(face_model, tmp_path)[1]
    # a checkpoint replaced without a new sidecar is not used
    for path in shipped_dir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    checkpoint = next(tmp_path.glob("*.pth"))
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")
    found, reason = find_shipped_rnet(face_model, tmp_path)
    assert found is None and "SHA-256" in reason
    checkpoint.unlink()
    assert "missing" in find_shipped_rnet(face_model, tmp_path)[1]
    next(tmp_path.glob("*.json")).write_text("{not json")
    assert "unreadable sidecar" in find_shipped_rnet(face_model, tmp_path)[1]


def test_the_environment_names_the_folder(shipped_dir, face_model, monkeypatch):
    monkeypatch.setenv(RNET_DIR_ENV, str(shipped_dir))
    assert shipped_rnet(face_model).path.parent == shipped_dir


def _mats(folder):
    return {p.stem: scipy.io.loadmat(p) for p in sorted(folder.glob("*.mat"))}


def test_reconstruct_init_auto_rnet_and_landmarks(tmp_path, photos, shipped_dir, trained_file,
                                                  face_model, other_model, monkeypatch, capsys):
    from faceset.cli import main
    empty = tmp_path / "no_weights"
    empty.mkdir()
    monkeypatch.setenv(RNET_DIR_ENV, str(empty))
    assert main(["reconstruct", str(photos), "--out", str(tmp_path / "today")]) == 0
    today = _mats(tmp_path / "today")
    assert "coefficients from" not in capsys.readouterr().out
    assert main(["reconstruct", str(photos), "--out", str(tmp_path / "rnet_missing"), "--init", "rnet"]) == 2
    assert "--init rnet needs an R-Net" in capsys.readouterr().err

    monkeypatch.setenv(RNET_DIR_ENV, str(shipped_dir))
    assert main(["reconstruct", str(photos), "--out", str(tmp_path / "auto")]) == 0
    assert "coefficients from the shipped R-Net" in capsys.readouterr().out
    net = load_checkpoint(trained_file, ARCH, sizes=face_model.coeff_sizes)
    for stem, mat in _mats(tmp_path / "auto").items():
        with Image.open(tmp_path / "auto" / f"{stem}.png") as image:
            panel = np.asarray(image.convert("RGB"))
        crop = torch.from_numpy(panel[:, :224].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        with torch.no_grad():
            expected = net.predict(crop)
        for group in ("id", "exp", "tex", "angle", "gamma", "trans"):
            np.testing.assert_allclose(mat[group][0], getattr(expected, group)[0].numpy(), rtol=1e-4, atol=1e-5)
        assert not np.allclose(mat["id"], today[stem]["id"])
    from faceset.pipeline import ReconstructOptions, Reconstructor
    chosen = Reconstructor(ReconstructOptions(device="cpu", init="rnet"))
    assert chosen.rnet is not None and shipped_rnet(face_model).path.name in chosen.init_source

    # --init landmarks ignores the shipped R-Net: today's outputs exactly
    assert main(["reconstruct", str(photos), "--out", str(tmp_path / "landmarks"), "--init", "landmarks"]) == 0
    for stem, mat in _mats(tmp_path / "landmarks").items():
        for group in ("id", "exp", "tex", "angle", "gamma", "trans", "lm68"):
            np.testing.assert_array_equal(mat[group], today[stem][group])
    assert main(["reconstruct", str(photos), "--out", str(tmp_path / "both"), "--init", "landmarks",
                 "--checkpoint", str(trained_file), "--arch", ARCH]) == 2
    assert "drop one of them" in capsys.readouterr().err

    # an R-Net shipped as "not the default start" is used by rnet only
    not_default = tmp_path / "not_default"
    add_shipped_rnet(trained_file, ARCH, face_model, COMMAND, "2025-01-02", folder=not_default,
                     auto_note="fits from it end worse")
    monkeypatch.setenv(RNET_DIR_ENV, str(not_default))
    from faceset.pipeline import choose_rnet
    assert choose_rnet(ReconstructOptions(device="cpu"), face_model) is None
    explicit = choose_rnet(ReconstructOptions(device="cpu", init="rnet"), face_model)
    assert explicit is not None and "fits from it end worse" in explicit.source

    # an R-Net shipped with a coarse pose: its pose and expression re-fitted to the landmarks
    refit_dir = tmp_path / "refit_pose"
    add_shipped_rnet(trained_file, ARCH, face_model, COMMAND, "2025-01-02", folder=refit_dir, refit_pose=True)
    monkeypatch.setenv(RNET_DIR_ENV, str(refit_dir))
    from faceset.fit_report import landmark_rmse
    from faceset.subject import SubjectOptions, prepare_photos
    reconstructor = Reconstructor(ReconstructOptions(device="cpu"))
    assert reconstructor.refit_rnet_pose and "re-fitted to the landmarks" in reconstructor.init_source
    prepared, _ = prepare_photos(photos, SubjectOptions())
    refitted = reconstructor.coefficients(prepared)
    with torch.no_grad():
        predicted = reconstructor.rnet.predict(torch.stack([p.crop_tensor() for p in prepared]))
    points, landmark_set = reconstructor.landmarks(prepared)
    for group in ("id", "tex", "gamma"):
        torch.testing.assert_close(getattr(refitted, group), getattr(predicted, group))

    def rmse(coeffs):
        geometry = reconstructor.geometry(coeffs, prepared)
        return float(np.mean(landmark_rmse(reconstructor.face_model, geometry, points, landmark_set)))
    assert rmse(refitted) < rmse(predicted)

    # an R-Net shipped for another face model is ignored by auto and named by rnet
    other_dir = tmp_path / "other_weights"
    add_shipped_rnet(trained_file, ARCH, other_model, COMMAND, "2025-01-02", folder=other_dir)
    monkeypatch.setenv(RNET_DIR_ENV, str(other_dir))
    assert main(["reconstruct", str(photos), "--out", str(tmp_path / "mismatch")]) == 0
    for stem, mat in _mats(tmp_path / "mismatch").items():
        np.testing.assert_array_equal(mat["id"], today[stem]["id"])
    assert main(["reconstruct", str(photos), "--out", str(tmp_path / "mismatch_rnet"), "--init", "rnet"]) == 2
    assert "procedural-r48-s0" in capsys.readouterr().err


def test_the_shipped_checkpoint_when_the_package_has_one(face_model, tmp_path, monkeypatch):
    """Skipped until the trained R-Net is committed; then it must fit the embedded model,
    stay within the size limit, load strictly and give finite coefficients on the demo photo."""
    monkeypatch.delenv(RNET_DIR_ENV, raising=False)
    sidecars = sorted(WEIGHTS_DIR.glob("*.json"))
    if not sidecars:
        pytest.skip(f"no R-Net ships in {WEIGHTS_DIR.name}/ yet")
    found, reason = find_shipped_rnet(face_model, WEIGHTS_DIR)
    assert found is not None, reason
    assert found.path.stat().st_size <= MAX_SHIPPED_BYTES
    assert found.sidecar["training"]["command"] and found.sidecar["training"]["date"]
    load_checkpoint(found.path, found.arch, sizes=face_model.coeff_sizes)  # strict
    import skimage.data

    from faceset.pipeline import ReconstructOptions, reconstruct_folder
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.astronaut()).save(photos / "astronaut.png")
    report = reconstruct_folder(photos, tmp_path / "out", ReconstructOptions(device="cpu", init="rnet"),
                                show_progress=False)
    assert report.done == ["astronaut.png"] and found.path.name in report.rnet
    mat = scipy.io.loadmat(tmp_path / "out" / "astronaut.mat")
    assert all(np.isfinite(mat[g]).all() for g in ("id", "exp", "tex", "angle", "gamma", "trans"))


def test_ship_command_takes_a_training_folder(tmp_path, trained_file, face_model, capsys):
    from recon.weights.__main__ import main
    run = tmp_path / "ckpt"
    run.mkdir()
    (run / "epoch_1.pth").write_bytes(trained_file.read_bytes())
    (run / "train_config.json").write_text(json.dumps({"arch": ARCH, "epochs": 1}))
    target = tmp_path / "weights"
    assert main(["show", "--folder", str(target)]) == 1
    assert main(["add", str(run), "--arch", ARCH, "--command", COMMAND, "--folder", str(target)]) == 0
    found = shipped_rnet(face_model, target)
    assert found.sidecar["training"]["train_config"] == {"arch": ARCH, "epochs": 1}
    assert found.sidecar["training"]["source"] == "epoch_1.pth"
    assert len(found.sidecar["training"]["date"]) == 10
    assert main(["show", "--folder", str(target)]) == 0
    assert found.path.name in capsys.readouterr().out
    assert main(["add", str(run), "--arch", "resnet18", "--command", COMMAND, "--folder", str(target)]) == 2
    assert "do not fit a resnet18" in capsys.readouterr().err

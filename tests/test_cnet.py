"""Identity fusion over a photo set: every method's invariants (identical inputs, order),
the C-Net's positive confidences and convex aggregate, its files, a short label-free
training run, and ``faceset aggregate`` on a reconstruct output."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from aggregation import AGGREGATION_METHODS, aggregate
from aggregation.cnet import (CONFIDENCE_FLOOR, CNetConfig, ConfidenceNet, check_rnet, cnet_dir,
                              load_cnet, rnet_record, save_cnet)
from aggregation.cnet_training import CNetTrainConfig, CNetTrainer, person_folders
from recon.models import load_face_model
from recon.rnet import ReconNet
from recon.types import Coeffs

FEATURES = 576  # MobileNetV3-small's pooled features (varied_rnet, random_cnet)


@pytest.fixture(scope="module")
def face_model():
    return load_face_model(None, "cpu")


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory, small_photo_sets):
    """Two out-of-model persons with three photos each."""
    return small_photo_sets(tmp_path_factory.mktemp("cnet_sets"), subjects=2, images=3, seed=11)


def random_cnet(face_model, seed: int = 0, features: int = FEATURES) -> ConfidenceNet:
    """A C-Net whose confidences differ between photos (the trained layer is not zero)."""
    torch.manual_seed(seed)
    sizes = face_model.coeff_sizes
    cnet = ConfidenceNet(CNetConfig(features, sizes["id"], sizes["tex"], hidden=32))
    torch.nn.init.normal_(cnet.layers[-1].weight, std=1.0)
    return cnet.eval()


def varied_rnet(seed: int = 0) -> ReconNet:
    """A MobileNet R-Net whose id and tex heads are random (small): another R-Net per seed."""
    torch.manual_seed(seed)
    net = ReconNet("mobilenet_v3_small")
    for head in (net.final_layers[0], net.final_layers[2]):
        torch.nn.init.normal_(head.weight, std=0.05)
    return net.eval()


def person_dirs(photo_root) -> list:
    return sorted(photo_root.glob("*/images"))


def random_coeffs(face_model, count: int, seed: int) -> Coeffs:
    generator = torch.Generator().manual_seed(seed)
    sizes = face_model.coeff_sizes
    coeffs = Coeffs(**{g: 0.5 * torch.randn(count, sizes[g], generator=generator) for g in Coeffs.GROUPS})
    # a plausible pose: small angles, the face in front of the camera
    return coeffs.replace(angle=0.2 * coeffs.angle, trans=0.1 * coeffs.trans)


def fused(method, face_model, coeffs, features, cnet):
    return aggregate(method, face_model, coeffs, features=features, cnet=cnet)


@pytest.mark.parametrize("method", AGGREGATION_METHODS)
def test_identical_photos_give_their_identity_back(method, face_model):
    one = random_coeffs(face_model, 1, seed=1)
    coeffs = Coeffs.cat([one] * 4)
    features = torch.randn(4, FEATURES)  # the C-Net may weight them differently: no matter
    result = fused(method, face_model, coeffs, features, random_cnet(face_model))
    torch.testing.assert_close(result.id, one.id, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.tex, one.tex, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", AGGREGATION_METHODS)
def test_photo_order_does_not_matter(method, face_model):
    coeffs = random_coeffs(face_model, 5, seed=2)
    features = torch.randn(5, FEATURES, generator=torch.Generator().manual_seed(3))
    cnet = random_cnet(face_model)
    order = torch.tensor([3, 0, 4, 1, 2])
    a = fused(method, face_model, coeffs, features, cnet)
    b = fused(method, face_model, coeffs[order], features[order], cnet)
    torch.testing.assert_close(a.id, b.id, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.tex, b.tex, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.weights[order], b.weights, rtol=1e-5, atol=1e-6)


def test_cnet_confidences_are_positive_and_the_aggregate_convex(face_model):
    cnet = random_cnet(face_model)
    features = 50 * torch.randn(6, FEATURES)
    with torch.no_grad():
        torch.nn.init.constant_(cnet.layers[-1].bias, -80.0)  # logits far below zero
        confidences = cnet(features)
    assert (confidences >= CONFIDENCE_FLOOR).all() and torch.isfinite(confidences).all()
    torch.nn.init.zeros_(cnet.layers[-1].bias)
    coeffs = random_coeffs(face_model, 6, seed=4)
    result = aggregate("cnet", face_model, coeffs, features=features, cnet=cnet)
    weights = result.weights
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(0), torch.ones(weights.shape[1]))
    torch.testing.assert_close(result.id[0], (weights * coeffs.id).sum(0))
    assert (result.id[0] >= coeffs.id.min(0).values - 1e-6).all()
    assert (result.id[0] <= coeffs.id.max(0).values + 1e-6).all()
    assert (result.tex[0] >= coeffs.tex.min(0).values - 1e-6).all()
    assert (result.tex[0] <= coeffs.tex.max(0).values + 1e-6).all()
    assert not torch.allclose(result.id, coeffs.id.mean(0, keepdim=True))  # not just the mean
    # an untrained C-Net (its output layer starts at zero) is the authors' mean
    sizes = face_model.coeff_sizes
    fresh = ConfidenceNet(CNetConfig(FEATURES, sizes["id"], sizes["tex"]))
    torch.testing.assert_close(aggregate("cnet", face_model, coeffs, features=features, cnet=fresh).id,
                               aggregate("mean", face_model, coeffs).id)
    # invalid photos get no weight
    valid = torch.tensor([True, True, False, True, False, True])
    masked = aggregate("cnet", face_model, coeffs, features=features, cnet=cnet, valid=valid)
    torch.testing.assert_close(masked.id, aggregate("cnet", face_model, coeffs[valid], features=features[valid],
                                                    cnet=cnet).id)
    assert (masked.weights[~valid] == 0).all()


def test_cnet_file_round_trip_by_name_and_rnet_check(tmp_path, monkeypatch, face_model):
    monkeypatch.setenv("FACESET_CACHE", str(tmp_path / "cache"))
    cnet, rnet = random_cnet(face_model), varied_rnet()
    save_cnet(cnet_dir() / "mine.pth", cnet, rnet_record(rnet))
    loaded, record = load_cnet("mine")
    for name, value in cnet.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    check_rnet(record, rnet, "mine")
    with pytest.raises(ValueError, match="another R-Net"):
        check_rnet(record, varied_rnet(seed=1), "mine")
    with pytest.raises(FileNotFoundError, match="train-cnet"):
        load_cnet("absent")
    torch.save({"something": 1}, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="junk.pth: not a C-Net"):
        load_cnet(tmp_path / "junk.pth")


def test_short_label_free_training_lowers_the_loss_and_resumes(tmp_path, photo_sets, face_model, spread_rnet):
    assert [len(p) for p in person_folders([photo_sets])] == [3, 3]
    config = CNetTrainConfig(data_dirs=[photo_sets], out=tmp_path / "c.pth", steps=12, set_size=(2, 3),
                             lr=3e-3, hidden=32, renderer_backend="torch", log_every=4, save_every=6,
                             vertex_weight=1e-3)
    rnet = spread_rnet(person_dirs(photo_sets), "resnet18")
    trainer = CNetTrainer(config, rnet, face_model, report=lambda t: None, progress=False)
    probe = range(1000, 1008)  # fixed held-aside draws, scored before and after
    before = trainer.evaluate(probe)
    windows = trainer.run(progress=False)
    after = trainer.evaluate(probe)
    assert [w["step"] for w in windows] == [4, 8, 12]
    assert all("vertex" in w for w in windows)
    assert after < before, (before, after)
    # the file holds the C-Net; a new trainer on it has nothing left to do, one with more steps resumes
    loaded, _ = load_cnet(config.out)
    for name, value in trainer.cnet.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    messages = []
    again = CNetTrainer(config, rnet, face_model, report=messages.append, progress=False)
    assert again.steps_done == 12 and again.run(progress=False) == []
    assert "12 step(s) done" in messages[0]
    with pytest.raises(ValueError, match="another R-Net"):
        CNetTrainer(config, varied_rnet(), face_model, report=lambda t: None, progress=False)


def test_aggregate_command_on_a_reconstruct_output(tmp_path, photo_sets, face_model, monkeypatch, spread_rnet):
    from faceset.cli import main
    photos = photo_sets / "subject_000" / "images"
    results = tmp_path / "results"
    assert main(["reconstruct", str(photos), "--out", str(results)]) == 0
    mats = sorted(results.glob("*.mat"))
    assert len(mats) == 3
    ids = np.stack([scipy.io.loadmat(m)["id"][0] for m in mats])

    assert main(["aggregate", str(results), "--method", "mean", "--out", str(tmp_path / "mean")]) == 0
    subject = scipy.io.loadmat(tmp_path / "mean" / "subject.mat")
    np.testing.assert_allclose(subject["id"][0], ids.mean(0), rtol=1e-5, atol=1e-6)
    assert not subject["exp"].any() and not subject["angle"].any()
    obj_vertices = [l for l in (tmp_path / "mean" / "subject.obj").read_text().splitlines() if l.startswith("v ")]
    assert len(obj_vertices) == face_model.n_vertices
    assert np.load(tmp_path / "mean" / "subject_lmk7.npy").shape == (7, 3)

    assert main(["aggregate", str(results), "--method", "confidence", "--out", str(tmp_path / "conf")]) == 0
    confidence = scipy.io.loadmat(tmp_path / "conf" / "subject.mat")["id"][0]
    assert ((confidence >= ids.min(0) - 1e-5) & (confidence <= ids.max(0) + 1e-5)).all()

    # cnet: an R-Net checkpoint and a C-Net trained on it (by name)
    monkeypatch.setenv("FACESET_CACHE", str(tmp_path / "cache"))
    rnet = spread_rnet(person_dirs(photo_sets), "resnet18")
    torch.save({"net_recon": rnet.state_dict()}, tmp_path / "rnet.pth")
    cnet = random_cnet(face_model, features=512)
    save_cnet(cnet_dir() / "test.pth", cnet, rnet_record(rnet))
    args = ["aggregate", str(results), "--method", "cnet", "--out", str(tmp_path / "cnet"),
            "--cnet", "test", "--checkpoint", str(tmp_path / "rnet.pth"), "--arch", "resnet18"]
    assert main(args) == 0
    fused_id = scipy.io.loadmat(tmp_path / "cnet" / "subject.mat")["id"][0]
    weights = scipy.io.loadmat(tmp_path / "cnet" / "subject.mat")["weights"]
    np.testing.assert_allclose(fused_id, (weights * ids).sum(0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(fused_id, ids.mean(0))
    # one clear error: no C-Net given; a broken .mat is skipped with a line, the others fused
    assert main(args[:6]) == 2
    (results / "zz_broken.mat").write_bytes(b"not a mat file")
    assert main(["aggregate", str(results), "--out", str(tmp_path / "x")]) == 0
    np.testing.assert_allclose(scipy.io.loadmat(tmp_path / "x" / "subject.mat")["id"][0], ids.mean(0),
                               rtol=1e-5, atol=1e-6)


def test_train_cnet_command_saves_by_name(tmp_path, photo_sets, face_model, monkeypatch, spread_rnet):
    from faceset.cli import main
    monkeypatch.setenv("FACESET_CACHE", str(tmp_path / "cache"))
    rnet = spread_rnet(person_dirs(photo_sets), "resnet18")
    torch.save({"net_recon": rnet.state_dict()}, tmp_path / "rnet.pth")
    base = ["train-cnet", str(photo_sets), "--checkpoint", str(tmp_path / "rnet.pth"), "--arch", "resnet18",
            "--name", "cli", "--renderer", "torch", "--no-progress", "--log-every", "1"]
    assert main(base + ["--steps", "2", "--max-photos", "2"]) == 0
    _, record = load_cnet("cli")
    check_rnet(record, rnet, "cli")
    assert len((cnet_dir() / "cli.pth.log.jsonl").read_text().splitlines()) == 2
    assert main(base + ["--steps", "2", "--min-photos", "3", "--max-photos", "2"]) == 2

"""R-Net training on out-of-model photo sets with the supervised shape terms: truth reading,
mirroring under flips, the terms' values, a two-iteration run whose checkpoint loads
strictly, and a resume after the training process is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from recon import constants as C
from recon.models import load_face_model
from recon.rnet import load_checkpoint
from recon.training import TrainConfig, train
from recon.training.data import FaceTrainingSet, discover
from recon.training.loop import LOG_NAME
from recon.training.supervision import ShapeSupervision, mirror_vertex_map, read_truth

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL_PHOTOS = dict(subjects=1, images=2, seed=3, image_size=(96, 128), texture_size=128)


@pytest.fixture(scope="module")
def face_model():
    return load_face_model(None, "cpu")


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory) -> Path:
    """One out-of-model subject with two photos (the embedded model at full resolution)."""
    from faceset.photoreal.generate import PhotoConfig, synthesize_photos
    out = tmp_path_factory.mktemp("photo_set")
    synthesize_photos(out, PhotoConfig(**SMALL_PHOTOS))
    return out / "subject_000" / "images"


def config(photos: Path, out: Path, **changes) -> TrainConfig:
    options = dict(data_dirs=[photos], out=out, epochs=1, batch_size=2, arch="mobilenet_v3_small",
                   identity="none", device="cpu", renderer_backend="torch", workers=0, log_every=1,
                   vertex_weight=0.01, landmark3d_weight=0.01)
    options.update(changes)
    return TrainConfig(**options)


def test_mirror_map_of_the_embedded_model(face_model):
    mirror = mirror_vertex_map(face_model.mean_shape)
    points = face_model.mean_shape.view(-1, 3)
    # nearly an involution: a dozen vertices (of 10k) near the mouth have no exact mirror
    assert (mirror[mirror] == torch.arange(len(mirror))).float().mean() > 0.99
    mirrored = points[mirror] * torch.tensor([-1.0, 1.0, 1.0])
    distance = (mirrored - points).norm(dim=1) * C.MM_PER_UNIT
    assert distance.max() < 1.5 and distance.median() < 0.2
    lopsided = points.clone()
    lopsided[:, 0] += 0.05
    with pytest.raises(ValueError, match="symmetric"):
        mirror_vertex_map(lopsided)


def test_truth_items_match_the_generators_files(photo_set, face_model):
    photos, _ = discover([photo_set])
    sizes = (face_model.n_vertices, face_model.coeff_sizes["exp"])
    item = FaceTrainingSet(photos, augment=False, truth_sizes=sizes)[0]
    subject = scipy.io.loadmat(photo_set.parent / "truth" / "subject.mat")
    photo = scipy.io.loadmat(photo_set.parent / "truth" / f"{photos[0].stem}.mat")
    assert item["has_truth"] and not item["flip"]
    np.testing.assert_allclose(item["truth_neutral"].numpy(), subject["model_vertices_mm"] / C.MM_PER_UNIT,
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(item["truth_exp"].numpy(), photo["exp"].reshape(-1), rtol=1e-6)
    with pytest.raises(ValueError, match="model_vertices_mm"):
        read_truth(photos[0], sizes[0] - 1, sizes[1])


def test_terms_are_zero_at_the_truth_and_exact_for_a_shift(face_model):
    supervision = ShapeSupervision(face_model, vertex_weight=1.0, landmark3d_weight=2.0,
                                   translation_free=False)
    torch.manual_seed(0)
    id_c = torch.randn(2, face_model.coeff_sizes["id"]) * 0.5
    exp_c = torch.randn(2, face_model.coeff_sizes["exp"]) * 0.3
    neutral = face_model.shape(id_c, torch.zeros_like(exp_c))
    batch = {"truth_neutral": neutral, "truth_exp": exp_c, "has_truth": torch.tensor([True, True]),
             "flip": torch.tensor([False, False])}
    terms = supervision(id_c, exp_c, batch)
    assert float(terms["vertex"]) < 1e-6 and float(terms["lm3d"]) < 1e-6
    shifted = dict(batch, truth_neutral=neutral + torch.tensor([0.0, 0.0, 0.01]))  # 1 mm in z
    terms = supervision(id_c, exp_c, shifted)
    assert float(terms["vertex"]) == pytest.approx(1.0, rel=1e-3)
    assert float(terms["lm3d"]) == pytest.approx(2.0, rel=1e-3)
    # a flipped photo of a person shows the mirror person: the mean face is its own mirror
    zero = torch.zeros(1, face_model.coeff_sizes["id"])
    mean = face_model.shape(zero, torch.zeros(1, face_model.coeff_sizes["exp"]))
    flipped = {"truth_neutral": mean, "truth_exp": torch.zeros(1, face_model.coeff_sizes["exp"]),
               "has_truth": torch.tensor([True]), "flip": torch.tensor([True])}
    assert float(supervision(zero, flipped["truth_exp"], flipped)["vertex"]) < 0.1  # mm^2 (the mesh is symmetric to ~0.3 mm)
    none = dict(batch, has_truth=torch.tensor([False, False]))
    assert float(supervision(id_c, exp_c, none)["vertex"]) == 0.0


def test_translation_free_terms_ignore_a_shift_but_not_a_shape_change(face_model):
    supervision = ShapeSupervision(face_model, vertex_weight=1.0, landmark3d_weight=1.0)
    torch.manual_seed(1)
    id_c = torch.randn(2, face_model.coeff_sizes["id"]) * 0.5
    exp_c = torch.zeros(2, face_model.coeff_sizes["exp"])
    neutral = face_model.shape(id_c, exp_c)
    batch = {"truth_neutral": neutral + torch.tensor([0.02, -0.01, 0.03]), "truth_exp": exp_c,
             "has_truth": torch.tensor([True, True]), "flip": torch.tensor([False, False])}
    terms = supervision(id_c, exp_c, batch)
    assert float(terms["vertex"]) < 1e-6 and float(terms["lm3d"]) < 1e-6
    # a z-stretch of the truth is a shape change: its centred error stays (analytic value:
    # the variance of the skin vertices' z times 0.1^2, in mm^2)
    z = neutral[..., 2:]
    stretched = torch.cat([neutral[..., :2], z * 1.1], dim=-1)
    terms = supervision(id_c, exp_c, dict(batch, truth_neutral=stretched))
    skin_z = z[:, face_model.skin_mask, 0] * C.MM_PER_UNIT
    expected = float((0.01 * skin_z.var(1, unbiased=False)).mean())
    assert float(terms["vertex"]) == pytest.approx(expected, rel=1e-4)


def test_two_iterations_write_a_strict_checkpoint_and_log_the_terms(tmp_path, photo_set):
    out = tmp_path / "ck"
    result = train(config(photo_set, out, batch_size=1, max_iters_per_epoch=2), progress=False,
                   report=lambda text: None)
    assert (result.first_epoch, result.last_epoch, result.iterations) == (1, 1, 2)
    net = load_checkpoint(out / "epoch_1.pth", arch="mobilenet_v3_small")
    assert any(head.weight.abs().max() > 0 for head in net.final_layers)
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    assert len(log) == 2 and all(r["vertex"] > 0 and r["lm3d"] > 0 for r in log)
    assert all(r["all"] > r["vertex"] + r["lm3d"] for r in log)
    with torch.no_grad():
        coeffs = net(torch.rand(1, 3, 224, 224))
    assert torch.isfinite(coeffs).all()


def test_a_killed_run_resumes(tmp_path, photo_set):
    out = tmp_path / "ck"
    command = [sys.executable, "-m", "faceset", "train", str(photo_set), "--out", str(out),
               "--epochs", "100", "--batch-size", "2", "--arch", "mobilenet_v3_small",
               "--identity", "none", "--device", "cpu", "--workers", "0", "--max-iters", "1",
               "--no-progress", "--vertex-weight", "0.01", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (out / "epoch_2.pth").is_file():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no second checkpoint within 4 minutes"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    # a kill between epoch_<N>.pth and epoch_latest.pth leaves latest one epoch behind
    done = torch.load(out / "epoch_latest.pth", weights_only=True)["sched_00"]["last_epoch"]
    messages = []
    result = train(config(photo_set, out, epochs=done + 1, max_iters_per_epoch=1,
                          landmark3d_weight=0.0),
                   progress=False, report=messages.append)
    assert any(f"{done} epoch(s) done" in m for m in messages), messages
    assert (result.first_epoch, result.last_epoch) == (done + 1, done + 1)
    load_checkpoint(out / f"epoch_{done + 1}.pth", arch="mobilenet_v3_small")

"""R-Net training: augmentation geometry, dataset, hybrid loss step, overfit, checkpoints,
resume, skipped photos, CLI, torchrun (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recon import constants as C
from recon.preprocess.align import align_face, open_rgb
from recon.preprocess.skin import skin_mask_image
from recon.rnet import ReconNet, load_checkpoint
from recon.standard_landmarks import STANDARD_LANDMARKS_68
from recon.training import TrainConfig, train
from recon.training.augment import (AugmentParams, augment, draw_params, transform_landmarks,
                                    warp_image)
from recon.training.checkpoint import LATEST_NAME
from recon.training.data import FaceTrainingSet, discover, landmark_file_for, read_landmark_file
from recon.training.loop import CURVES_NAME, LOG_NAME, VAL_LOG_NAME, Trainer
from recon.training.distributed import ProcessContext

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    from faceset.synth import SynthConfig, synthesize
    out = tmp_path_factory.mktemp("train_data")
    synthesize(out, SynthConfig(subjects=1, images=4, seed=0))
    return out / "subject_000" / "images"


def small_config(photo_folder: Path, out: Path, **changes) -> TrainConfig:
    options = dict(data_dirs=[photo_folder], out=out, epochs=1, batch_size=2, arch="resnet18",
                   identity="none", device="cpu", renderer_backend="torch", workers=0, log_every=1)
    options.update(changes)
    return TrainConfig(**options)


# -- augmentation -----------------------------------------------------------------------------
def _gaussian_dot(centre: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    yy, xx = np.mgrid[0:C.IMAGE_SIZE, 0:C.IMAGE_SIZE]
    dot = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.round(255 * dot).astype(np.uint8)


def _centroid(image: np.ndarray) -> np.ndarray:
    weights = image.astype(np.float64)
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    return np.array([(weights * xx).sum(), (weights * yy).sum()]) / weights.sum()


def test_painted_dot_lands_at_its_transformed_landmark():
    # The original moves its landmarks 1 px away from the content on every flip; ours stay.
    rng = np.random.default_rng(7)
    draws = [draw_params(rng) for _ in range(12)]
    assert any(p.flip for p in draws) and not all(p.flip for p in draws)
    for params in draws:
        landmarks = rng.uniform(60, 164, (68, 2))
        k = int(rng.integers(68))
        dot = _gaussian_dot(landmarks[k])
        image = np.repeat(dot[:, :, None], 3, axis=2)
        out_image, out_mask, out_landmarks = augment(image, dot, landmarks, params)
        same_point = C.FLIP_PERM_68[k] if params.flip else k  # flips relabel the points
        for warped in (out_image[:, :, 1], out_mask):
            np.testing.assert_allclose(_centroid(warped), out_landmarks[same_point], atol=0.15)


def test_shift_and_quarter_turn_move_pixels_exactly():
    image = np.zeros((224, 224), np.uint8)
    image[50, 30] = 200
    shifted = warp_image(image, AugmentParams(shift_x=3, shift_y=-2))
    assert np.argwhere(shifted).tolist() == [[48, 33]] and shifted.max() == 200
    # centre 111.5: (30, 50) -> offset (-81.5, -61.5) -> turned on screen to (-61.5, 81.5)
    turned = warp_image(image, AugmentParams(angle_deg=90.0))
    assert np.argwhere(turned).tolist() == [[193, 50]]
    np.testing.assert_allclose(
        transform_landmarks(np.tile([[30.0, 50.0]], (68, 1)), AugmentParams(angle_deg=90.0))[0],
        [50.0, 193.0], atol=1e-9)


def test_flip_twice_is_identity(photo_folder):
    crop, mask, landmarks = FaceTrainingSet(discover([photo_folder])[0]).load_aligned(0)
    flip = AugmentParams(flip=True)
    once = augment(crop, mask, landmarks, flip)
    twice = augment(*once, flip)
    assert not np.array_equal(once[0], crop)
    np.testing.assert_array_equal(twice[0], crop)
    np.testing.assert_array_equal(twice[1], mask)
    np.testing.assert_allclose(twice[2], landmarks, atol=1e-9)


def test_flip_permutation_is_the_mirror_map():
    # A frontal view of the (nearly symmetric) standard face: flipping its landmarks with
    # the permutation gives the same landmarks back, up to the face's small asymmetry.
    frontal = np.stack([111.5 + 102 * STANDARD_LANDMARKS_68[:, 0],
                        111.5 - 102 * STANDARD_LANDMARKS_68[:, 1]], axis=1)
    flipped = transform_landmarks(frontal, AugmentParams(flip=True))
    assert np.abs(flipped - frontal).max() < 1.0
    unpermuted = transform_landmarks(frontal, AugmentParams(flip=True))[list(C.FLIP_PERM_68)]
    assert np.abs(unpermuted - frontal).max() > 50  # without relabelling, left and right swap


# -- dataset ---------------------------------------------------------------------------------
def test_dataset_item_matches_alignment(photo_folder):
    photos, skipped = discover([photo_folder])
    assert len(photos) == 4 and not skipped
    item = FaceTrainingSet(photos, augment=False)[1]
    assert item["image"].shape == (3, 224, 224) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 224, 224) and item["landmarks"].shape == (68, 2)
    photo = open_rgb(photos[1])
    from_photo = align_face(photo, read_landmark_file(landmark_file_for(photos[1])),
                            mask=skin_mask_image(np.asarray(photo))[:, :, 0])
    np.testing.assert_array_equal((item["image"] * 255).round().byte().permute(1, 2, 0).numpy(),
                                  from_photo.image)
    np.testing.assert_allclose(item["landmarks"].numpy(), from_photo.landmarks, atol=1e-4)
    mask = (item["mask"][0] * 255).round().byte().numpy()
    np.testing.assert_array_equal(mask, skin_mask_image(from_photo.image)[:, :, 0])
    # computed on the crop, the mask stays close to the original's (photo, then cropped)
    difference = np.abs(mask.astype(float) - from_photo.mask) / 255
    assert difference.mean() < 0.01 and np.quantile(difference, 0.9) < 0.03


def test_mask_file_is_used_when_present(tmp_path, photo_folder):
    folder = tmp_path / "photos"
    (folder / "landmarks").mkdir(parents=True)
    (folder / "mask").mkdir()
    photo = discover([photo_folder])[0][0]
    (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "landmarks" / f"{photo.stem}.txt").write_bytes(landmark_file_for(photo).read_bytes())
    size = open_rgb(photo).size
    from PIL import Image
    Image.new("RGB", size, (77, 0, 0)).save(folder / "mask" / photo.name)
    item = FaceTrainingSet([folder / photo.name], augment=False)[0]
    centre = item["mask"][0, 100:124, 100:124]
    assert torch.allclose(centre, torch.full_like(centre, 77 / 255))
    Image.new("RGB", (size[0] + 1, size[1]), 0).save(folder / "mask" / photo.name)
    with pytest.raises(ValueError, match="mask"):
        FaceTrainingSet([folder / photo.name], augment=False)[0]


def test_augmentation_draws_repeat_per_epoch(photo_folder):
    dataset = FaceTrainingSet(discover([photo_folder])[0], augment=True, seed=3)
    first = dataset[0]["landmarks"]
    assert torch.equal(first, dataset[0]["landmarks"])
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0]["landmarks"])


def test_folder_without_landmarks_is_reported_not_a_crash(tmp_path, photo_folder):
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for photo in discover([photo_folder])[0][:2]:
        (unlabeled / photo.name).write_bytes(photo.read_bytes())
    (unlabeled / "landmarks").mkdir()
    (unlabeled / "landmarks" / f"{photo.stem}.txt").write_text("1 2\n3 4\n")  # malformed
    messages = []
    result = train(small_config(photo_folder, tmp_path / "ck", data_dirs=[photo_folder, unlabeled],
                                max_iters_per_epoch=1), progress=False, report=messages.append)
    assert result.last_epoch == 1
    assert len(messages) == 1 and "skipping 2 photo(s)" in messages[0]
    assert "no landmarks/" in messages[0] and "expected 68 lines" in messages[0]
    with pytest.raises(ValueError, match="no photo with a landmarks"):
        train(small_config(unlabeled, tmp_path / "ck2"), progress=False, report=messages.append)


# -- the training step -------------------------------------------------------------------------
def _trainer(photo_folder: Path, out: Path, **changes) -> Trainer:
    config = small_config(photo_folder, out, **changes).validate()
    context = ProcessContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    return Trainer(config, context, report=lambda text: None)


def _fixed_batch(photo_folder: Path, augment: bool = False) -> dict:
    dataset = FaceTrainingSet(discover([photo_folder])[0], augment=augment)
    return torch.utils.data.default_collate([dataset[0], dataset[2]])


def test_one_step_finite_loss_and_gradients_in_every_head(tmp_path, photo_folder):
    torch.manual_seed(0)
    trainer = _trainer(photo_folder, tmp_path / "ck", identity="dlib")
    batch = _fixed_batch(photo_folder, augment=True)
    loss = trainer.loss(trainer.net, batch["image"], batch["mask"], batch["landmarks"])
    assert set(loss.terms) == {"color", "lm", "reg", "gamma", "reflc", "feat"}
    assert all(torch.isfinite(v) for v in loss.terms.values()) and torch.isfinite(loss.total)
    assert loss.terms["feat"] > 0 and loss.terms["color"] > 0 and loss.terms["lm"] > 0
    loss.total.backward()
    for index, head in enumerate(trainer.net.final_layers):
        for parameter in (head.weight, head.bias):
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
            assert parameter.grad.abs().max() > 0, f"head {index} got no gradient"


def test_few_steps_on_a_fixed_batch_lower_the_loss(tmp_path, photo_folder):
    torch.manual_seed(0)
    trainer = _trainer(photo_folder, tmp_path / "ck", identity="dlib")
    batch = _fixed_batch(photo_folder)
    losses = [trainer.step(batch)["all"] for _ in range(8)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses


# -- checkpoints and resume ----------------------------------------------------------------------
def test_checkpoint_format_loads_strictly_and_resume_continues(tmp_path, photo_folder):
    out = tmp_path / "ck"
    first = train(small_config(photo_folder, out, epochs=1, lr_decay_epochs=2), progress=False,
                  report=lambda t: None)
    assert (first.first_epoch, first.last_epoch, first.iterations) == (1, 1, 2)
    state = torch.load(out / "epoch_1.pth", weights_only=True)
    assert set(state) == {"net_recon", "opt_00", "sched_00"}
    assert not any(k.startswith("module.") for k in state["net_recon"])
    assert state["sched_00"]["last_epoch"] == 1 and state["opt_00"]["state"]
    net = load_checkpoint(out / "epoch_1.pth", arch="resnet18")
    for name, value in ReconNet("resnet18").state_dict().items():
        assert torch.equal(net.state_dict()[name], state["net_recon"][name])
    assert set(ReconNet("resnet18").state_dict()) == set(state["net_recon"])
    assert any(head.weight.abs().max() > 0 for head in net.final_layers)  # it trained

    messages = []
    # lr_decay_epochs=5 now: the checkpoint's schedule (step 2) wins, as in the original
    second = train(small_config(photo_folder, out, epochs=3, lr_decay_epochs=5), progress=False,
                   report=messages.append)
    assert (second.first_epoch, second.last_epoch) == (2, 3)
    assert "resuming from" in messages[0] and "1 epoch(s) done" in messages[0]
    latest = torch.load(out / LATEST_NAME, weights_only=True)
    assert latest["sched_00"]["last_epoch"] == 3
    assert latest["opt_00"]["param_groups"][0]["lr"] == pytest.approx(1e-4 * 0.2)
    assert sorted(p.name for p in out.glob("epoch_*.pth")) == [
        "epoch_1.pth", "epoch_2.pth", "epoch_3.pth", LATEST_NAME]
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 1, 2, 2, 3, 3]
    assert [r["total_iters"] for r in log] == [1, 2, 3, 4, 5, 6]   # counted on across the resume
    assert {"all", "color", "lm", "reg", "gamma", "reflc", "seconds_per_iter"} <= set(log[-1])
    assert train(small_config(photo_folder, out, epochs=3), progress=False,
                 report=messages.append).iterations == 0


def test_validation_pass_logs_every_epoch_and_draws_the_curves(tmp_path, photo_folder):
    out = tmp_path / "ck"
    result = train(small_config(photo_folder, out, epochs=2, val_dirs=[photo_folder]),
                   progress=False, report=lambda t: None)
    records = [json.loads(line) for line in (out / VAL_LOG_NAME).read_text().splitlines()]
    assert [(r["epoch"], r["photos"]) for r in records] == [(1, 4), (2, 4)]
    assert {"all", "color", "lm", "reg", "gamma", "reflc"} <= set(records[0])
    assert all(np.isfinite(r["all"]) and r["all"] > 0 for r in records)
    assert (out / CURVES_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the logged values are the loss of the saved network on the unaugmented photos
    trainer = _trainer(photo_folder, tmp_path / "other", val_dirs=[photo_folder])
    trainer.net.load_state_dict(load_checkpoint(result.checkpoint, arch="resnet18").state_dict())
    assert trainer.validate()["all"] == pytest.approx(records[-1]["all"], rel=1e-4)


def test_resume_rejects_another_backbone(tmp_path, photo_folder):
    out = tmp_path / "ck"
    train(small_config(photo_folder, out, max_iters_per_epoch=1), progress=False,
          report=lambda t: None)
    with pytest.raises(ValueError, match="epoch_latest.pth"):
        train(small_config(photo_folder, out, epochs=2, arch="resnet50"), progress=False,
              report=lambda t: None)


def test_cli_trains_and_reports(tmp_path, photo_folder, capsys):
    from faceset.cli import main
    code = main(["train", str(photo_folder), "--out", str(tmp_path / "ck"), "--epochs", "1",
                 "--batch-size", "2", "--arch", "resnet18", "--identity", "none", "--device",
                 "cpu", "--workers", "0", "--max-iters", "1", "--no-progress", "--no-augment"])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    config = json.loads((tmp_path / "ck" / "train_config.json").read_text())
    assert config["augment"] is False and config["weights"]["color"] == C.W_COLOR
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "ck")]) == 2


def test_config_defaults_are_the_originals():
    config = TrainConfig(data_dirs=[Path("x")], out=Path("y"))
    assert (config.lr, config.betas, config.lr_decay_epochs, config.lr_decay_gamma) == (
        1e-4, (0.9, 0.999), 10, 0.2)
    assert (config.epochs, config.batch_size, config.arch, config.augment) == (20, 32, "resnet50", True)
    assert (config.weights.color, config.weights.lm, config.weights.feat) == (1.92, 1.6e-3, 0.2)
    with pytest.raises(ValueError, match="identity"):
        TrainConfig(data_dirs=[Path("x")], out=Path("y"), identity="facenet").validate()


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path, photo_folder):
    out = tmp_path / "ck"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "faceset", "train", str(photo_folder),
               "--out", str(out), "--epochs", "1", "--batch-size", "4", "--arch", "resnet18",
               "--identity", "none", "--device", "cpu", "--workers", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(out / "epoch_1.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in state["net_recon"])
    load_checkpoint(out / "epoch_1.pth", arch="resnet18")
    # 4 photos, 2 per process and step: one synchronised step, logged once by rank 0
    assert len((out / LOG_NAME).read_text().splitlines()) == 1


def test_imagenet_init_loads_the_backbone_without_fc(tmp_path, photo_folder):
    import torchvision
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    trainer = _trainer(photo_folder, tmp_path / "ck", init=tmp_path / "resnet18.pth")
    for name, value in trainer.net.backbone.state_dict().items():
        assert torch.equal(value, reference.state_dict()[name])
    with pytest.raises(FileNotFoundError, match="ImageNet"):
        _trainer(photo_folder, tmp_path / "ck", init=tmp_path / "absent.pth")
    # an unreadable file and another backbone's weights: one error naming the file
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "resnet50.pth")
    for bad in ("junk.pth", "resnet50.pth"):
        with pytest.raises(ValueError, match=bad):
            _trainer(photo_folder, tmp_path / "ck", init=tmp_path / bad)

"""dlib face recognition ResNet port: file parser, descriptors against dlib itself, the
differentiable chip warp, gradients, and same-vs-different identity on the example photos."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gradient_check import assert_pixel_gradients_match
from recon.identity import (DlibFaceResNet, DlibFormatError, DlibIdentityEncoder,
                            default_dlib_model_path, load_identity_encoder,
                            read_dlib_network)
from recon.identity.chip import dlib_chip_matrix, fit_similarity
from recon.identity.dlib_resnet import add_zero_extended
from recon.losses import identity_loss
from recon.preprocess.arcface_align import warp_affine

dlib = pytest.importorskip("dlib")
Image = pytest.importorskip("PIL.Image")
cv2 = pytest.importorskip("cv2")


def _benchmark_module(name: str):
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# A 224 crop of the face by our own similarity, not the library's (shared with the benchmark).
face_crop_224 = _benchmark_module("identity_encoders").face_crop_224

PHOTOS = ("000002", "000006", "000031", "000050")
# Measured: 3.9e-7 max |ours - dlib| over these photos (float32); dlib's descriptors have
# norm ~1.5, so this is float32 round-off.
DESCRIPTOR_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def network() -> DlibFaceResNet:
    return DlibFaceResNet.from_dlib_file().eval()


@pytest.fixture(scope="module")
def dlib_models():
    models = default_dlib_model_path().parent
    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(default_dlib_model_path())))


@pytest.fixture(scope="module")
def faces(shared_data, dlib_models):
    """name -> (RGB uint8 photo, dlib full_object_detection with 68 parts)."""
    detector, predictor, _ = dlib_models
    out = {}
    for name in PHOTOS:
        image = np.asarray(Image.open(shared_data / "examples" / f"{name}.jpg").convert("RGB"))
        boxes = detector(image, 1)
        assert len(boxes) == 1, f"{name}: expected one face, dlib found {len(boxes)}"
        out[name] = (image, predictor(image, boxes[0]))
    return out


def _points(shape) -> np.ndarray:
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0


def _dlib_shape(landmarks: np.ndarray):
    points = dlib.points()
    for x, y in np.round(landmarks).astype(int):
        points.append(dlib.point(int(x), int(y)))
    return dlib.full_object_detection(dlib.rectangle(0, 0, 223, 223), points)


# ---------------------------------------------------------------------------- parser

def test_parser_reads_the_packaged_network():
    net = read_dlib_network(default_dlib_model_path())
    assert net.loss.version == "loss_metric_2"
    assert net.loss.config["dist_thresh"] == pytest.approx(0.6)
    assert net.input.config["nr"] == net.input.config["nc"] == 150
    assert net.input.config["avg_red"] == pytest.approx(122.782, abs=1e-4)
    # 29 convs, 29 affines, 29 relus, 14 add_prev, 4 shortcut pools + the global pool,
    # 1 max pool, 1 fc; 14 tag1 + 4 (tag2, skip1) wrappers.
    kinds = net.kinds()
    assert len(kinds) == 108 and net.num_wrappers == 22
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "con": 29, "affine": 29, "relu": 29, "add_prev": 14, "avg_pool": 5, "max_pool": 1,
        "fc": 1}
    assert net.num_parameters() == 5_614_592
    model = DlibFaceResNet.from_dlib_file()
    assert sum(p.numel() for p in model.parameters()) == 5_614_592


def test_parser_rejects_truncated_and_foreign_files(tmp_path):
    data = default_dlib_model_path().read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="truncated.dat"):
        read_dlib_network(truncated)
    foreign = tmp_path / "predictor.dat"
    foreign.write_bytes(b"\x01\x01" + data[2:40][::-1])
    with pytest.raises(DlibFormatError, match="predictor.dat"):
        read_dlib_network(foreign)
    with pytest.raises(FileNotFoundError, match="missing.dat"):
        read_dlib_network(tmp_path / "missing.dat")


def test_add_zero_extended_pads_channels_and_trailing_pixels():
    a = torch.arange(2 * 3 * 3, dtype=torch.float64).view(1, 2, 3, 3)
    b = torch.ones(1, 4, 4, 4, dtype=torch.float64)
    total = add_zero_extended(a, b)
    expected = b.clone()
    expected[:, :2, :3, :3] += a
    assert torch.equal(total, expected)


# ---------------------------------------------------------------------------- against dlib

def test_descriptors_equal_dlibs(network, faces, dlib_models):
    recognizer = dlib_models[2]
    worst = 0.0
    for image, shape in faces.values():
        reference = np.array(recognizer.compute_face_descriptor(image, shape))
        chip = dlib.get_face_chip(image, shape, size=150, padding=0.25)
        with torch.no_grad():
            ours = network(_to_tensor(chip))[0].double().numpy()
        worst = max(worst, np.abs(ours - reference).max())
    assert worst < DESCRIPTOR_TOLERANCE


def test_chip_geometry_equals_dlib_get_face_chip(faces):
    # 000031's face is over twice the chip's size, where dlib first halves the photo with
    # its image pyramid (anti-aliasing we do not reproduce; 224 crops never need it).
    for name in ("000002", "000006", "000050"):
        image, shape = faces[name]
        reference = dlib.get_face_chip(image, shape, size=150, padding=0.25).astype(np.float64)
        matrix = dlib_chip_matrix(torch.from_numpy(_points(shape))[None])
        photo = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].double()
        ours = warp_affine(photo, matrix, 150)[0].permute(1, 2, 0).numpy()
        # dlib truncates its bilinear samples to 8 bits.
        truncated = np.floor(ours + 1e-6)
        assert np.abs(truncated - reference).max() <= 1.0
        assert (truncated == reference).mean() > 0.999


def test_encoder_on_224_crops_matches_dlib(network, faces, dlib_models):
    recognizer = dlib_models[2]
    encoder = DlibIdentityEncoder(network)
    for name in ("000002", "000031", "000050"):
        image, shape = faces[name]
        crop, landmarks = face_crop_224(image, _points(shape))
        landmarks = np.round(landmarks)  # dlib's shapes are integer points
        reference = np.array(recognizer.compute_face_descriptor(crop, _dlib_shape(landmarks)))
        with torch.no_grad():
            ours = encoder(_to_tensor(crop), torch.from_numpy(landmarks)[None].float())[0]
        cosine = float(ours.double() @ torch.from_numpy(reference / np.linalg.norm(reference)))
        assert cosine > 0.999


# ---------------------------------------------------------------------------- the encoder

def test_encoder_is_frozen_and_normalised(network, faces):
    encoder = load_identity_encoder("dlib")
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.network.training
    image, shape = faces["000006"]
    crop, landmarks = face_crop_224(image, _points(shape))
    features = encoder(_to_tensor(crop), torch.from_numpy(landmarks)[None].float())
    assert features.shape == (1, 128)
    assert torch.allclose(features.norm(dim=-1), torch.ones(1), atol=1e-6)
    with pytest.raises(ValueError, match="landmarks must be"):
        encoder(_to_tensor(crop), torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="landmarks or matrices"):
        encoder(_to_tensor(crop))


def test_gradient_matches_finite_differences(faces):
    """d(1 - cos)/d(pixel) through the warp and the net in float64, against central
    differences on single pixels (tiny steps: the relus and max pools are piecewise
    linear, so larger steps cross kinks)."""
    encoder = DlibIdentityEncoder(DlibFaceResNet.from_dlib_file().double())
    image, shape = faces["000031"]
    crop, landmarks = face_crop_224(image, _points(shape), scale_factor=0.7)
    target = encoder(_to_tensor(crop).double(), torch.from_numpy(landmarks)[None]).detach()
    other_image, other_shape = faces["000002"]
    other, other_lm = face_crop_224(other_image, _points(other_shape), scale_factor=0.7)
    pixels = _to_tensor(other).double().requires_grad_(True)
    matrices = encoder.alignment_matrices(torch.from_numpy(other_lm)[None])

    def loss(x: torch.Tensor) -> torch.Tensor:
        return identity_loss(encoder(x, matrices=matrices), target, reduction="none").sum()

    gradient = assert_pixel_gradients_match(loss, pixels, ((0, 112, 112), (1, 100, 90), (2, 130, 120)))
    # Pixels outside the chip get no gradient: the corners of the 224 crop.
    assert gradient[..., :5, :5].abs().max() == 0


def test_same_person_more_similar_than_different_people(network, faces):
    """Two views of one photo (a mirrored, re-cropped copy) against other people."""
    encoder = DlibIdentityEncoder(network)
    crops, landmarks, mirrored, mirrored_lm = [], [], [], []
    flip = torch.tensor([16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 26, 25,
                         24, 23, 22, 21, 20, 19, 18, 17, 27, 28, 29, 30, 35, 34, 33, 32, 31,
                         45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40, 54, 53, 52, 51, 50,
                         49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])
    for image, shape in faces.values():
        crop, lm = face_crop_224(image, _points(shape))
        crops.append(_to_tensor(crop))
        landmarks.append(torch.from_numpy(lm).float())
        other, other_lm = face_crop_224(np.ascontiguousarray(image[:, ::-1]), _points(shape) * [-1, 1]
                                    + [image.shape[1] - 1, 0], scale_factor=0.9,
                                    shift=(6.0, -4.0))
        mirrored.append(_to_tensor(other))
        mirrored_lm.append(torch.from_numpy(other_lm).float()[flip])
    with torch.no_grad():
        first = encoder(torch.cat(crops), torch.stack(landmarks))
        second = encoder(torch.cat(mirrored), torch.stack(mirrored_lm))
    distance = identity_loss(first[:, None].expand(-1, len(faces), -1).reshape(-1, 128),
                             second[None].expand(len(faces), -1, -1).reshape(-1, 128), reduction="none")
    distance = distance.view(len(faces), len(faces))
    same = distance.diagonal()
    different = distance[~torch.eye(len(faces), dtype=torch.bool)]
    assert same.max() < different.min()


def test_fit_similarity_recovers_a_known_transform():
    source = torch.randn(1, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    angle, scale, shift = 0.3, 1.7, torch.tensor([4.0, -2.0], dtype=torch.float64)
    rotation = torch.tensor([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = source @ (scale * rotation).T + shift
    linear, translation = fit_similarity(source[0], target)
    assert torch.allclose(linear[0], scale * rotation, atol=1e-12)
    assert torch.allclose(translation[0], shift, atol=1e-12)
    with pytest.raises(ValueError, match="coincide"):
        fit_similarity(torch.zeros(3, 2), torch.randn(1, 3, 2))

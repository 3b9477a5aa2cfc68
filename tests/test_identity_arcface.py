"""ArcFace iResNet-50: strict loading of an insightface-layout state dict, the missing-file
message, the encoder's alignment and input convention; the identity loss and the factory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradient_check import assert_pixel_gradients_match
from recon.identity import (ArcFaceIdentityEncoder, DlibIdentityEncoder, IResNet, load_arcface_backbone,
                            load_identity_encoder)
from recon.identity.iresnet import ARCFACE_ENV_VAR
from recon.losses import identity_loss

R50_STAGES = (3, 4, 14, 3)


def insightface_r50_shapes() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of insightface arcface_torch ``iresnet50`` (fp16=False),
    written out from its published layout, independently of our module."""
    shapes: dict[str, tuple[int, ...]] = {}

    def batch_norm(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 3, 3)
    batch_norm("bn1", 64)
    shapes["prelu.weight"] = (64,)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), R50_STAGES), start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            batch_norm(f"{prefix}.bn1", inplanes)
            shapes[f"{prefix}.conv1.weight"] = (planes, inplanes, 3, 3)
            batch_norm(f"{prefix}.bn2", planes)
            shapes[f"{prefix}.prelu.weight"] = (planes,)
            shapes[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            batch_norm(f"{prefix}.bn3", planes)
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (planes, inplanes, 1, 1)
                batch_norm(f"{prefix}.downsample.1", planes)
            inplanes = planes
    batch_norm("bn2", 512)
    shapes["fc.weight"] = (512, 512 * 7 * 7)
    shapes["fc.bias"] = (512,)
    batch_norm("features", 512)
    return shapes


def _random_state(dtype=torch.float32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in insightface_r50_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = (torch.randn(shape, generator=generator) * 0.05).to(dtype)
    return state


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("arcface") / "backbone.pth"
    state = _random_state(torch.float16)  # the ms1mv3 ..._fp16 release name; half halves the file
    torch.save(state, path)
    return path, state


def test_parameter_count_of_r50():
    shapes = insightface_r50_shapes()
    learnable = sum(int(np.prod(s)) for k, s in shapes.items()
                    if not k.rsplit(".", 1)[1] in ("running_mean", "running_var",
                                                  "num_batches_tracked"))
    model = IResNet()
    assert sum(p.numel() for p in model.parameters()) == learnable == 43_590_848
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes


def test_strict_load_of_an_insightface_state_dict(backbone_file):
    path, state = backbone_file
    model = load_arcface_backbone(path)
    loaded = model.state_dict()
    for key in ("conv1.weight", "layer3.13.conv2.weight", "layer4.0.downsample.1.running_var",
                "fc.weight", "features.bias"):
        assert torch.equal(loaded[key], state[key].to(loaded[key].dtype))
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 112, 112)).shape == (2, 512)


@pytest.fixture(scope="module")
def r50_state() -> dict[str, torch.Tensor]:
    return IResNet().state_dict()


def test_ddp_prefixed_keys_load(tmp_path, r50_state):
    state = {f"module.{k}": v for k, v in r50_state.items()}
    path = tmp_path / "ddp.pth"
    torch.save(state, path)
    assert isinstance(load_arcface_backbone(path), IResNet)


def test_bad_state_dicts_name_the_file(tmp_path, r50_state):
    state = r50_state
    incomplete = {k: v for k, v in state.items() if not k.startswith("fc.")}
    path = tmp_path / "incomplete.pth"
    torch.save(incomplete, path)
    with pytest.raises(ValueError, match=r"incomplete\.pth.*fc\.weight"):
        load_arcface_backbone(path)
    wrong = dict(state, **{"fc.weight": torch.zeros(512, 10)})
    path = tmp_path / "wrong.pth"
    torch.save(wrong, path)
    with pytest.raises(ValueError, match=r"wrong\.pth.*fc\.weight"):
        load_arcface_backbone(path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_arcface_backbone(garbage)


def test_missing_weights_say_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(ARCFACE_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError) as error:
        load_arcface_backbone()
    message = str(error.value)
    assert "ms1mv3_arcface_r50_fp16" in message and "--arcface" in message
    assert ARCFACE_ENV_VAR in message
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_identity_encoder("arcface", weights=tmp_path / "nowhere.pth")


def test_environment_variable_points_at_the_weights(backbone_file, monkeypatch):
    monkeypatch.setenv(ARCFACE_ENV_VAR, str(backbone_file[0]))
    encoder = load_identity_encoder("arcface")
    assert isinstance(encoder, ArcFaceIdentityEncoder) and encoder.feature_dim == 512
    assert not any(p.requires_grad for p in encoder.parameters())


@pytest.fixture(scope="module")
def arcface_encoder() -> ArcFaceIdentityEncoder:
    """A one-block-per-stage iResNet with random weights: the alignment, the input
    convention and the gradients do not depend on the depth, and it runs 5x faster."""
    torch.manual_seed(0)
    return ArcFaceIdentityEncoder(IResNet(layers=(1, 1, 1, 1)))


def _face_landmarks() -> torch.Tensor:
    """68 landmarks of a frontal face in a 224 crop (the standard 3D landmarks projected
    at the original's 102 px/dm, y-down), jittered."""
    from recon.standard_landmarks import STANDARD_LANDMARKS_68
    points = np.asarray(STANDARD_LANDMARKS_68)[:, :2] * [102.0, -102.0] + [112.0, 112.0]
    jitter = np.random.default_rng(3).normal(scale=1.5, size=points.shape)
    return torch.from_numpy(points + jitter)[None]


def test_alignment_equals_skimage_similarity(arcface_encoder):
    skimage_transform = pytest.importorskip("skimage.transform")
    from recon import constants as C
    from recon.standard_landmarks import five_point_template
    landmarks = _face_landmarks()
    matrix = arcface_encoder.alignment_matrices(landmarks)[0].numpy()
    source = five_point_template(landmarks[0].numpy())
    target = np.asarray(C.ARCFACE_TEMPLATE_112, dtype=np.float32)
    if hasattr(skimage_transform.SimilarityTransform, "from_estimate"):
        reference = skimage_transform.SimilarityTransform.from_estimate(source, target)
    else:
        reference = skimage_transform.SimilarityTransform()
        assert reference.estimate(source, target)
    np.testing.assert_allclose(matrix, reference.params[:2], atol=1e-5)


def test_network_input_is_two_x_minus_one(arcface_encoder):
    seen = []
    hook = arcface_encoder.network.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        values = torch.tensor([0.5, 1.0, 0.0])
        images = values.view(3, 1, 1, 1).expand(3, 3, 224, 224).contiguous()
        arcface_encoder(images, _face_landmarks().float().expand(3, -1, -1))
        # Away from the top rows (which fall above the 224 crop and are zero-padded, as
        # in the original), the input is 2x - 1 of the constant images.
        inside = seen[-1][..., 20:, :]
        assert torch.allclose(inside, (2 * values - 1).view(3, 1, 1, 1).expand_as(inside),
                              atol=1e-5)
    finally:
        hook.remove()


def test_arcface_features_normalised_and_differentiable(arcface_encoder):
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    images.requires_grad_(True)
    landmarks = _face_landmarks().float().expand(2, -1, -1)
    features = arcface_encoder(images, landmarks)
    assert features.shape == (2, 512)
    assert torch.allclose(features.norm(dim=-1), torch.ones(2), atol=1e-5)
    identity_loss(features, features.detach().flip(0), reduction="none").sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_arcface_gradient_matches_finite_differences():
    """Through the 112 warp, 2x - 1 and an iResNet in float64, on single pixels."""
    torch.manual_seed(1)
    encoder = ArcFaceIdentityEncoder(IResNet(layers=(1, 1, 1, 1)).double())
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(1, 3, 224, 224, generator=generator, dtype=torch.float64)
    target = torch.randn(1, 512, generator=generator, dtype=torch.float64)
    matrices = encoder.alignment_matrices(_face_landmarks())
    pixels = images.clone().requires_grad_(True)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return identity_loss(encoder(x, matrices=matrices), target, reduction="none").sum()

    assert_pixel_gradients_match(loss, pixels, ((0, 100, 112), (2, 140, 90)))


# ---------------------------------------------------------------------------- loss + factory

def test_identity_loss_is_one_minus_cosine():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0], [4.0, 3.0]])
    expected = torch.tensor([0.0, 1.0, 2.0, 1.0 - 24.0 / 25.0])
    assert torch.allclose(identity_loss(a, b, reduction="none"), expected, atol=1e-7)
    with pytest.raises(ValueError, match="features must both be"):
        identity_loss(a, b[:3])


def test_factory_kinds():
    encoder = load_identity_encoder("dlib", device="cpu")
    assert isinstance(encoder, DlibIdentityEncoder) and encoder.feature_dim == 128
    with pytest.raises(ValueError, match="unknown identity encoder"):
        load_identity_encoder("facenet")

"""Shared fixtures. ``shared_data`` is the original repo's files in ../shared/data: tests
that need it skip when it is absent, and fail when CI=true (CI always has it).

``tiny_model`` is the embedded procedural model at its coarsest resolution: a real
morphable model with every field BFM09 has, only smaller, built once per session (tests
wrap it in ``FaceModel``; one that changes the model's tensors works on a
``copy.deepcopy``). ``octahedron_model`` is a closed toy mesh for exact geometric answers.
``small_photo_sets`` writes small out-of-model photo sets and ``spread_rnet`` builds an
untrained R-Net whose identities differ between their photos (for the C-Net tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from recon.morphable import MorphableModel, incident_triangles
from recon.standard_landmarks import STANDARD_LANDMARKS_68

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    return Path(os.environ.get("FACESET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data_dir()
    if not (path / "bfm").is_dir() or not (path / "examples").is_dir():
        message = (f"the original repo's data (bfm/, examples/) is not at {path}; "
                   "set FACESET_SHARED_DATA to its folder")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


TINY_MODEL_RESOLUTION = 40  # the coarsest grid that still holds 68 distinct landmark vertices


@pytest.fixture(scope="session")
def tiny_model() -> MorphableModel:
    from recon.models.procedural import build_embedded_model
    return build_embedded_model(resolution=TINY_MODEL_RESOLUTION)


@pytest.fixture()
def octahedron_model() -> MorphableModel:
    """A closed octahedron with 68 extra landmark vertices at the standard face (seeded bases)."""
    rng = torch.Generator().manual_seed(0)
    landmarks = torch.tensor(STANDARD_LANDMARKS_68, dtype=torch.float32)
    octa = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                        dtype=torch.float32)
    mean = torch.cat([octa, landmarks])
    n = mean.shape[0]
    tri = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4],
                        [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return MorphableModel(
        name="tiny", mean_shape=mean,
        id_basis=torch.randn(3 * n, 5, generator=rng) * 0.01,
        exp_basis=torch.randn(3 * n, 4, generator=rng) * 0.01,
        mean_albedo=torch.full((n, 3), 200.0), tex_basis=torch.randn(3 * n, 3, generator=rng),
        triangles=tri, landmark_ids=torch.arange(6, 6 + 68), point_buf=incident_triangles(tri, n),
        front_vertex_ids=torch.arange(6), front_triangles=tri[:4],
        skin_mask=torch.ones(n, dtype=torch.bool))


def _small_photo_sets(out: Path, subjects: int, images: int, seed: int) -> Path:
    """``out`` with ``subjects`` out-of-model persons of ``images`` photos each (``faceset synth
    --realism photo``), small (96-128 pixels, 128-pixel skin textures) and unoccluded."""
    from faceset.photoreal.generate import PhotoConfig, synthesize_photos
    synthesize_photos(out, PhotoConfig(subjects=subjects, images=images, seed=seed, image_size=(96, 128),
                                       texture_size=128, occluder_probability=0.0))
    return out


@pytest.fixture(scope="session")
def small_photo_sets():
    """``_small_photo_sets(out, subjects, images, seed)``: small out-of-model photo sets."""
    return _small_photo_sets


def _spread_rnet(photo_dirs: list[Path], arch: str, seed: int = 0):
    """An R-Net (random ``arch`` backbone, seeded) whose identity and albedo heads spread the
    identities of the photos in ``photo_dirs`` around zero (SD about 0.5), in eval mode.

    Its batch-norm statistics are those of these photos: with the fresh ones (mean 0,
    variance 1) some backbones' pooled features are about 1e-9, and a C-Net's layer norm
    sees equal rows. Even then an untrained backbone's features differ by only a few per
    cent between photos, so random heads alone would give nearly equal identities and a
    C-Net nothing to weigh: the heads are scaled to the features' spread.
    """
    from recon.rnet import ReconNet
    from recon.training.data import FaceTrainingSet, discover
    torch.manual_seed(seed)
    net = ReconNet(arch)
    photos = [photo for folder in photo_dirs for photo in discover([folder])[0]]
    dataset = FaceTrainingSet(photos, augment=False)
    images = torch.stack([dataset[i]["image"] for i in range(len(photos))])
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                layer.reset_running_stats()
                layer.momentum = None   # a cumulative average: one batch sets them exactly
        net.train()(images)
        net.eval()
        features = net.features(images)
        centred = features - features.mean(0)
        for head in (net.final_layers[0], net.final_layers[2]):
            weight = torch.randn(head.out_channels, features.shape[1])
            scale = 0.5 / (centred @ weight.T).std()
            head.weight.copy_((scale * weight)[:, :, None, None])
            head.bias.copy_(-scale * features.mean(0) @ weight.T)
    return net


@pytest.fixture(scope="session")
def spread_rnet():
    """``_spread_rnet(photo_dirs, arch, seed=0)``: an R-Net whose identities differ between
    the photos of ``photo_dirs`` (batch norm calibrated on them)."""
    return _spread_rnet

"""ArcFace iResNet (insightface ``arcface_torch`` backbones), loading a user's ``backbone.pth``.

The layout and the state-dict key names are insightface's ``iresnet.py``, so its published
``backbone.pth`` files load strictly: ``conv1`` (3x3, 64), ``bn1``, ``prelu``, ``layer1..4``
of ``IBasicBlock`` (bn1, conv1, bn2, prelu, conv2 with the stride, bn3, and a 1x1 conv + BN
``downsample`` on the first block of each stage), ``bn2``, ``dropout``, ``fc`` (512*7*7 ->
512) and ``features`` (BatchNorm1d). All batch norms have eps 1e-5. r50 has stages
[3, 4, 14, 3]. Input: (B, 3, 112, 112) RGB scaled to [-1, 1] (x -> 2x - 1 of [0, 1] pixels,
as the original's ``2 * img - 1`` and insightface's ``(img / 255 - 0.5) / 0.5``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .. import constants as C
from ..io import read_torch_file

ARCFACE_INPUT_SIZE = C.ARCFACE_SIZE
ARCFACE_FEATURE_DIM = 512       # embedding size of arcface_torch backbones
ARCFACE_ENV_VAR = "FACESET_ARCFACE"
ARCFACE_LAYERS = {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3),
                  "r100": (3, 13, 30, 3)}
_BN_EPS = 1e-5
ARCFACE_HELP = (
    "ArcFace weights are not shipped (licence): download insightface's arcface_torch "
    "model 'ms1mv3_arcface_r50_fp16' (the backbone.pth the original Deep3DFaceRecon uses, "
    "from the insightface model zoo, recognition/arcface_torch) and point faceset at it with "
    f"--arcface PATH or the environment variable {ARCFACE_ENV_VAR}=PATH")


class IBasicBlock(nn.Module):
    """bn1 -> conv1 3x3 -> bn2 -> prelu -> conv2 3x3 (stride) -> bn3, plus the shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels, eps=_BN_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """insightface's iResNet; ``forward`` maps (B, 3, 112, 112) inputs in [-1, 1] to
    (B, 512) raw (not normalised) embeddings."""

    def __init__(self, layers: tuple[int, ...] = ARCFACE_LAYERS["r50"],
                 num_features: int = ARCFACE_FEATURE_DIM):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=_BN_EPS)
        self.prelu = nn.PReLU(64)
        in_channels = 64
        for index, (channels, count) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            blocks = [IBasicBlock(in_channels, channels, stride=2)]
            blocks += [IBasicBlock(channels, channels) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            in_channels = channels
        self.bn2 = nn.BatchNorm2d(512, eps=_BN_EPS)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (3, ARCFACE_INPUT_SIZE, ARCFACE_INPUT_SIZE):
            raise ValueError(f"ArcFace input must be (B, 3, {ARCFACE_INPUT_SIZE}, {ARCFACE_INPUT_SIZE}), "
                             f"got {tuple(x.shape)}")
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def resolve_arcface_path(path: Optional[str | os.PathLike] = None) -> Path:
    """The backbone file: ``path``, else ``$FACESET_ARCFACE``; one clear error if missing."""
    chosen = path if path is not None else os.environ.get(ARCFACE_ENV_VAR)
    if not chosen:
        raise FileNotFoundError(f"no ArcFace backbone given. {ARCFACE_HELP}")
    chosen = Path(chosen)
    if not chosen.is_file():
        raise FileNotFoundError(f"{chosen}: ArcFace backbone file not found. {ARCFACE_HELP}")
    return chosen


def load_arcface_backbone(path: Optional[str | os.PathLike] = None,
                          arch: str = "r50") -> IResNet:
    """Build an iResNet and load insightface weights strictly (``backbone.pth``).

    A state dict saved from DistributedDataParallel (keys prefixed ``module.``) is accepted.
    Raises FileNotFoundError (with where to get the file) or ValueError naming the file and
    the mismatching keys.
    """
    if arch not in ARCFACE_LAYERS:
        raise ValueError(f"unknown ArcFace architecture {arch!r}; one of {sorted(ARCFACE_LAYERS)}")
    source = resolve_arcface_path(path)
    state = read_torch_file(source)
    if not isinstance(state, dict):
        raise ValueError(f"{source}: expected a state dict, found {type(state).__name__}")
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    model = IResNet(ARCFACE_LAYERS[arch])
    result = model.load_state_dict(_cast_like(state, model.state_dict(), source),
                                   strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{source}: not an insightface {arch} backbone; missing keys "
                         f"{result.missing_keys[:5]}, unexpected keys {result.unexpected_keys[:5]}")
    return model


def _cast_like(state: dict, reference: dict, source: Path) -> dict:
    """fp16 checkpoints load into float32 modules; shapes must match exactly."""
    out = {}
    for key, value in state.items():
        if key in reference and torch.is_tensor(value):
            if value.shape != reference[key].shape:
                raise ValueError(f"{source}: parameter {key} has shape {tuple(value.shape)}, the network "
                                 f"needs {tuple(reference[key].shape)}")
            value = value.to(reference[key].dtype)
        out[key] = value
    return out

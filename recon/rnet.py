"""R-Net: a ResNet backbone regressing 3DMM coefficients (SPEC 1.2, 1.4).

Same module names as the original's ``ReconNetWrapper`` so its ``epoch_20.pth`` loads
strictly: ``backbone.*`` (torchvision ResNet without ``fc``) and ``final_layers.{0..6}``
(1x1 convolutions for id, exp, tex, angle, gamma, (tx, ty), tz), all zero-initialised.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision

from .constants import RNET_ARCHITECTURES
from .io import read_torch_file
from .types import Coeffs

BACKBONE_CHANNELS = {"resnet50": 2048, "resnet18": 512, "mobilenet_v3_small": 576}
# Backbones R-Net can be built with: the original's ResNet-50 first (its checkpoint's layout).
ARCH_CHOICES = RNET_ARCHITECTURES
assert set(BACKBONE_CHANNELS) == set(ARCH_CHOICES)
CHECKPOINT_KEY = "net_recon"
CHECKPOINT_HELP = ("the published R-Net checkpoint of Deep3DFaceRecon_pytorch "
                   "(face_recon_feat0.2_augment/epoch_20.pth, linked from its README)")


class ResNetBackbone(torch.nn.Module):
    """torchvision ResNet up to the global average pool; output (B, C, 1, 1).

    Wraps the torchvision model so the parameter names are exactly torchvision's
    (``conv1``, ``bn1``, ``layer1`` ...) without ``fc``, as in the original.
    """

    def __init__(self, arch: str = "resnet50"):
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.avgpool = net.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x)


class MobileNetBackbone(torch.nn.Module):
    """torchvision MobileNetV3-small up to its global average pool; output (B, 576, 1, 1).

    A small backbone (about 0.06 GFLOPs at 224 px against ResNet-50's 4.1) for R-Nets
    trained here on the CPU; its parameter names are torchvision's (``features.*``) without
    the classifier.
    """

    def __init__(self):
        super().__init__()
        net = torchvision.models.mobilenet_v3_small(weights=None)
        self.features, self.avgpool = net.features, net.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.features(x))


def build_backbone(arch: str) -> torch.nn.Module:
    """The feature extractor of an R-Net: (B, 3, H, W) -> (B, BACKBONE_CHANNELS[arch], 1, 1)."""
    return MobileNetBackbone() if arch == "mobilenet_v3_small" else ResNetBackbone(arch)


class ReconNet(torch.nn.Module):
    """Images (B, 3, 224, 224) RGB float in [0, 1], **not normalised** (as the original)
    -> coefficient vector (B, n_id + n_exp + n_tex + 3 + 27 + 3), 257 for BFM09."""

    def __init__(self, arch: str = "resnet50", sizes: dict[str, int] | None = None):
        super().__init__()
        if arch not in BACKBONE_CHANNELS:
            raise ValueError(f"unknown R-Net backbone {arch!r}; choose from {list(BACKBONE_CHANNELS)}")
        sizes = sizes or Coeffs.sizes_for()
        self.sizes = sizes
        self.arch = arch
        self.backbone = build_backbone(arch)
        head_dims = [sizes["id"], sizes["exp"], sizes["tex"], sizes["angle"], sizes["gamma"], 2, 1]
        channels = BACKBONE_CHANNELS[arch]
        self.final_layers = torch.nn.ModuleList(
            torch.nn.Conv2d(channels, d, kernel_size=1, bias=True) for d in head_dims)
        for layer in self.final_layers:
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self._pooled(images))

    def _pooled(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"R-Net input must be (B, 3, H, W), got {tuple(images.shape)}")
        return self.backbone(images)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, 1) pooled backbone features -> (B, D) coefficient vector."""
        return torch.cat([head(pooled) for head in self.final_layers], dim=1).flatten(1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's globally pooled features (B, C) of images (B, 3, 224, 224) RGB in
        [0, 1]: what the C-Net reads (C = ``BACKBONE_CHANNELS[arch]``)."""
        return self._pooled(images).flatten(1)

    def features_and_coefficients(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C) pooled features and (B, D) coefficients in one backbone pass."""
        pooled = self._pooled(images)
        return pooled.flatten(1), self.head(pooled)

    def predict(self, images: torch.Tensor) -> Coeffs:
        return Coeffs.from_vector(self(images), self.sizes)


def load_checkpoint(path: str | os.PathLike, arch: str = "resnet50",
                    map_location: str | torch.device = "cpu",
                    sizes: dict[str, int] | None = None) -> ReconNet:
    """An R-Net with the original's ``epoch_<N>.pth`` weights (``net_recon``, strict).

    sizes: the coefficient group sizes of the face model it regresses (default the BFM's).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it is {CHECKPOINT_HELP}")
    state = read_torch_file(path, map_location)
    if isinstance(state, dict) and CHECKPOINT_KEY in state:
        state = state[CHECKPOINT_KEY]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not an R-Net checkpoint (no {CHECKPOINT_KEY!r} weights)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = ReconNet(arch, sizes=sizes)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        other = [a for a in ARCH_CHOICES if a != arch]
        reason = str(err).strip().splitlines()[0]
        raise ValueError(f"{path}: weights do not fit a {arch} R-Net for this face model "
                         f"(another --arch, e.g. {other[0]}, or another --bfm?): {reason}") from err
    return net.eval()

"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

The network is ``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp``: a 7x7/2 conv stem
(affine = batch norm folded into a per-channel scale and shift, relu, 3x3/2 max pool), 14
residual blocks of two 3x3 convs (32, 64, 128, 256 channels; four of them downsampling),
a global average and a 128-d fully connected layer without bias. Its input is a 150x150 RGB
chip with dlib's per-channel means removed and divided by 256.

dlib's conventions that shape the port (each checked against dlib's own descriptor):
* convolutions and pools with stride 2 have **no padding** (dlib's default padding is
  ``size // 2`` only for stride 1), so a block's conv path and its 2x2 average-pooled
  shortcut can differ by one pixel (3x3 vs 4x4 at the 8x8 stage);
* ``add_prev`` adds tensors of different shapes by treating the missing elements (extra
  channels, the last row/column) as zeros, so the sum has the larger shape;
* the fc layer stores its weights as (inputs, outputs) and computes ``x @ W``.

Measured agreement with dlib's ``compute_face_descriptor`` on the 11 example photos: max
|difference| 3.6e-7 (float32, CPU); on CUDA float32 with cuDNN's default TF32 convolutions
1.3e-4, and 3.3e-7 with ``torch.backends.cudnn.allow_tf32 = False`` (benchmarks section
``identity.md``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dlib_format import DlibFormatError, DlibLayer, DlibNetwork, read_dlib_network

DLIB_MODEL_NAME = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_CHIP_SIZE = 150            # side of the face chip the network takes
DLIB_CHIP_PADDING = 0.25        # compute_face_descriptor's default chip padding
DLIB_DESCRIPTOR_DIM = 128       # size of dlib's face descriptor
DLIB_INPUT_DIVISOR = 256.0      # input_rgb_image_sized: (pixel - mean) / 256


def default_dlib_model_path() -> Path:
    """The ResNet weights shipped in the ``face-recognition-models`` package.

    The package is located without importing it (its import pulls in pkg_resources).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the dlib face recognition weights come with the 'face-recognition-models' "
            "package; install it with: pip install face-recognition-models")
    path = Path(spec.origin).parent / "models" / DLIB_MODEL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the face-recognition-models package; "
                                "reinstall it")
    return path


class ChannelAffine(nn.Module):
    """dlib's ``affine`` layer: y = gamma * x + beta per channel (a frozen batch norm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def add_zero_extended(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: a + b where missing channels / trailing rows and columns are 0.

    a, b: (B, C, H, W) with equal B. Returns (B, max C, max H, max W).
    """
    shape = [max(sa, sb) for sa, sb in zip(a.shape, b.shape)]

    def extend(t: torch.Tensor) -> torch.Tensor:
        pad = (0, shape[3] - t.shape[3], 0, shape[2] - t.shape[2], 0, shape[1] - t.shape[1])
        return F.pad(t, pad) if any(pad) else t

    return extend(a) + extend(b)


class ResidualBlock(nn.Module):
    """relu(add_prev(affine(conv(relu(affine(conv(x))))), shortcut(x))).

    The first conv has stride 2 and no padding in a downsampling block, whose shortcut is
    a 2x2/2 average pool of x; otherwise the shortcut is x itself.
    """

    def __init__(self, in_channels: int, channels: int, downsample: bool):
        super().__init__()
        stride, padding = (2, 0) if downsample else (1, 1)
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=padding)
        self.affine1 = ChannelAffine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.affine2 = ChannelAffine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(add_zero_extended(out, shortcut))


# (channels, downsample) of the 14 blocks, input side first (alevel4 ... alevel0).
DLIB_BLOCKS = ((32, False),) * 3 + ((64, True),) + ((64, False),) * 3 \
    + ((128, True),) + ((128, False),) * 2 + ((256, True),) + ((256, False),) * 2 \
    + ((256, True),)


class DlibFaceResNet(nn.Module):
    """dlib's 29-conv face recognition ResNet; raw 128-d descriptors like dlib's.

    ``forward(chips)``: chips (B, 3, 150, 150) float RGB in [0, 1] (pixel / 255), y-down
    rows as in any image; returns (B, 128) float descriptors, not normalised (dlib's
    ``compute_face_descriptor`` values; its same-person threshold is distance 0.6).
    """

    def __init__(self, channel_means: tuple[float, float, float] = (122.782, 117.001, 104.298)):
        super().__init__()
        # Per-channel RGB means of dlib's input layer, in 0-255 units (read from the file).
        self.register_buffer("channel_means", torch.tensor(channel_means).view(1, 3, 1, 1))
        self.stem_conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.stem_affine = ChannelAffine(32)
        blocks, in_channels = [], 32
        for channels, downsample in DLIB_BLOCKS:
            blocks.append(ResidualBlock(in_channels, channels, downsample))
            in_channels = channels
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(256, DLIB_DESCRIPTOR_DIM, bias=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or chips.shape[1] != 3:
            raise ValueError(f"chips must be (B, 3, H, W) RGB, got {tuple(chips.shape)}")
        x = (chips * 255.0 - self.channel_means.to(chips.dtype)) / DLIB_INPUT_DIVISOR
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem_conv(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    @classmethod
    def from_dlib_file(cls, path: Optional[str | Path] = None) -> "DlibFaceResNet":
        """Build the network and load dlib's weights (default: the packaged model file)."""
        path = Path(path) if path is not None else default_dlib_model_path()
        network = read_dlib_network(path)
        model = cls(channel_means=(network.input.config["avg_red"],
                                   network.input.config["avg_green"],
                                   network.input.config["avg_blue"]))
        _load_layers(model, network, str(path))
        return model


def _expect(layer: DlibLayer, kind: str, source: str, **config) -> DlibLayer:
    """Check that the next layer of the file is the one the architecture expects."""
    mismatch = {k: (layer.config.get(k), v) for k, v in config.items() if layer.config.get(k) != v}
    if layer.kind != kind or mismatch:
        raise DlibFormatError(f"{source}: expected a {kind} layer {config}, found "
                              f"{layer.kind} {layer.config} (not dlib's face recognition ResNet)")
    return layer


def _copy(target: torch.Tensor, values: np.ndarray, name: str, source: str) -> None:
    if values.size != target.numel():
        raise DlibFormatError(f"{source}: {name} has {values.size} values, the network "
                              f"needs {target.numel()}")
    with torch.no_grad():
        target.copy_(torch.from_numpy(values.reshape(target.shape)))


def _load_conv(conv: nn.Conv2d, layer: DlibLayer, source: str, name: str) -> None:
    _copy(conv.weight, layer.params["weight"], f"{name}.weight", source)
    _copy(conv.bias, layer.params["bias"], f"{name}.bias", source)


def _load_affine(affine: ChannelAffine, layer: DlibLayer, source: str, name: str) -> None:
    _expect(layer, "affine", source, mode=0)
    _copy(affine.gamma, layer.params["gamma"], f"{name}.gamma", source)
    _copy(affine.beta, layer.params["beta"], f"{name}.beta", source)


def _load_layers(model: DlibFaceResNet, network: DlibNetwork, source: str) -> None:
    """Walk the file's layers (input side first) and fill the matching modules."""
    layers: Iterator[DlibLayer] = iter(network.layers)

    def next_layer() -> DlibLayer:
        try:
            return next(layers)
        except StopIteration:
            raise DlibFormatError(f"{source}: fewer layers than dlib's face recognition "
                                  "ResNet has") from None

    _load_conv(model.stem_conv, _expect(next_layer(), "con", source, num_filters=32, nr=7,
                                        stride_y=2, padding_y=0), source, "stem_conv")
    _load_affine(model.stem_affine, next_layer(), source, "stem_affine")
    _expect(next_layer(), "relu", source)
    _expect(next_layer(), "max_pool", source, nr=3, nc=3, stride_y=2, stride_x=2, padding_y=0)
    for index, ((channels, downsample), block) in enumerate(zip(DLIB_BLOCKS, model.blocks)):
        name = f"blocks.{index}"
        stride, padding = (2, 0) if downsample else (1, 1)
        _load_conv(block.conv1, _expect(next_layer(), "con", source, num_filters=channels,
                                        nr=3, stride_y=stride, padding_y=padding),
                   source, f"{name}.conv1")
        _load_affine(block.affine1, next_layer(), source, f"{name}.affine1")
        _expect(next_layer(), "relu", source)
        _load_conv(block.conv2, _expect(next_layer(), "con", source, num_filters=channels,
                                        nr=3, stride_y=1, padding_y=1), source, f"{name}.conv2")
        _load_affine(block.affine2, next_layer(), source, f"{name}.affine2")
        if downsample:
            _expect(next_layer(), "avg_pool", source, nr=2, nc=2, stride_y=2, padding_y=0)
        _expect(next_layer(), "add_prev", source)
        _expect(next_layer(), "relu", source)
    _expect(next_layer(), "avg_pool", source, nr=0, nc=0)  # avg_pool_everything
    fc = _expect(next_layer(), "fc", source, num_outputs=DLIB_DESCRIPTOR_DIM, num_inputs=256)
    # dlib computes x @ W with W stored (inputs, outputs); torch's Linear stores W^T.
    _copy(model.fc.weight, np.ascontiguousarray(fc.params["weight"].reshape(256, -1).T),
          "fc.weight", source)
    if next(layers, None) is not None:
        raise DlibFormatError(f"{source}: more layers than dlib's face recognition ResNet has")

"""Reader for dlib's ``serialize`` format, enough to load a saved ``dnn`` network.

Facts of the format (dlib ``serialize.h``, ``dnn/core.h``, ``dnn/layers.h``, ``cuda/tensor.h``):

* integers: one control byte (low nibble = number of payload bytes, bit 0x80 = negative),
  then the magnitude little-endian; zero is written as ``01 00``;
* floats and doubles: two integers, a 64-bit mantissa and a 16-bit exponent, value
  ``mantissa * 2**exponent`` (exponents 32000/32001/32002 mean +inf/-inf/NaN);
* bool: the ASCII character ``'1'`` or ``'0'``;
* string: its length as an integer, then the raw bytes;
* tensor: version 2, then num_samples, k, nr, nc, then the values as raw little-endian
  float32; an ``alias_tensor`` (a view into a layer's params) is version 1 and the four
  sizes only;
* a network writes the *outermost* wrapper first, and each wrapper writes its version and
  then its sub-network before its own layer, so the layers' own data appears from the
  input upwards. ``add_layer`` is version 2 (its details follow the sub-network, then three
  bools and three tensors: x_grad, cached_output, params_grad); the innermost add_layer,
  which holds the input layer, is version 2 or 3 (input layer, details, three bools, three
  tensors, and in version 3 the sample expansion factor); tag and skip layers are version 1
  and write nothing of their own, so they are only counted here.

Only the layer kinds used by dlib's face recognition ResNet (and their older versions) are
understood; anything else is one clear error naming the file and the byte offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# float_details exponents that encode special values (dlib float_details.h).
_EXP_INF, _EXP_NINF, _EXP_NAN = 32000, 32001, 32002


class DlibFormatError(ValueError):
    """The file is not a dlib network of the kind this reader understands."""


@dataclass
class DlibLayer:
    """One computational layer (an ``add_layer``'s details), in input-to-output order.

    ``kind`` is the layer's version string without its version suffix semantics, e.g.
    ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``, ``add_prev``, ``fc``;
    ``version`` the exact string found; ``config`` the layer's numbers (sizes, strides);
    ``params`` its parameter tensors as float32 numpy arrays.
    """

    kind: str
    version: str
    config: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))


@dataclass
class DlibNetwork:
    """What the file holds: the loss, the input layer and the computational layers."""

    loss: DlibLayer
    input: DlibLayer
    layers: list[DlibLayer]
    num_wrappers: int  # tag / skip layers (they carry no data)

    def num_parameters(self) -> int:
        return sum(layer.num_parameters() for layer in self.layers)

    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]


class _Reader:
    """Cursor over the file's bytes with dlib's primitive decoders."""

    def __init__(self, data: bytes, source: str):
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, problem: str) -> DlibFormatError:
        return DlibFormatError(f"{self.source}: {problem} (at byte {self.pos})")

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise self.fail(f"file ends early, needed {count} more bytes")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def peek_byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("file ends early")
        return self.data[self.pos]

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent == _EXP_INF:
            return float("inf")
        if exponent == _EXP_NINF:
            return float("-inf")
        if exponent == _EXP_NAN:
            return float("nan")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def bool(self) -> bool:
        char = self.take(1)
        if char not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {char!r}")
        return char == b"1"

    def string(self) -> str:
        length = self.int()
        if length < 0 or length > 1 << 20:
            raise self.fail(f"bad string length {length}")
        return self.take(length).decode("latin-1")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise self.fail(f"tensor version {version}, expected 2")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        values = np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise self.fail(f"alias_tensor version {version}, expected 1")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


def _split_params(reader: _Reader, params: np.ndarray,
                  views: list[tuple[str, tuple[int, int, int, int]]]) -> dict[str, np.ndarray]:
    """Cut a layer's flat params into its alias-tensor views, in order."""
    flat = params.reshape(-1)
    out, offset = {}, 0
    for name, shape in views:
        count = int(np.prod(shape))
        if offset + count > flat.size:
            raise reader.fail(f"parameter view {name} {shape} exceeds the {flat.size} params")
        out[name] = flat[offset:offset + count].reshape(shape).copy()
        offset += count
    if offset != flat.size:
        raise reader.fail(f"{flat.size - offset} params left over after the views")
    return out


def _read_con(reader: _Reader, version: str) -> DlibLayer:
    params = reader.tensor()
    config = {"num_filters": reader.int(), "nr": reader.int(), "nc": reader.int(),
              "stride_y": reader.int(), "stride_x": reader.int(),
              "padding_y": reader.int(), "padding_x": reader.int()}
    filters, biases = reader.alias_tensor(), reader.alias_tensor()
    for key in ("learning_rate_mult", "weight_decay_mult", "bias_learning_rate_mult",
                "bias_weight_decay_mult"):
        config[key] = reader.float()
    config["use_bias"] = reader.bool() if version in ("con_5", "con_6") else True
    if version == "con_6":
        config["use_relu"] = reader.bool()
    views = [("weight", filters)] + ([("bias", biases)] if config["use_bias"] else [])
    return DlibLayer("con", version, config, _split_params(reader, params, views))


def _read_affine(reader: _Reader, version: str) -> DlibLayer:
    params = reader.tensor()
    gamma, beta = reader.alias_tensor(), reader.alias_tensor()
    config = {"mode": reader.int()}  # 0 = per channel (CONV_MODE), 1 = per element (FC_MODE)
    if version == "affine_2":
        config["disabled"] = reader.bool()
    return DlibLayer("affine", version, config,
                     _split_params(reader, params, [("gamma", gamma), ("beta", beta)]))


def _read_pool(reader: _Reader, version: str) -> DlibLayer:
    keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    return DlibLayer(version.rsplit("_", 1)[0], version, {k: reader.int() for k in keys})


def _read_fc(reader: _Reader, version: str) -> DlibLayer:
    config = {"num_outputs": reader.int(), "num_inputs": reader.int()}
    params = reader.tensor()
    weights, biases = reader.alias_tensor(), reader.alias_tensor()
    config["bias_mode"] = reader.int()  # 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
    for key in ("learning_rate_mult", "weight_decay_mult", "bias_learning_rate_mult",
                "bias_weight_decay_mult"):
        config[key] = reader.float()
    if version == "fc_3":
        config["use_bias"] = reader.bool()
    has_bias = config["bias_mode"] == 0 and config.get("use_bias", True)
    views = [("weight", weights)] + ([("bias", biases)] if has_bias else [])
    return DlibLayer("fc", version, config, _split_params(reader, params, views))


def _read_relu(reader: _Reader, version: str) -> DlibLayer:
    config = {"disabled": reader.bool()} if version == "relu_2" else {}
    return DlibLayer("relu", version, config)


_LAYER_READERS = {
    "con_4": _read_con, "con_5": _read_con, "con_6": _read_con,
    "affine_": _read_affine, "affine_2": _read_affine,
    "relu_": _read_relu, "relu_2": _read_relu,
    "max_pool_2": _read_pool, "avg_pool_2": _read_pool,
    "add_prev_": lambda reader, version: DlibLayer("add_prev", version),
    "fc_2": _read_fc, "fc_3": _read_fc,
}


def _read_layer_details(reader: _Reader) -> DlibLayer:
    start = reader.pos
    version = reader.string()
    if version not in _LAYER_READERS:
        reader.pos = start
        raise reader.fail(f"unsupported dlib layer '{version}'")
    return _LAYER_READERS[version](reader, version)


def _read_input(reader: _Reader) -> DlibLayer:
    version = reader.string()
    if version != "input_rgb_image_sized":
        raise reader.fail(f"unsupported input layer '{version}'")
    config = {"avg_red": reader.float(), "avg_green": reader.float(),
              "avg_blue": reader.float(), "nr": reader.int(), "nc": reader.int()}
    return DlibLayer("input_rgb_image_sized", version, config)


def _read_loss(reader: _Reader) -> DlibLayer:
    version = reader.string()
    if version == "loss_metric_2":
        return DlibLayer("loss_metric", version,
                         {"margin": reader.float(), "dist_thresh": reader.float()})
    if version == "loss_metric_":
        return DlibLayer("loss_metric", version)
    raise reader.fail(f"unsupported loss layer '{version}'")


def _skip_add_layer_trailer(reader: _Reader, num_tensors: int) -> None:
    """The three state bools and the cached tensors every add_layer writes after itself."""
    for _ in range(3):
        reader.bool()
    for _ in range(num_tensors):
        reader.tensor()


def read_dlib_network(path: str | Path) -> DlibNetwork:
    """Parse a dlib ``dnn`` network file (``net_type`` written with ``dlib::serialize``).

    Returns the loss, the input layer and every computational layer in input-to-output
    order with its parameters as float32 numpy arrays. Raises ``DlibFormatError`` naming
    the file and the byte offset on anything it does not understand, ``FileNotFoundError``
    when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dlib network file not found")
    reader = _Reader(path.read_bytes(), str(path))
    if reader.int() != 1:
        raise reader.fail("expected add_loss_layer version 1 at the start")
    loss = _read_loss(reader)

    # The wrappers' versions (1, 2 or 3) come first, outermost to innermost, until the
    # input layer's name: a string whose length (21 for input_rgb_image_sized) is > 3.
    wrapper_versions = []
    while True:
        start = reader.pos
        version = reader.int()
        if version not in (1, 2, 3):
            reader.pos = start
            break
        wrapper_versions.append(version)
    if not wrapper_versions or wrapper_versions[-1] not in (2, 3):
        raise reader.fail("no input-bearing add_layer found")
    input_layer = _read_input(reader)

    layers = []
    innermost_version = wrapper_versions.pop()
    layers.append(_read_layer_details(reader))
    _skip_add_layer_trailer(reader, num_tensors=3)  # x_grad, cached_output, grad_final
    if innermost_version == 3:
        reader.int()  # _sample_expansion_factor
    num_wrappers = 0
    for version in reversed(wrapper_versions):
        if version == 1:  # tag or skip layer: nothing of its own after the sub-network
            num_wrappers += 1
            continue
        if version != 2:
            raise reader.fail(f"unexpected add_layer version {version}")
        layers.append(_read_layer_details(reader))
        _skip_add_layer_trailer(reader, num_tensors=3)  # x_grad, cached_output, params_grad
    if reader.pos != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.pos} unread bytes at the end")
    return DlibNetwork(loss, input_layer, layers, num_wrappers)

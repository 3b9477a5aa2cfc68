"""C-Net: the paper's learnt per-coefficient confidences for fusing a photo set (SPEC 9).

A small network reads R-Net's globally pooled backbone features of each photo of a set and
predicts a positive confidence for every identity and albedo coefficient; the set's
identity (and albedo) is the element-wise confidence-weighted mean
alpha = sum_j c_j * alpha_j / sum_j c_j, a convex combination of the photos' coefficients
per coefficient. The paper's exact layers were never published (SPEC 9, unverified part);
ours: LayerNorm of the features, two hidden layers of ``hidden`` units with ReLU, a linear
output and softplus + ``CONFIDENCE_FLOOR``. The output layer starts at zero, so an
untrained C-Net gives every photo the same confidence: the authors' mean.

A C-Net belongs to the R-Net whose features it reads: its file records that R-Net's
backbone and a fingerprint of its weights, and ``check_rnet`` refuses another. Files hold
``{"net_conf": state_dict, "config": {...}, "rnet": {"arch", "fingerprint"}}`` (training
state too while training, ``aggregation.cnet_training``), and are found by path or by name
(``resolve_cnet``: ``$FACESET_CACHE/cnet/<name>.pth``).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from recon.io import read_torch_file, write_atomic
from recon.types import Coeffs

from .identity import AggregatedIdentity

CNET_KEY = "net_conf"
CONFIDENCE_FLOOR = 1e-4  # keeps every confidence strictly positive
CNET_FOLDER = "cnet"     # under $FACESET_CACHE: C-Nets saved by name


@dataclass(frozen=True)
class CNetConfig:
    """feature_dim: R-Net's pooled feature size; n_id, n_tex: the coefficient counts of the
    face model; hidden: units per hidden layer."""

    feature_dim: int
    n_id: int
    n_tex: int
    hidden: int = 256


class ConfidenceNet(torch.nn.Module):
    """Per-photo features (M, feature_dim) -> confidences (M, n_id + n_tex), all > 0."""

    def __init__(self, config: CNetConfig):
        super().__init__()
        self.config = config
        self.layers = torch.nn.Sequential(
            torch.nn.LayerNorm(config.feature_dim),
            torch.nn.Linear(config.feature_dim, config.hidden), torch.nn.ReLU(),
            torch.nn.Linear(config.hidden, config.hidden), torch.nn.ReLU(),
            torch.nn.Linear(config.hidden, config.n_id + config.n_tex))
        torch.nn.init.zeros_(self.layers[-1].weight)  # start as the plain mean
        torch.nn.init.zeros_(self.layers[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.config.feature_dim:
            raise ValueError(f"C-Net features must be (M, {self.config.feature_dim}), got "
                             f"{tuple(features.shape)}")
        return torch.nn.functional.softplus(self.layers(features)) + CONFIDENCE_FLOOR

    def split(self, confidences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, n_id + n_tex) -> identity (M, n_id) and albedo (M, n_tex) confidences."""
        return confidences[:, :self.config.n_id], confidences[:, self.config.n_id:]


def fuse(values: torch.Tensor, confidences: torch.Tensor) -> torch.Tensor:
    """Differentiable element-wise weighted mean: values (M, K), confidences (M, K) > 0 ->
    (K,) = sum_j c_j v_j / sum_j c_j (in both arguments)."""
    return (confidences * values).sum(0) / confidences.sum(0)


def cnet_aggregate(cnet: ConfidenceNet, features: torch.Tensor, coeffs: Coeffs,
                   valid: Optional[torch.Tensor] = None) -> AggregatedIdentity:
    """Fuse the identity and albedo of M photos of one person with a C-Net.

    features: (M, feature_dim) R-Net pooled features of the photos (``ReconNet.features``);
    coeffs: (M, ...) their coefficients (R-Net's, or refined); valid: optional (M,) bool,
    the photos to use. Returns AggregatedIdentity (weights: each photo's normalised share
    per identity coefficient, zero rows for invalid photos). No gradient.
    """
    m = coeffs.batch_size
    if features.shape[0] != m:
        raise ValueError(f"{features.shape[0]} feature rows for {m} photos")
    valid = torch.ones(m, dtype=torch.bool, device=features.device) if valid is None else valid.bool()
    if not valid.any():
        raise ValueError("no valid image to aggregate")
    with torch.no_grad():
        conf_id, conf_tex = cnet.split(cnet(features))
        mask = valid.to(conf_id.dtype)[:, None]
        conf_id, conf_tex = conf_id * mask, conf_tex * mask
        fused_id = fuse(coeffs.id.detach(), conf_id)
        fused_tex = fuse(coeffs.tex.detach(), conf_tex)
    return AggregatedIdentity(id=fused_id[None], tex=fused_tex[None],
                              weights=conf_id / conf_id.sum(0, keepdim=True))


# ---- the R-Net a C-Net belongs to ----------------------------------------------------------

def rnet_fingerprint(rnet: torch.nn.Module) -> str:
    """SHA-256 (hex, 16 digits) of an R-Net's weights, in state_dict order."""
    digest = hashlib.sha256()
    for name, tensor in rnet.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def rnet_record(rnet) -> dict:
    return {"arch": getattr(rnet, "arch", "unknown"), "fingerprint": rnet_fingerprint(rnet)}


def check_rnet(record: dict, rnet, source: str) -> None:
    """Raise ValueError naming ``source`` when ``rnet`` is not the R-Net the C-Net was trained on."""
    own = rnet_record(rnet)
    if own != record:
        raise ValueError(f"{source}: this C-Net was trained on the features of another R-Net "
                         f"({record['arch']} {record['fingerprint']}; given {own['arch']} "
                         f"{own['fingerprint']}): use the --checkpoint it was trained with")


# ---- files -------------------------------------------------------------------------------

def cnet_dir() -> Path:
    """Where C-Nets saved by name live: ``$FACESET_CACHE/cnet`` (default ~/.cache/faceset/cnet)."""
    return Path(os.environ.get("FACESET_CACHE") or Path.home() / ".cache" / "faceset") / CNET_FOLDER


def resolve_cnet(name_or_path: str | os.PathLike) -> Path:
    """A C-Net file: ``name_or_path`` itself when it is a file or ends with ``.pth``, else
    ``cnet_dir()/<name>.pth``."""
    path = Path(name_or_path)
    if path.is_file() or path.suffix == ".pth" or len(path.parts) > 1:
        return path
    return cnet_dir() / f"{name_or_path}.pth"


def cnet_state(cnet: ConfidenceNet, rnet_info: dict, **extra) -> dict:
    return {CNET_KEY: cnet.state_dict(), "config": asdict(cnet.config), "rnet": dict(rnet_info), **extra}


def save_cnet(path: str | os.PathLike, cnet: ConfidenceNet, rnet_info: dict, **extra) -> Path:
    """Write a C-Net file atomically (``extra``: e.g. training state); returns the path."""
    buffer = io.BytesIO()
    torch.save(cnet_state(cnet, rnet_info, **extra), buffer)
    write_atomic(path, buffer.getvalue())
    return Path(path)


def read_cnet_file(name_or_path: str | os.PathLike, map_location="cpu") -> tuple[Path, dict]:
    """(path, the file's dict), checked to be a C-Net file."""
    path = resolve_cnet(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: train a C-Net with 'faceset train-cnet' "
                                f"(saved by name under {cnet_dir()})")
    state = read_torch_file(path, map_location)
    if not isinstance(state, dict) or not {CNET_KEY, "config", "rnet"} <= set(state):
        raise ValueError(f"{path}: not a C-Net file (no {CNET_KEY!r}, 'config' and 'rnet')")
    return path, state


def load_cnet(name_or_path: str | os.PathLike, map_location="cpu") -> tuple[ConfidenceNet, dict]:
    """The C-Net of a file (strict) in eval mode, and the record of its R-Net."""
    path, state = read_cnet_file(name_or_path, map_location)
    try:
        cnet = ConfidenceNet(CNetConfig(**state["config"]))
        cnet.load_state_dict(state[CNET_KEY], strict=True)
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"{path}: C-Net weights do not fit its config ({err})") from err
    return cnet.eval(), state["rnet"]

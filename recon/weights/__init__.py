"""The R-Net that ships with the package, and which face model it belongs to.

A shipped R-Net is two files in this folder (package data): the checkpoint, in the
original's format (``{"net_recon": state_dict}``, loaded by ``recon.rnet.load_checkpoint``),
and a JSON sidecar ``<name>.json`` that says what it is::

    {"format": "faceset.shipped_rnet/1", "file": "<name>.pth", "sha256": "...",
     "arch": "mobilenet_v3_small", "face_model": {...face_model_fingerprint...},
     "training": {"command": "faceset train ...", "date": "YYYY-MM-DD", ...},
     "auto": true, "refit_pose": false}

``auto`` (true when absent) says whether ``reconstruct --init auto`` starts from it; false
keeps the landmark initialiser as the default start (``--init rnet`` still uses it) and
``auto_note`` says why, e.g. that fits from it end worse than from the landmarks.
``refit_pose`` (false when absent): its pose is coarse, so the job re-fits each photo's pose
and expression to the detected landmarks for the R-Net's identity
(``recon.landmark_fit.refit_pose_expression``) before anything else uses them.

An R-Net regresses the coefficients of one face model: its heads have that model's sizes,
and what the numbers mean depends on the model's bases. ``find_shipped_rnet`` therefore
returns a checkpoint only for the face model whose fingerprint its sidecar records, so
BFM09 (``--bfm``) or the embedded model at another resolution or seed never gets it.

``python -m recon.weights add CHECKPOINT --arch ARCH --command "..."`` puts a trained
checkpoint here with its sidecar (see ``recon.weights.__main__``). ``$FACESET_RNET_DIR``
names another folder to search instead of this one (a user's own default R-Net, or tests).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from recon.constants import RNET_ARCHITECTURES

WEIGHTS_DIR = Path(__file__).resolve().parent
RNET_DIR_ENV = "FACESET_RNET_DIR"
SIDECAR_FORMAT = "faceset.shipped_rnet/1"
MAX_SHIPPED_BYTES = 25 * 2 ** 20      # issue 15: the committed checkpoint stays <= 25 MB
NORM_RTOL = 1e-4                      # basis norms agree to this (float32 builds on other machines)


@dataclass(frozen=True)
class ShippedRNet:
    """A shipped R-Net checkpoint that fits a face model: path, backbone, and its sidecar."""

    path: Path
    arch: str
    sidecar: dict

    @property
    def auto(self) -> bool:
        """Whether ``--init auto`` starts from it (the sidecar's ``auto``, true when absent)."""
        return bool(self.sidecar.get("auto", True))

    @property
    def refit_pose(self) -> bool:
        """Whether its pose and expression are re-fitted to the landmarks (the sidecar's
        ``refit_pose``, false when absent)."""
        return bool(self.sidecar.get("refit_pose", False))

    def describe(self) -> str:
        date = self.sidecar.get("training", {}).get("date", "undated")
        text = f"the shipped R-Net {self.path.name} ({self.arch}, trained {date})"
        if self.refit_pose:
            text += ", pose and expression re-fitted to the landmarks"
        if not self.auto:
            text += f"; --init rnet only: {self.sidecar.get('auto_note', 'not the default start')}"
        return text


def rnet_dir(folder: Optional[str | os.PathLike] = None) -> Path:
    """Where shipped R-Nets are looked for: ``folder``, else ``$FACESET_RNET_DIR``, else
    this package folder."""
    if folder is not None:
        return Path(folder)
    return Path(os.environ.get(RNET_DIR_ENV) or WEIGHTS_DIR)


def face_model_fingerprint(face_model) -> dict:
    """What identifies a face model for an R-Net: its name, mesh size, coefficient sizes,
    a hash of its topology (triangles and landmark vertices, exact integers) and the norms
    of its mean shape, mean albedo and every basis column (compared with a tolerance).

    face_model: a ``recon.face_model.FaceModel`` or ``recon.morphable.MorphableModel``.
    """
    topology = hashlib.sha256()
    for name in ("triangles", "landmark_ids"):
        topology.update(_array(getattr(face_model, name)).astype(np.int64).tobytes())
    norms = {g: _column_norms(getattr(face_model, f"{g}_basis"))
             for g in ("id", "exp", "tex")}
    mean_shape = _array(face_model.mean_shape).astype(np.float64).reshape(-1, 3)
    return {
        "name": face_model.name,
        "vertices": int(mean_shape.shape[0]),
        "triangles": int(_array(face_model.triangles).shape[0]),
        "coeff_sizes": {k: int(v) for k, v in face_model.coeff_sizes.items()},
        "topology_sha256": topology.hexdigest()[:16],
        # centred: FaceModel recentres the mean shape, MorphableModel does not
        "mean_shape_norm": _round(np.linalg.norm(mean_shape - mean_shape.mean(0))),
        "mean_albedo_norm": _round(np.linalg.norm(_array(face_model.mean_albedo).astype(np.float64))),
        "basis_column_norms": norms,
    }


def fingerprints_match(recorded: dict, current: dict) -> Optional[str]:
    """None when two fingerprints describe the same face model, else why not (one phrase)."""
    for key in ("name", "vertices", "triangles", "coeff_sizes", "topology_sha256"):
        if recorded.get(key) != current.get(key):
            return f"{key} {recorded.get(key)!r}, this face model's {current.get(key)!r}"
    for key in ("mean_shape_norm", "mean_albedo_norm"):
        if not _close(recorded.get(key), current.get(key)):
            return f"{key} {recorded.get(key)}, this face model's {current.get(key)}"
    for group, norms in current["basis_column_norms"].items():
        if not _close(recorded.get("basis_column_norms", {}).get(group), norms):
            return f"the {group} basis differs"
    return None


def find_shipped_rnet(face_model, folder: Optional[str | os.PathLike] = None
                      ) -> tuple[Optional[ShippedRNet], str]:
    """The shipped R-Net for ``face_model`` and, when there is none, why (one line).

    Every ``*.json`` sidecar of ``rnet_dir(folder)`` is tried in name order; the first whose
    face-model fingerprint matches and whose checkpoint file is present with the recorded
    SHA-256 is returned. Nothing is loaded: use ``recon.rnet.load_checkpoint(found.path,
    found.arch, sizes=face_model.coeff_sizes)``.
    """
    where = rnet_dir(folder)
    sidecars = sorted(where.glob("*.json")) if where.is_dir() else []
    if not sidecars:
        return None, f"no R-Net ships in {where}"
    current = face_model_fingerprint(face_model)
    reasons = []
    for sidecar in sidecars:
        found, reason = _check_sidecar(sidecar, current)
        if found is not None:
            return found, ""
        reasons.append(f"{sidecar.name}: {reason}")
    return None, "; ".join(reasons)


def shipped_rnet(face_model, folder: Optional[str | os.PathLike] = None) -> Optional[ShippedRNet]:
    """``find_shipped_rnet`` without the reason: the matching shipped R-Net, or None."""
    return find_shipped_rnet(face_model, folder)[0]


def _check_sidecar(sidecar: Path, current: dict) -> tuple[Optional[ShippedRNet], str]:
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
            return None, f"not a shipped R-Net sidecar (no format {SIDECAR_FORMAT!r})"
        arch, checkpoint = record["arch"], sidecar.parent / record["file"]
        recorded_model, digest = record["face_model"], record["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"unreadable sidecar ({type(err).__name__}: {err})"
    if arch not in RNET_ARCHITECTURES:
        return None, f"unknown backbone {arch!r}"
    mismatch = fingerprints_match(recorded_model, current)
    if mismatch is not None:
        return None, f"made for the face model {recorded_model.get('name')!r}, not this one ({mismatch})"
    if not checkpoint.is_file():
        return None, f"its checkpoint {checkpoint.name} is missing"
    if file_sha256(checkpoint) != digest:
        return None, f"{checkpoint.name} is not the file the sidecar describes (SHA-256 differs)"
    return ShippedRNet(checkpoint, arch, record), ""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _array(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _column_norms(basis) -> list[float]:
    return [_round(n) for n in np.linalg.norm(_array(basis).astype(np.float64), axis=0)]


def _round(value: float) -> float:
    return float(f"{float(value):.8g}")


def _close(recorded, current) -> bool:
    if recorded is None or current is None:
        return False
    a, b = np.asarray(recorded, dtype=np.float64), np.asarray(current, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=NORM_RTOL, atol=0.0))


def add_shipped_rnet(checkpoint: str | os.PathLike, arch: str, face_model, command: str,
                     date: str, folder: Optional[str | os.PathLike] = None,
                     name: Optional[str] = None, extra: Optional[dict] = None,
                     auto_note: Optional[str] = None, refit_pose: bool = False) -> ShippedRNet:
    """Put a trained R-Net into ``rnet_dir(folder)`` as a shipped one: ``<name>.pth``
    holding only ``net_recon`` (no optimiser state; the original's format) and ``<name>.json``.

    checkpoint: an ``epoch_<N>.pth`` / ``epoch_latest.pth`` of ``faceset train`` (or any
    file ``recon.rnet.load_checkpoint`` reads), loaded strictly for ``face_model``'s sizes
    first; arch: its backbone; command: the training command line; date: when it was
    trained (YYYY-MM-DD); name: default ``rnet_<arch>_<face model name>``; extra: more
    training facts for the sidecar (e.g. the run's train_config.json); auto_note: when
    given, ``--init auto`` does not start from it and this says why; refit_pose: its pose and
    expression are re-fitted to the landmarks in use (see the module docstring). Refuses a result
    over ``MAX_SHIPPED_BYTES``. Both files are written atomically, the sidecar last.
    """
    import io

    import torch

    from recon.io import write_atomic, write_text_atomic
    from recon.rnet import CHECKPOINT_KEY, load_checkpoint

    net = load_checkpoint(checkpoint, arch, sizes=face_model.coeff_sizes)
    buffer = io.BytesIO()
    torch.save({CHECKPOINT_KEY: net.state_dict()}, buffer)
    data = buffer.getvalue()
    if len(data) > MAX_SHIPPED_BYTES:
        raise ValueError(f"{checkpoint}: {len(data) / 2 ** 20:.1f} MB of weights, more than the "
                         f"{MAX_SHIPPED_BYTES // 2 ** 20} MB a shipped R-Net may have")
    where = rnet_dir(folder)
    name = name or f"rnet_{arch}_{face_model.name}"
    target = where / f"{name}.pth"
    write_atomic(target, data)
    record = {"format": SIDECAR_FORMAT, "file": target.name,
              "sha256": hashlib.sha256(data).hexdigest(), "arch": arch,
              "face_model": face_model_fingerprint(face_model),
              "training": {"command": command, "date": date, "source": Path(checkpoint).name,
                           **(extra or {})},
              "auto": auto_note is None, "refit_pose": refit_pose}
    if auto_note is not None:
        record["auto_note"] = auto_note
    write_text_atomic(where / f"{name}.json", json.dumps(record, indent=1) + "\n")
    return ShippedRNet(target, arch, record)

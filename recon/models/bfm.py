"""BFM09 in the original's formats: convert the raw files, load ``BFM_model_front.mat``.

The conversion follows the original exactly (SPEC 2.2), so the ``.mat`` it writes has the
same 11 keys, shapes, dtypes and values as the original's ``transferBFM09``. The loader
turns the 1-based float index arrays into 0-based int64 and builds the front-face
triangles correctly (SPEC 12 D1: ``tri_mask2`` indexes the ``frontmask2_idx`` subset;
the original PyTorch code used it against the full mesh, which distorts the mask).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io
import torch

from ..constants import BFM_EXP_DIM, BFM_ID_DIM, BFM_TEX_DIM, BFM_UNIT_DIVISOR
from ..io import write_mat
from ..morphable import MorphableModel

FRONT_MODEL_FILE = "BFM_model_front.mat"
FRONT_MODEL_KEYS = ("meanshape", "meantex", "idBase", "exBase", "texBase", "tri", "point_buf",
                    "tri_mask2", "keypoints", "frontmask2_idx", "skinmask")
INFO_KEYS_COPIED = ("tri", "point_buf", "tri_mask2", "keypoints", "frontmask2_idx", "skinmask")

HELPERS_SOURCE = ("the original repository's BFM/ folder "
                  "(github.com/sicxu/Deep3DFaceRecon_pytorch, folder BFM)")
# What each input file is and where a user obtains it (shown when it is missing).
SOURCES = {
    "01_MorphableModel.mat": "the Basel Face Model 2009 (licensed; register and download at "
                             "faces.dmi.unibas.ch/bfm, 'BFM 2009')",
    "Exp_Pca.bin": "the expression basis of Guo et al. (the 'CoarseData' download linked from "
                   "github.com/Juyong/3DFace)",
    "BFM_front_idx.mat": HELPERS_SOURCE,
    "BFM_exp_idx.mat": HELPERS_SOURCE,
    "facemodel_info.mat": HELPERS_SOURCE,
    "std_exp.txt": HELPERS_SOURCE,
}


def _require(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it is {SOURCES[name]}; put it in {folder}")
    return path


def _load_mat(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        data = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises several types for corrupt files
        raise ValueError(f"{path}: not a readable MATLAB file ({err})") from err
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{path}: missing variable(s) {', '.join(missing)}")
    return {k: data[k] for k in keys}


def read_exp_pca(path: Path, n_vertices: int = 53215) -> np.ndarray:
    """Guo et al.'s ``Exp_Pca.bin`` -> expPC (3·n_vertices, exp_dim) float32.

    Layout (little-endian): int32 exp_dim; float32 expMU[3n] (unused, as in the original);
    float32 expPC[exp_dim · 3n], component-major.
    """
    raw = Path(path).read_bytes()
    exp_dim = int(np.frombuffer(raw, "<i4", count=1)[0])
    size = 3 * n_vertices
    expected = 4 + 4 * size * (1 + exp_dim)
    if len(raw) != expected:
        raise ValueError(f"{path}: {len(raw)} bytes, expected {expected} for exp_dim={exp_dim} "
                         f"and {n_vertices} vertices")
    pcs = np.frombuffer(raw, "<f4", count=exp_dim * size, offset=4 + 4 * size)
    return pcs.reshape(exp_dim, size).T


def _gather_rows(basis: np.ndarray, vertex_index: np.ndarray) -> np.ndarray:
    """(3·Nv, K) xyz-interleaved basis -> the rows of the selected vertices."""
    k = basis.shape[1]
    return basis.reshape(-1, 3, k)[vertex_index].reshape(-1, k)


def convert_bfm09(folder: str | os.PathLike, out_path: str | os.PathLike | None = None) -> Path:
    """Write ``BFM_model_front.mat`` from BFM09 + Exp_Pca.bin + the original's helper files.

    ``folder`` holds 01_MorphableModel.mat, Exp_Pca.bin, BFM_front_idx.mat,
    BFM_exp_idx.mat, facemodel_info.mat and std_exp.txt. Returns the written path
    (default ``folder/BFM_model_front.mat``), written atomically.
    """
    folder = Path(folder)
    bfm = _load_mat(_require(folder, "01_MorphableModel.mat"),
                    ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV"))
    exp_pc = read_exp_pca(_require(folder, "Exp_Pca.bin"))
    exp_ev = np.loadtxt(_require(folder, "std_exp.txt"))
    index_exp = _load_mat(_require(folder, "BFM_front_idx.mat"), ("idx",))["idx"]
    trim_index = _load_mat(_require(folder, "BFM_exp_idx.mat"), ("trimIndex",))["trimIndex"]
    info = _load_mat(_require(folder, "facemodel_info.mat"), INFO_KEYS_COPIED)

    index_exp = index_exp.astype(np.int64).ravel() - 1
    index_shape = (trim_index.astype(np.int64).ravel() - 1)[index_exp]

    id_base = (bfm["shapePC"] * bfm["shapeEV"].reshape(1, -1) / BFM_UNIT_DIVISOR)[:, :BFM_ID_DIM]
    ex_base = (exp_pc * exp_ev.reshape(1, -1) / BFM_UNIT_DIVISOR)[:, :BFM_EXP_DIM]
    tex_base = (bfm["texPC"] * bfm["texEV"].reshape(1, -1))[:, :BFM_TEX_DIM]
    mean_shape = (bfm["shapeMU"].reshape(-1, 3) / BFM_UNIT_DIVISOR)[index_shape].reshape(1, -1)
    mean_tex = bfm["texMU"].reshape(-1, 3)[index_shape].reshape(1, -1)

    front = {
        "meanshape": mean_shape, "meantex": mean_tex,
        "idBase": _gather_rows(id_base, index_shape),
        "exBase": _gather_rows(ex_base, index_exp),
        "texBase": _gather_rows(tex_base, index_shape),
        **info,
    }
    out_path = Path(out_path) if out_path else folder / FRONT_MODEL_FILE
    write_mat(out_path, front)
    return out_path


def load_bfm_front(path: str | os.PathLike) -> MorphableModel:
    """Load the original's ``BFM_model_front.mat`` (11 keys, 1-based) as a MorphableModel."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: create it with 'faceset convert-bfm DIR' "
                                f"from BFM09 and Exp_Pca.bin")
    data = _load_mat(path, FRONT_MODEL_KEYS)

    def index(key: str) -> torch.Tensor:
        return torch.from_numpy(data[key].astype(np.int64) - 1)

    def floats(key: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(data[key], dtype=np.float32))

    front_ids = index("frontmask2_idx").reshape(-1)
    model = MorphableModel(
        name="BFM09",
        mean_shape=floats("meanshape").reshape(-1, 3),
        id_basis=floats("idBase"), exp_basis=floats("exBase"),
        mean_albedo=floats("meantex").reshape(-1, 3), tex_basis=floats("texBase"),
        triangles=index("tri"),
        landmark_ids=index("keypoints").reshape(-1),
        point_buf=index("point_buf"),
        front_vertex_ids=front_ids,
        front_triangles=front_ids[index("tri_mask2")],
        skin_mask=torch.from_numpy(data["skinmask"].reshape(-1) > 0),
    )
    try:
        return model.validate()
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def load_bfm(location: str | os.PathLike) -> MorphableModel:
    """BFM09 from a folder (converting on first use) or from a BFM_model_front.mat file."""
    location = Path(location)
    if location.is_dir():
        front = location / FRONT_MODEL_FILE
        if not front.is_file():
            convert_bfm09(location, front)
        location = front
    return load_bfm_front(location)

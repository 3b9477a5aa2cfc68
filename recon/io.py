"""File formats of the original's outputs (SPEC 8), written atomically.

- OBJ: ``v x y z r g b`` with colours quantised to uint8 and written as floats in [0, 1]
  (what trimesh writes for the original), optional ``vt`` lines, 1-based ``f`` lines.
- ``.mat``: float32 (1, K) arrays ``id, exp, tex, angle, gamma, trans`` and ``lm68``
  (1, 68, 2) in y-down pixels of the 224 crop.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import scipy.io

from .constants import COEFF_GROUPS as COEFF_KEYS


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp's 0600 would survive the rename
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the process umask."""
    mask = os.umask(0o022)  # the only way to read the umask is to set it; put it back
    os.umask(mask)
    return 0o666 & ~mask


def read_torch_file(path: str | os.PathLike, map_location="cpu"):
    """``torch.load`` of tensors only (``weights_only``), with one error naming the file.

    map_location: a device or device name, as ``torch.load`` takes it.
    """
    import torch
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a bad file
        raise ValueError(f"{path}: not a readable PyTorch file, corrupt or of another "
                         f"kind ({_torch_load_reason(err)})") from err


def _torch_load_reason(err: Exception) -> str:
    """The informative line of a ``torch.load`` error (its weights-only text is a page of
    advice about pickles around one line saying what was wrong)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        lines = [line for line in lines[1:] if not line.startswith(("Please file", "Check the"))]
        reason = lines[0] if lines else "not a tensor file"
    else:
        reason = lines[0] if lines else type(err).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically (see ``write_atomic``)."""
    write_atomic(path, text.encode("utf-8"))


def write_mat(path: str | os.PathLike, data: dict) -> None:
    """A MATLAB v5 ``.mat`` (scipy.io.savemat) written atomically."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, data)
    write_atomic(path, buffer.getvalue())


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """A ``.npy`` file written atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    write_atomic(path, buffer.getvalue())


def png_bytes(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) or (H, W, 3|4) image."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def figure_png(figure) -> bytes:
    """PNG bytes of a ``matplotlib.figure.Figure`` (built without pyplot, so no global
    backend or figure registry is touched and nothing needs closing)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """A PNG written atomically (see ``png_bytes``)."""
    write_atomic(path, png_bytes(image))


def quantise_colors(colors: np.ndarray) -> np.ndarray:
    """Float colours (N, 3), nominally [0, 1] -> uint8 after clipping (as the original)."""
    return np.clip(np.asarray(colors, dtype=np.float64) * 255.0, 0, 255).astype(np.uint8)


def obj_text(vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None = None,
             uvs: np.ndarray | None = None, header: str = "") -> str:
    """OBJ text. vertices (N,3) float; triangles (F,3) 0-based int; colors (N,3) float in
    [0,1] (clipped, quantised to uint8 like the original); uvs (N,2) per-vertex, optional."""
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    lines = [f"# {header}"] if header else []
    if colors is not None:
        rgb = quantise_colors(colors) / 255.0
        lines += [f"v {x:.6f} {y:.6f} {z:.6f} {r:.6f} {g:.6f} {b:.6f}"
                  for (x, y, z), (r, g, b) in zip(vertices, rgb)]
    else:
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    if uvs is not None:
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in np.asarray(uvs, dtype=np.float64)]
        lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in triangles + 1]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in triangles + 1]
    return "\n".join(lines) + "\n"


def write_obj(path: str | os.PathLike, vertices, triangles, colors=None, uvs=None,
              header: str = "") -> None:
    """Write an OBJ atomically (see ``obj_text``)."""
    write_atomic(path, obj_text(vertices, triangles, colors, uvs, header).encode())


def read_obj(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read vertices (N,3), colours (N,3) or None, uvs (N,2) or None, triangles (F,3)
    0-based from an OBJ with optional ``v x y z r g b`` colours and ``f a/t ...`` faces."""
    vertices, colors, uvs, faces = [], [], [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            if parts[0] == "v":
                values = [float(p) for p in parts[1:]]
                vertices.append(values[:3])
                if len(values) >= 6:
                    colors.append(values[3:6])
            elif parts[0] == "vt":
                uvs.append([float(p) for p in parts[1:3]])
            elif parts[0] == "f":
                corners = [int(p.split("/")[0]) - 1 for p in parts[1:]]
                faces += [[corners[0], corners[i], corners[i + 1]] for i in range(1, len(corners) - 1)]
        except ValueError as err:
            raise ValueError(f"{path}:{number}: cannot parse {line!r} ({err})") from err
    if not vertices:
        raise ValueError(f"{path}: no vertices")
    return {
        "vertices": np.array(vertices, dtype=np.float64),
        "colors": np.array(colors, dtype=np.float64) if len(colors) == len(vertices) else None,
        "uvs": np.array(uvs, dtype=np.float64) if uvs else None,
        "triangles": np.array(faces, dtype=np.int64).reshape(-1, 3),
    }


def write_coeffs_mat(path: str | os.PathLike, coeffs: dict[str, np.ndarray],
                     landmarks68: np.ndarray | None = None, extra: dict | None = None) -> None:
    """The original's per-image ``.mat``: float32 (1, K) coefficient groups + ``lm68``.

    coeffs: group name -> (K,) or (1, K) array; landmarks68: (68, 2) y-down crop pixels.
    """
    data = {k: np.asarray(coeffs[k], dtype=np.float32).reshape(1, -1) for k in COEFF_KEYS}
    if landmarks68 is not None:
        data["lm68"] = np.asarray(landmarks68, dtype=np.float32).reshape(1, 68, 2)
    data.update(extra or {})
    write_mat(path, data)


def read_coeffs_mat(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a per-image ``.mat``: group name -> (K,) float32, and ``lm68`` (68, 2) if present."""
    try:
        data = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises MatReadError, ValueError, TypeError... for bad files
        raise ValueError(f"{path}: not a readable .mat file ({err or type(err).__name__})") from None
    missing = [k for k in COEFF_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: missing coefficient group(s) {', '.join(missing)}")
    out = {k: data[k].astype(np.float32).reshape(-1) for k in COEFF_KEYS}
    if "lm68" in data:
        out["lm68"] = data["lm68"].astype(np.float32).reshape(68, 2)
    return out

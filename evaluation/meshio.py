"""Mesh and landmark files for evaluation: OBJ (with per-vertex colours, as Deep3DFaceRecon
writes them), PLY, MeshLab picked points (``.pp``) and 7-landmark ``.npy`` / ``.txt``.

Vertex order is always kept exactly as in the file (the NoW landmarks and the evaluation
index vertices). Every writer is atomic: a temporary file in the same folder, then
``os.replace``.
"""

from __future__ import annotations

import io
import os
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The NoW landmark order (ANCHORS §1): what row i of a 7-landmark array means.
NOW_LANDMARK_NAMES = ("right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer",
                      "nose_bottom", "right_mouth_corner", "left_mouth_corner")


@dataclass
class TriangleMesh:
    """vertices: (V, 3) float64 in the file's unit; faces: (F, 3) int64, 0-based;
    colors: (V, 3) float64 in [0, 1] or None."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        mask = os.umask(0o022)  # read the umask (only settable), so the file gets 0666 & ~umask
        os.umask(mask)
        os.fchmod(handle, 0o666 & ~mask)  # not mkstemp's 0600, which the rename would keep
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


# ---- OBJ --------------------------------------------------------------------------------

def _fast_table(lines: list[str]) -> np.ndarray | None:
    """The numbers after each line's 2-character keyword as a float table, through
    pandas' C parser; None when the lines do not all have the same count."""
    import pandas as pd

    text = "\n".join(line[2:] for line in lines)
    try:
        table = pd.read_csv(io.StringIO(text), sep=r"\s+", header=None, dtype=np.float64,
                            engine="c").to_numpy()
    except (ValueError, pd.errors.ParserError):
        return None
    if len(table) != len(lines) or np.isnan(table).any():
        return None
    return table


def _parse_rows(lines: list[str], path: Path, kind: str) -> np.ndarray:
    """Numbers after the keyword of each line; equal-length lines take a fast path."""
    table = _fast_table(lines)
    if table is not None and table.shape[1] >= 3:
        return table
    fields = [line.split()[1:] for line in lines]
    width = {len(row) for row in fields}
    if len(width) == 1:
        return np.array(fields, dtype=np.float64).reshape(len(fields), width.pop())
    width = min(width)
    if width < 3:
        raise ValueError(f"{path}: a '{kind}' line has fewer than 3 values")
    return np.array([row[:width] for row in fields], dtype=np.float64)


def _parse_faces(lines: list[str], vertex_count: int, path: Path) -> np.ndarray:
    if not any("/" in line for line in lines[:1000]):
        table = _fast_table(lines)
        if table is not None and table.shape[1] == 3 and (table > 0).all():
            return table.astype(np.int64) - 1  # plain 1-based triangles: the common case
    triangles: list[list[int]] = []
    for line in lines:
        ids = [int(token.split("/")[0]) for token in line.split()[1:]]
        if len(ids) < 3:
            raise ValueError(f"{path}: face line with fewer than 3 vertices: {line.strip()!r}")
        ids = [i - 1 if i > 0 else vertex_count + i for i in ids]  # OBJ is 1-based, <0 relative
        triangles.extend([ids[0], ids[k], ids[k + 1]] for k in range(1, len(ids) - 1))
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


def read_obj(path: str | os.PathLike) -> TriangleMesh:
    """Read an OBJ: ``v x y z [r g b]`` lines and ``f`` lines (polygons fan-triangulated,
    ``i/j/k`` forms accepted). Colours above 1 are taken as 0-255 and divided by 255."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read mesh ({err.strerror})") from err
    lines = text.splitlines()
    vertex_lines = [line for line in lines if line.startswith("v ")]
    face_lines = [line for line in lines if line.startswith("f ")]
    if not vertex_lines or not face_lines:
        raise ValueError(f"{path}: OBJ has no vertices or no faces")
    try:
        rows = _parse_rows(vertex_lines, path, "v")
        faces = _parse_faces(face_lines, len(rows), path)
    except ValueError as err:
        raise ValueError(f"{path}: malformed OBJ ({err})") from err
    colors = None
    if rows.shape[1] >= 6:
        colors = rows[:, 3:6]
        if colors.max(initial=0.0) > 1.0:
            colors = colors / 255.0
    return _validated(TriangleMesh(rows[:, :3].copy(), faces, colors), path)


def write_obj(path: str | os.PathLike, mesh: TriangleMesh) -> None:
    """Write ``v x y z [r g b]`` and 1-based ``f i j k`` lines atomically."""
    buffer = io.StringIO()
    if mesh.colors is not None:
        np.savetxt(buffer, np.hstack([mesh.vertices, mesh.colors]), fmt="v %.8f %.8f %.8f %.6f %.6f %.6f")
    else:
        np.savetxt(buffer, mesh.vertices, fmt="v %.8f %.8f %.8f")
    np.savetxt(buffer, np.asarray(mesh.faces) + 1, fmt="f %d %d %d")
    atomic_write_text(path, buffer.getvalue())


# ---- PLY --------------------------------------------------------------------------------

def read_ply(path: str | os.PathLike) -> TriangleMesh:
    """Read an ASCII or binary PLY (via trimesh, vertex order kept)."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mesh file not found")
    try:
        loaded = trimesh.load(str(path), process=False, force="mesh")
    except Exception as err:  # trimesh raises many types for malformed files
        raise ValueError(f"{path}: cannot parse PLY ({err})") from err
    colors = None
    visual = getattr(loaded, "visual", None)
    if visual is not None and getattr(visual, "kind", None) == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
    return _validated(TriangleMesh(np.asarray(loaded.vertices, dtype=np.float64),
                                   np.asarray(loaded.faces, dtype=np.int64), colors), path)


def write_ply(path: str | os.PathLike, mesh: TriangleMesh) -> None:
    """Write a binary PLY atomically (via trimesh)."""
    import trimesh

    colors = None if mesh.colors is None else np.round(np.clip(mesh.colors, 0, 1) * 255).astype(np.uint8)
    exported = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colors,
                               process=False).export(file_type="ply")
    atomic_write_bytes(path, exported)


def _validated(mesh: TriangleMesh, path: Path) -> TriangleMesh:
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise ValueError(f"{path}: mesh has no vertices or no faces")
    if mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.vertices):
        raise ValueError(f"{path}: faces index vertices outside 1..{len(mesh.vertices)}")
    if not np.all(np.isfinite(mesh.vertices)):
        raise ValueError(f"{path}: vertices contain NaN or infinite values")
    return mesh


def read_mesh(path: str | os.PathLike) -> TriangleMesh:
    """Read ``.obj`` or ``.ply`` by extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".obj":
        return read_obj(path)
    if suffix == ".ply":
        return read_ply(path)
    raise ValueError(f"{path}: unsupported mesh format {suffix!r} (use .obj or .ply)")


def write_mesh(path: str | os.PathLike, mesh: TriangleMesh) -> None:
    """Write ``.obj`` or ``.ply`` by extension, atomically."""
    suffix = Path(path).suffix.lower()
    if suffix == ".obj":
        write_obj(path, mesh)
    elif suffix == ".ply":
        write_ply(path, mesh)
    else:
        raise ValueError(f"{path}: unsupported mesh format {suffix!r} (use .obj or .ply)")


# ---- MeshLab picked points ----------------------------------------------------------------

def read_pp(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a MeshLab ``.pp`` file: the ``<point x= y= z= name=>`` elements in file order.

    Returns:
        points: (P, 3) float64 (values rounded through float32, as the NoW code reads them);
        names: the P point names ("" where absent).
    """
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read picked points ({err.strerror})") from err
    except ElementTree.ParseError as err:
        raise ValueError(f"{path}: not a MeshLab picked-points XML file ({err})") from err
    points, names = [], []
    for element in root.iter("point"):
        try:
            points.append([float(element.attrib[axis]) for axis in "xyz"])
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path}: a <point> lacks a numeric x, y or z") from err
        names.append(element.attrib.get("name", ""))
    if not points:
        raise ValueError(f"{path}: no <point> elements")
    return np.array(points, dtype=np.float32).astype(np.float64), names


def write_pp(path: str | os.PathLike, points: np.ndarray, names: list[str] | None = None,
             mesh_name: str = "") -> None:
    """Write a MeshLab ``.pp`` file atomically, in MeshLab's own layout (the points start
    on line 9, where the NoW reader expects the 7 landmarks)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    names = names or [str(i + 1) for i in range(len(points))]
    lines = ["<!DOCTYPE PickedPoints>", "<PickedPoints>", " <DocumentData>",
             '  <DateTime time="00:00:00" date="2000-01-01"/>', '  <User name="faceset"/>',
             f'  <DataFileName name="{mesh_name}"/>', '  <templateName name=""/>',
             " </DocumentData>"]
    lines += [f' <point x="{x!r}" y="{y!r}" z="{z!r}" active="1" name="{name}"/>'
              for (x, y, z), name in zip(points.tolist(), names)]
    lines.append("</PickedPoints>")
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---- landmark arrays ----------------------------------------------------------------------

def read_landmarks(path: str | os.PathLike, count: int = 7) -> np.ndarray:
    """Read ``count`` 3D landmarks from ``.npy`` ((count, 3) or (1, count, 3)), ``.txt``
    (one ``x y z`` row per landmark, read as float32 like the NoW code) or ``.pp``.

    Returns (count, 3) float64.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: landmark file not found")
    if suffix == ".npy":
        try:
            landmarks = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: not a numeric .npy array ({err})") from err
    elif suffix == ".txt":
        try:
            landmarks = np.loadtxt(path, dtype=np.float32, ndmin=2)
        except ValueError as err:
            raise ValueError(f"{path}: landmark text must be rows of 'x y z' ({err})") from err
    elif suffix == ".pp":
        landmarks = read_pp(path)[0][:count]
    else:
        raise ValueError(f"{path}: unsupported landmark format {suffix!r} (.npy, .txt, .pp)")
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim == 3 and landmarks.shape[0] == 1:
        landmarks = landmarks[0]
    if landmarks.shape != (count, 3):
        raise ValueError(f"{path}: expected {count} landmarks of shape ({count}, 3) or "
                         f"(1, {count}, 3), got {landmarks.shape}")
    if not np.all(np.isfinite(landmarks)):
        raise ValueError(f"{path}: landmarks contain NaN or infinite values")
    return landmarks


def write_landmarks(path: str | os.PathLike, landmarks: np.ndarray) -> None:
    """Write (P, 3) landmarks as ``.npy`` or ``.txt`` (by extension), atomically."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, landmarks)
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix == ".txt":
        buffer = io.StringIO()
        np.savetxt(buffer, landmarks, fmt="%.8f")
        atomic_write_text(path, buffer.getvalue())
    else:
        raise ValueError(f"{path}: unsupported landmark format {suffix!r} (.npy or .txt)")

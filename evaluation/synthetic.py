"""Synthetic face-like meshes with known geometry, for tests and benchmarks.

A height field over a square in millimetres: an ellipsoidal cap (the face), a nose ridge
and optional smooth ripples (so a surface has no sliding symmetry). Landmarks are the
mesh vertices nearest to fixed (x, y) positions in NoW order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.meshio import TriangleMesh, write_landmarks, write_mesh, write_pp

# (x, y) in mm of the 7 NoW landmarks on the synthetic face (y up, the face looks at +z).
# The subject's right is the viewer's left, hence negative x for the right eye.
LANDMARK_XY = np.array([[-45.0, 25.0], [-15.0, 25.0], [15.0, 25.0], [45.0, 25.0],
                        [0.0, -28.0], [-25.0, -50.0], [25.0, -50.0]])


def grid_faces(rows: int, cols: int) -> np.ndarray:
    """(2 (rows-1)(cols-1), 3) int64 triangles of a row-major vertex grid, facing +z."""
    ids = np.arange(rows * cols).reshape(rows, cols)
    a, b = ids[:-1, :-1].ravel(), ids[:-1, 1:].ravel()
    c, d = ids[1:, :-1].ravel(), ids[1:, 1:].ravel()
    return np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def face_height(x: np.ndarray, y: np.ndarray, ripple_mm: float = 0.0,
                phase: float = 0.0) -> np.ndarray:
    """Height (z, mm) of the synthetic face at (x, y) mm."""
    cap = 60.0 * np.sqrt(np.clip(1.0 - (x / 130.0) ** 2 - (y / 160.0) ** 2, 0.0, None))
    nose = 25.0 * np.exp(-((x / 12.0) ** 2 + ((y + 5.0) / 25.0) ** 2))
    brows = 4.0 * np.exp(-(((np.abs(x) - 30.0) / 15.0) ** 2 + ((y - 35.0) / 6.0) ** 2))
    ripple = ripple_mm * np.sin(x / 7.0 + phase) * np.cos(y / 9.0 - phase)
    return cap + nose + brows + ripple


def face_mesh(resolution: int, half_width_mm: float = 100.0, ripple_mm: float = 0.0,
              phase: float = 0.0) -> TriangleMesh:
    """A resolution x resolution grid over [-w, w]^2 mm lifted by ``face_height``."""
    axis = np.linspace(-half_width_mm, half_width_mm, resolution)
    x, y = np.meshgrid(axis, axis)
    z = face_height(x, y, ripple_mm, phase)
    vertices = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    return TriangleMesh(vertices, grid_faces(resolution, resolution))


def face_landmarks(mesh: TriangleMesh) -> np.ndarray:
    """(7, 3) NoW-order landmarks: the vertices nearest the fixed (x, y) positions."""
    picks = [np.argmin(np.sum((mesh.vertices[:, :2] - xy) ** 2, axis=1)) for xy in LANDMARK_XY]
    return mesh.vertices[picks].copy()


def random_similarity(rng: np.random.Generator, scale: float = 1.0, max_angle: float = np.pi):
    """(scale, (3,3) rotation, (3,) translation) with a uniformly random axis."""
    from evaluation.align import Similarity, rodrigues

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Similarity(scale, rodrigues(axis * rng.uniform(-max_angle, max_angle)),
                      rng.normal(scale=50.0, size=3))


def write_now_dataset(root: Path, subjects: dict[str, TriangleMesh],
                      images: list[tuple[str, str, str]]) -> Path:
    """Write a NoW-layout folder: scans, .pp landmarks and the image list
    (``images``: (subject, challenge, filename)). Returns the list's path."""
    root = Path(root)
    for subject, scan in subjects.items():
        write_mesh(root / "scans" / subject / f"{subject}_scan.obj", scan)
        write_pp(root / "scans_lmks_onlypp" / subject / f"{subject}_picked_points.pp",
                 face_landmarks(scan), mesh_name=f"{subject}_scan.obj")
    listing = root / "imagepathsvalidation.txt"
    listing.write_text("".join(f"{s}/{c}/{f}\n" for s, c, f in images))
    return listing


def write_now_prediction(predictions: Path, subject: str, challenge: str, stem: str,
                         mesh: TriangleMesh, landmarks: np.ndarray, mesh_suffix: str = ".obj",
                         landmark_suffix: str = ".npy") -> None:
    """Write one prediction in the NoW layout."""
    folder = Path(predictions) / subject / challenge
    write_mesh(folder / f"{stem}{mesh_suffix}", mesh)
    write_landmarks(folder / f"{stem}{landmark_suffix}", landmarks)


def write_micc_case(gt_dir: Path, predictions: Path, subject: str, gt: TriangleMesh,
                    transform, name: str = "a") -> None:
    """Write one subject in the MICC layout (``evaluation.micc``): its ground truth with its 7
    landmarks, and one prediction ``name``: the GT moved by ``transform`` (a ``Similarity``),
    with its landmarks moved alike."""
    write_mesh(Path(gt_dir) / f"{subject}.obj", gt)
    write_landmarks(Path(gt_dir) / f"{subject}_lmk7.npy", face_landmarks(gt))
    folder = Path(predictions) / subject
    write_mesh(folder / f"{name}.obj", TriangleMesh(transform.apply(gt.vertices), gt.faces))
    write_landmarks(folder / f"{name}.npy", transform.apply(face_landmarks(gt)))

"""MICC Florence and FaceWarehouse errors, the Deep3DFace protocol (ANCHORS §3).

Per predicted mesh: the ground-truth vertices within 95 mm of the GT nose tip (MICC: minus
the forehead) are the targets; rigid ICP with one isotropic scale moves the prediction
onto them (initialised from 7 landmarks when both sides have them, else from the identity,
so predictions must then already be roughly in the GT frame and unit); the error of a GT
vertex is its point-to-plane distance to the aligned prediction (the tangent plane at its
nearest predicted vertex); a mesh scores the RMSE over its GT vertices; a run reports mean
and std (ddof=0) over meshes.

Layout of ``--gt-dir`` (ours; neither dataset ships one for this protocol)::

    <gt-dir>/<subject>.obj|.ply          the subject's ground truth, mm (x right, y up,
                                         z towards the viewer, as MICC's scans are)
    <gt-dir>/<subject>_nose.txt          optional: "x y z" of the nose tip, mm
    <gt-dir>/<subject>_lmk7.npy|.txt|.pp optional: 7 landmarks in NoW order (right-eye
                                         outer, right-eye inner, left-eye inner, left-eye
                                         outer, nose bottom, right / left mouth corner)

Without ``_nose.txt`` the nose tip is the GT vertex farthest along +z.

Layout of ``--predictions``::

    <predictions>/<subject>/<name>.obj|.ply   predicted meshes of the subject (e.g. one
                                              per video frame), any unit when landmarks
                                              are given
    <predictions>/<subject>/<name>.npy|.txt   optional: its 7 landmarks, NoW order

or ``--pairs FILE``: one ``prediction,gt`` pair per line (paths relative to
``--predictions`` and ``--gt-dir``, or absolute; the GT's stem names the subject).

What is ours, not published: the forehead cut (GT vertices more than
``forehead_cut_mm`` above the nose tip along +y are dropped, 65 mm by default, about the
brow line) and, for FaceWarehouse, evaluating the 95 mm ball instead of MoFA's
re-distributed BFM region (whose file is not public).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from evaluation.align import IcpConfig, Similarity, icp_similarity, procrustes
from evaluation.distance import point_to_plane_distance
from evaluation.meshio import TriangleMesh, read_landmarks, read_mesh
from evaluation.records import ScoreRecord, score_item

MESH_SUFFIXES = (".obj", ".ply")
LANDMARK_SUFFIXES = (".npy", ".txt", ".pp")


@dataclass
class RegionConfig:
    """The GT region scored: a ball of ``radius_mm`` around the nose tip, minus the
    vertices more than ``forehead_cut_mm`` above it along ``up`` (None: no cut).
    ``gt_scale`` converts the GT file's unit to mm."""

    radius_mm: float = 95.0
    forehead_cut_mm: float | None = 65.0
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    gt_scale: float = 1.0


MICC_REGION = RegionConfig()
FACEWAREHOUSE_REGION = RegionConfig(forehead_cut_mm=None)


def region_points(vertices: np.ndarray, nose_tip: np.ndarray, config: RegionConfig) -> np.ndarray:
    """GT vertices scored: (V, 3) mm, nose tip (3,) mm -> (K, 3) float64 mm."""
    offset = np.asarray(vertices, dtype=np.float64) - np.asarray(nose_tip, dtype=np.float64)
    keep = np.linalg.norm(offset, axis=1) <= config.radius_mm
    if config.forehead_cut_mm is not None:
        up = np.asarray(config.up, dtype=np.float64)
        keep &= offset @ (up / np.linalg.norm(up)) <= config.forehead_cut_mm
    if not keep.any():
        raise ValueError("no ground-truth vertex lies in the scored region around the nose tip")
    return np.asarray(vertices, dtype=np.float64)[keep]


@dataclass
class MeshScore:
    """errors: (K,) point-to-plane distances, mm, one per GT region vertex; rmse, mm;
    transform: the similarity applied to the prediction; iterations of ICP."""

    errors: np.ndarray
    rmse: float
    transform: Similarity
    iterations: int


def score_mesh(gt_vertices: np.ndarray, nose_tip: np.ndarray, prediction: TriangleMesh,
               region: RegionConfig, gt_landmarks: np.ndarray | None = None,
               predicted_landmarks: np.ndarray | None = None,
               icp: IcpConfig | None = None) -> MeshScore:
    """Score one prediction against one GT mesh (all GT arrays already in mm).

    Args:
        gt_vertices: (V, 3) mm; nose_tip: (3,) mm; prediction: any unit.
        gt_landmarks / predicted_landmarks: optional (7, 3) each, NoW order.
    Returns:
        MeshScore.
    """
    targets = region_points(gt_vertices, nose_tip, region)
    init = None
    if gt_landmarks is not None and predicted_landmarks is not None:
        init, _ = procrustes(gt_landmarks, predicted_landmarks, scaling=True, reflection=False)
    fit = icp_similarity(prediction.vertices, prediction.faces, targets, init, icp)
    errors, _ = point_to_plane_distance(targets, fit.transform.apply(prediction.vertices),
                                        prediction.faces)
    return MeshScore(errors, float(np.sqrt(np.mean(errors ** 2))), fit.transform, fit.iterations)


# ---- datasets -------------------------------------------------------------------------------

@dataclass
class GroundTruth:
    """One subject's GT in mm: vertices (V, 3), nose tip (3,), landmarks (7, 3) or None."""

    vertices: np.ndarray
    nose_tip: np.ndarray
    landmarks: np.ndarray | None


def _sibling(base: Path, suffixes: Iterable[str]) -> Path | None:
    return next((base.with_name(base.name + s) for s in suffixes
                 if base.with_name(base.name + s).is_file()), None)


def load_ground_truth(mesh_path: Path, region: RegionConfig) -> GroundTruth:
    """Load ``<subject>.obj|.ply`` with its optional ``_nose.txt`` and ``_lmk7`` files."""
    mesh_path = Path(mesh_path)
    vertices = read_mesh(mesh_path).vertices * region.gt_scale
    base = mesh_path.with_suffix("")
    nose_file = base.with_name(base.name + "_nose.txt")
    if nose_file.is_file():
        try:
            nose = np.loadtxt(nose_file, dtype=np.float64).ravel() * region.gt_scale
        except ValueError as err:
            raise ValueError(f"{nose_file}: expected 'x y z' ({err})") from err
        if nose.shape != (3,):
            raise ValueError(f"{nose_file}: expected 3 numbers, got {nose.size}")
    else:
        nose = vertices[np.argmax(vertices[:, 2])]  # the scans face +z
    landmark_file = _sibling(base.with_name(base.name + "_lmk7"), LANDMARK_SUFFIXES)
    landmarks = (read_landmarks(landmark_file) * region.gt_scale
                 if landmark_file is not None else None)
    return GroundTruth(vertices, nose, landmarks)


@dataclass(frozen=True)
class Pair:
    """A prediction to score against the GT of ``subject``."""

    subject: str
    prediction: Path
    gt: Path


def discover_pairs(gt_dir: Path, predictions: Path) -> list[Pair]:
    """Pairs from the folder layout: every mesh in ``<predictions>/<subject>/`` against
    ``<gt-dir>/<subject>.obj|.ply``; a subject folder without GT is an error."""
    gt_dir, predictions = Path(gt_dir), Path(predictions)
    for folder, kind in ((gt_dir, "ground-truth"), (predictions, "predictions")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: {kind} folder not found")
    pairs = []
    for subject_dir in sorted(p for p in predictions.iterdir() if p.is_dir()):
        gt = _sibling(gt_dir / subject_dir.name, MESH_SUFFIXES)
        meshes = sorted(p for p in subject_dir.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
        pairs += [Pair(subject_dir.name, mesh, gt or gt_dir / f"{subject_dir.name}.obj")
                  for mesh in meshes]
    return pairs


def read_pairs(path: Path, gt_dir: Path, predictions: Path) -> list[Pair]:
    """Pairs from a file of ``prediction,gt`` lines (``#`` comments and blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pairs file not found")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.replace("\t", ",").split(",")]
        if len(fields) != 2 or not all(fields):
            raise ValueError(f"{path}:{number}: expected 'prediction,gt', got {line!r}")
        prediction, gt = Path(predictions) / fields[0], Path(gt_dir) / fields[1]
        pairs.append(Pair(gt.stem, prediction, gt))
    return pairs


@dataclass
class MeshRecord(ScoreRecord):
    """One row of the per-mesh table (``ScoreRecord``): rmse, mean and median of the GT
    vertices' errors (mm) and the fitted ICP scale; errors: the (V,) errors when ok."""

    subject: str
    prediction: str
    rmse: float = float("nan")
    mean: float = float("nan")
    median: float = float("nan")
    scale: float = float("nan")
    errors: np.ndarray | None = None

    COLUMNS = ("subject", "prediction", "status", "vertices", "rmse", "mean", "median", "scale",
               "missing", "message", "seconds")


def evaluate_pair(pair: Pair, region: RegionConfig, icp: IcpConfig | None = None,
                  cache: dict | None = None) -> MeshRecord:
    """Score one pair; missing or unreadable files give a record, never an exception."""
    cache = {} if cache is None else cache

    def score() -> dict:
        if pair.gt not in cache:
            cache.clear()
            cache[pair.gt] = load_ground_truth(pair.gt, region)
        gt = cache[pair.gt]
        prediction = read_mesh(pair.prediction)
        landmark_file = _sibling(pair.prediction.with_suffix(""), (".npy", ".txt"))
        landmarks = read_landmarks(landmark_file) if landmark_file is not None else None
        result = score_mesh(gt.vertices, gt.nose_tip, prediction, region, gt.landmarks,
                            landmarks, icp)
        return {"vertices": int(len(result.errors)), "errors": result.errors, "rmse": result.rmse,
                "scale": result.transform.scale, "mean": float(np.mean(result.errors)),
                "median": float(np.median(result.errors))}

    return score_item(MeshRecord(subject=pair.subject, prediction=str(pair.prediction)),
                      {"prediction": pair.prediction, "gt": pair.gt}, score)


def evaluate_pairs(pairs: list[Pair], region: RegionConfig, icp: IcpConfig | None = None,
                   progress: bool = True, label: str = "MICC") -> list[MeshRecord]:
    """Score every pair with a tqdm bar (the GT is loaded once per run of its pairs)."""
    from tqdm import tqdm

    cache: dict = {}
    return [evaluate_pair(pair, region, icp, cache)
            for pair in tqdm(pairs, desc=label, unit="mesh", disable=not progress)]


def run_statistics(records: list[MeshRecord]) -> dict[str, float]:
    """Mean and std (ddof=0) of the per-mesh RMSE over scored meshes, plus counts."""
    rmse = np.array([r.rmse for r in records if r.status == "ok"])
    return {"mean": float(rmse.mean()) if rmse.size else float("nan"),
            "std": float(rmse.std()) if rmse.size else float("nan"),
            "meshes": int(rmse.size), "missing": int(sum(r.status != "ok" for r in records))}

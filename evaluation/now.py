"""The NoW benchmark protocol (soubhiksanyal/now_evaluation), reimplemented on numpy/scipy.

Dataset layout (the official one, unchanged)::

    <dataset>/imagepathsvalidation.txt      lines "<subject>/<challenge>/<image>.jpg"
    <dataset>/imagepathstest.txt            (the test list, when you have it)
    <dataset>/scans/<subject>/*.obj         the 3dMD scan of the subject, mm
    <dataset>/scans_lmks_onlypp/<subject>/*.pp   its 7 MeshLab picked points

Predictions::

    <predictions>/<subject>/<challenge>/<image stem>.obj|.ply   any unit (scale is fitted)
    <predictions>/<subject>/<challenge>/<image stem>.npy|.txt   7 landmarks, (7,3) or (1,7,3)

Landmark order: right-eye outer, right-eye inner, left-eye inner, left-eye outer, nose
bottom (subnasale), right mouth corner, left mouth corner.

Per image (ANCHORS §1): crop the scan to a ball around the nose; a similarity (scale, and a
reflection when it fits better, as MATLAB's procrustes 'best') from the 7 predicted to the
7 scan landmarks; refine scale, rotation and translation of the prediction minimising the
sum of squared unsigned distances from the cropped scan vertices to the predicted surface;
the error of a vertex is its distance to the nearest point on the predicted triangles.
Statistics pool all vertices of all images (np.median / np.mean / np.std, ddof=0).

Metrical variant: the prediction is scaled by its unit factor (mm 1, cm 10, m 1000) in place
of the Procrustes scale, with the Procrustes rotation and the Procrustes translation (which
the official code computes with the estimated scale; kept for equal numbers), and only
rotation and translation are refined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from evaluation.align import RefineConfig, Similarity, procrustes, refine_to_surface
from evaluation.distance import TriangleMeshIndex
from evaluation.meshio import TriangleMesh, read_landmarks, read_mesh, read_pp
from evaluation.records import ScoreRecord, score_item

CHALLENGES = ("multiview_neutral", "multiview_expressions", "multiview_occlusions", "selfie")
# The official crop: centre 0.3 of the way from the nose bottom to the inner-eye midpoint,
# radius 1.4 x the mean of the outer-eye distance and the nose length (1.2 is FG2018's).
CROP_CENTRE_FRACTION = 0.3
CROP_RADIUS_FACTOR = 1.4
UNIT_FACTORS = {"mm": 1.0, "cm": 10.0, "m": 1000.0}  # to the scans' millimetres


def crop_sphere(scan_landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (3,) and radius (float) of the NoW crop, from the scan's (7, 3) landmarks, mm."""
    landmarks = np.asarray(scan_landmarks, dtype=np.float64)
    if landmarks.shape != (7, 3):
        raise ValueError(f"NoW crop needs 7 scan landmarks of shape (7, 3), got {landmarks.shape}")
    nose_bottom = landmarks[4]
    nose_bridge = 0.5 * (landmarks[1] + landmarks[2])  # between the inner eye corners
    centre = nose_bottom + CROP_CENTRE_FRACTION * (nose_bridge - nose_bottom)
    outer_eye = np.linalg.norm(landmarks[0] - landmarks[3])
    nose_length = np.linalg.norm(nose_bridge - nose_bottom)
    return centre, float(CROP_RADIUS_FACTOR * (outer_eye + nose_length) / 2.0)


def keep_vertices(mesh: TriangleMesh, keep: np.ndarray) -> TriangleMesh:
    """Sub-mesh of the vertices ``keep`` ((K,) int ids, kept in ascending order) and the
    faces whose three vertices all survive (as psbody's ``keep_vertices``)."""
    keep = np.unique(np.asarray(keep, dtype=np.int64))
    new_id = np.full(len(mesh.vertices), -1, dtype=np.int64)
    new_id[keep] = np.arange(len(keep))
    faces = new_id[mesh.faces]
    faces = faces[(faces >= 0).all(axis=1)]
    colors = None if mesh.colors is None else mesh.colors[keep]
    return TriangleMesh(mesh.vertices[keep], faces, colors)


def crop_scan(scan: TriangleMesh, scan_landmarks: np.ndarray) -> TriangleMesh:
    """The scan restricted to the NoW ball (distance <= radius), mm."""
    centre, radius = crop_sphere(scan_landmarks)
    inside = np.flatnonzero(np.linalg.norm(scan.vertices - centre, axis=1) <= radius)
    if len(inside) == 0:
        raise ValueError("NoW crop keeps no scan vertex: the scan landmarks do not lie on the scan")
    return keep_vertices(scan, inside)


@dataclass
class NowImageResult:
    """distances: (N,) float64 mm, one per cropped scan vertex; cropped_scan: the scan in
    the ball (mm); aligned_vertices: (V, 3) the prediction after both alignment steps, mm;
    landmark_transform / refinement: the two similarities; evaluations: distance queries."""

    distances: np.ndarray
    cropped_scan: TriangleMesh
    aligned_vertices: np.ndarray
    landmark_transform: Similarity
    refinement: Similarity
    evaluations: int


def evaluate_now_image(scan: TriangleMesh, scan_landmarks: np.ndarray, prediction: TriangleMesh,
                       predicted_landmarks: np.ndarray, metrical: bool = False,
                       unit: str = "m", backend: str = "auto") -> NowImageResult:
    """Score one predicted mesh against one scan with the NoW protocol.

    Args:
        scan: the subject's scan, mm. scan_landmarks: (7, 3) mm, NoW order.
        prediction: the predicted mesh, any unit. predicted_landmarks: (7, 3), its unit.
        metrical: the metrical variant (fixed unit scale, rigid refinement).
        unit: the prediction's unit for the metrical variant: "mm", "cm" or "m".
        backend: distance backend ("auto", "open3d", "scipy").
    Returns:
        NowImageResult (distances in mm).
    """
    cropped = crop_scan(scan, scan_landmarks)
    landmark_fit, _ = procrustes(scan_landmarks, predicted_landmarks, scaling=True,
                                 reflection="best")
    if metrical:
        if unit not in UNIT_FACTORS:
            raise ValueError(f"unknown prediction unit {unit!r}; choose one of {list(UNIT_FACTORS)}")
        landmark_fit = Similarity(UNIT_FACTORS[unit], landmark_fit.rotation,
                                  landmark_fit.translation)
    aligned = landmark_fit.apply(prediction.vertices)
    index = TriangleMeshIndex(aligned, prediction.faces, backend)
    refined = refine_to_surface(cropped.vertices, index, RefineConfig(fit_scale=not metrical))
    final = refined.transform
    return NowImageResult(refined.distances, cropped, final.apply(aligned), landmark_fit, final,
                          refined.evaluations)


def pooled_statistics(distances: Iterable[np.ndarray]) -> dict[str, float]:
    """median, mean, std (ddof=0) over all vertices of all images, as the NoW code pools;
    NaN for an empty list."""
    arrays = [np.asarray(d, dtype=np.float64).ravel() for d in distances]
    pooled = np.concatenate(arrays) if arrays else np.zeros(0)
    if pooled.size == 0:
        return {"median": float("nan"), "mean": float("nan"), "std": float("nan")}
    return {"median": float(np.median(pooled)), "mean": float(np.mean(pooled)),
            "std": float(np.std(pooled))}


# ---- the dataset --------------------------------------------------------------------------

@dataclass(frozen=True)
class NowImage:
    """One line of the image list: ``<subject>/<challenge>/<filename>``."""

    subject: str
    challenge: str
    filename: str

    @property
    def stem(self) -> str:
        return Path(self.filename).stem  # "<stem>.jpg" in the official lists


def read_image_list(path: str | Path) -> list[NowImage]:
    """Parse a NoW image list (``imagepathsvalidation.txt`` / ``imagepathstest.txt``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NoW image list not found")
    images = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.strip().split("/")
        if not line.strip():
            continue
        if len(parts) < 3:
            raise ValueError(f"{path}:{number}: expected '<subject>/<challenge>/<image>', "
                             f"got {line.strip()!r}")
        images.append(NowImage(parts[-3], parts[-2], parts[-1]))
    return images


@dataclass
class NowDataset:
    """The official NoW folder; ``imagepaths`` defaults to the validation list."""

    root: Path
    imagepaths: Path | None = None
    scans_dir: Path | None = None
    landmarks_dir: Path | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.imagepaths = Path(self.imagepaths or self.root / "imagepathsvalidation.txt")
        self.scans_dir = Path(self.scans_dir or self.root / "scans")
        self.landmarks_dir = Path(self.landmarks_dir or self.root / "scans_lmks_onlypp")

    def images(self, challenge: str = "") -> list[NowImage]:
        """The listed images, only those of ``challenge`` when given."""
        if challenge and challenge not in CHALLENGES:
            raise ValueError(f"unknown NoW challenge {challenge!r}; choose one of {CHALLENGES}")
        return [image for image in read_image_list(self.imagepaths)
                if not challenge or image.challenge == challenge]

    def scan(self, subject: str) -> tuple[TriangleMesh, np.ndarray]:
        """The subject's scan (mm) and its (7, 3) landmarks, loaded once per subject."""
        if subject not in self._cache:
            self._cache.clear()  # one subject at a time: the image lists are grouped
            landmark_file = _first(self.landmarks_dir / subject, "*.pp")
            landmarks = read_pp(landmark_file)[0]
            if len(landmarks) < 7:
                raise ValueError(f"{landmark_file}: {len(landmarks)} picked points, the NoW "
                                 "protocol needs 7")
            self._cache[subject] = (read_mesh(_first(self.scans_dir / subject, "*.obj")),
                                    landmarks[:7])
        return self._cache[subject]


def _first(folder: Path, pattern: str) -> Path:
    matches = sorted(folder.glob(pattern))
    if not matches:
        raise FileNotFoundError(f"{folder}: no {pattern} file")
    return matches[0]


def find_prediction(predictions: Path, image: NowImage) -> tuple[Path | None, Path | None]:
    """(mesh path, landmark path) of an image's prediction; None where absent. OBJ before
    PLY and NPY before TXT, as the official code looks them up."""
    folder = Path(predictions) / image.subject / image.challenge
    mesh = next((p for p in (folder / f"{image.stem}.obj", folder / f"{image.stem}.ply")
                 if p.is_file()), None)
    landmarks = next((p for p in (folder / f"{image.stem}.npy", folder / f"{image.stem}.txt")
                      if p.is_file()), None)
    return mesh, landmarks


@dataclass
class NowRecord(ScoreRecord):
    """One row of the per-image table (``ScoreRecord``): median, mean and std of the image's
    scan-vertex distances (mm); distances and result are None unless ok."""

    subject: str
    challenge: str
    image: str
    median: float = float("nan")
    mean: float = float("nan")
    std: float = float("nan")
    distances: np.ndarray | None = None
    result: NowImageResult | None = None

    COLUMNS = ("subject", "challenge", "image", "status", "vertices", "median", "mean", "std",
               "missing", "message", "seconds")


def evaluate_now_record(dataset: NowDataset, predictions: Path, image: NowImage,
                        metrical: bool = False, unit: str = "m",
                        backend: str = "auto") -> NowRecord:
    """Evaluate one listed image; a missing or unreadable file gives a record, never an
    exception (the run goes on and counts it)."""
    mesh_path, landmark_path = find_prediction(predictions, image)

    def score() -> dict:
        scan, scan_landmarks = dataset.scan(image.subject)
        result = evaluate_now_image(scan, scan_landmarks, read_mesh(mesh_path),
                                    read_landmarks(landmark_path), metrical, unit, backend)
        stats = pooled_statistics([result.distances])
        return {"vertices": int(len(result.distances)), "median": stats["median"],
                "mean": stats["mean"], "std": stats["std"], "distances": result.distances,
                "result": result}

    return score_item(NowRecord(subject=image.subject, challenge=image.challenge, image=image.filename),
                      {"mesh": mesh_path, "landmarks": landmark_path}, score)


def evaluate_now(dataset: NowDataset, predictions: str | Path, challenge: str = "",
                 metrical: bool = False, unit: str = "m", backend: str = "auto",
                 progress: bool = True,
                 on_record: Callable[[NowRecord], None] | None = None) -> list[NowRecord]:
    """Evaluate every listed image (of one challenge when given), with a tqdm bar.

    ``on_record`` sees each record as it completes (e.g. to draw a heat map), after
    which its mesh data are dropped to keep memory flat.
    """
    from tqdm import tqdm

    predictions = Path(predictions)
    if not predictions.is_dir():
        raise FileNotFoundError(f"{predictions}: predictions folder not found")
    records = []
    for image in tqdm(dataset.images(challenge), desc="NoW", unit="image", disable=not progress):
        record = evaluate_now_record(dataset, predictions, image, metrical, unit, backend)
        if on_record is not None:
            on_record(record)
        record.result = None
        records.append(record)
    return records


def challenge_statistics(records: list[NowRecord]) -> dict[str, dict[str, float]]:
    """Pooled statistics per challenge present, plus "all"; each with the image count
    and the missing/failed count."""
    groups = sorted({r.challenge for r in records}, key=lambda c: (c not in CHALLENGES, c))
    table = {}
    for name in [*groups, "all"]:
        chosen = [r for r in records if name == "all" or r.challenge == name]
        stats = pooled_statistics([r.distances for r in chosen if r.distances is not None])
        stats["images"] = sum(r.status == "ok" for r in chosen)
        stats["missing"] = sum(r.status != "ok" for r in chosen)
        table[name] = stats
    return table


def prediction_vertex_errors(scan: TriangleMesh, scan_landmarks: np.ndarray,
                             prediction: TriangleMesh, predicted_landmarks: np.ndarray,
                             backend: str = "auto") -> np.ndarray:
    """Per-vertex error of a prediction, for showing on the predicted mesh.

    The NoW alignment of ``evaluate_now_image`` (landmark Procrustes, then the refinement
    to the cropped scan) brings the prediction into the scan's frame; a predicted vertex's
    error is then its distance to the cropped scan's surface, and NaN for vertices outside
    the NoW crop ball (the protocol scores nothing there).

    Args:
        scan: the subject's scan, mm; scan_landmarks: (7, 3) mm, NoW order.
        prediction: any unit; predicted_landmarks: (7, 3), its unit.
    Returns:
        (V,) float64 mm, one per predicted vertex.
    """
    from evaluation.distance import point_to_mesh_distance

    result = evaluate_now_image(scan, scan_landmarks, prediction, predicted_landmarks,
                                backend=backend)
    centre, radius = crop_sphere(scan_landmarks)
    aligned = result.aligned_vertices
    errors = point_to_mesh_distance(aligned, result.cropped_scan.vertices,
                                    result.cropped_scan.faces, backend)
    errors[np.linalg.norm(aligned - centre, axis=1) > radius] = np.nan
    return errors

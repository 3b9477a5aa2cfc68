"""Face detection and 68 landmarks with dlib (HOG detector + shape predictor), offline.

The original's 5 points came from the authors' private detector (SPEC 10, TF issue #85);
we derive them from dlib's 68 iBUG landmarks exactly as the original derives 5 points from
68 (eye centres = means of 37/40 and 43/46, nose 31, mouth corners 49 and 55, 1-based).
On the shipped examples dlib's 5 points lie within a few pixels of the shipped ones.

The shape predictor weights come with the ``face-recognition-models`` package; we locate
its folder with ``importlib.util.find_spec`` (importing the package pulls in setuptools'
``pkg_resources``). All coordinates are y-down pixels, centres at integers (``recon.types``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from recon.standard_landmarks import five_point_template

SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

# Box derived from 5 points, calibrated on the 11 shipped examples against dlib HOG boxes
# (mean over the photos; spread 0.15 in side, 0.1 in shift): the box side is 2.27 times the
# eye-centre-to-mouth-centre distance, and its centre sits 0.03 of that distance from the
# eye/mouth midpoint towards the eyes.
BOX_SIDE_PER_EYE_MOUTH = 2.27
BOX_SHIFT_PER_EYE_MOUTH = -0.03


@dataclass
class DetectorConfig:
    """score_threshold: keep HOG detections scoring above this (dlib's own default is 0;
    noise images reach about -0.9, faces in the examples 1.5 to 2.6);
    upsample: times to double the image before detecting, or None for automatic (once when
    the shorter side is below ``auto_upsample_below`` pixels, so faces down to ~40 px are found);
    predictor_path: the 68-point model file, or None for the face-recognition-models one."""

    score_threshold: float = 0.0
    upsample: Optional[int] = None
    auto_upsample_below: int = 400
    predictor_path: Optional[str] = None


@dataclass
class Detection:
    """One face. box: (left, top, right, bottom) float pixels, y-down (dlib's inclusive
    corners); score: the detector's score (NaN for a box that was given, or a detector that
    reports none); landmarks68: (68, 2) float64 y-down pixels, iBUG 300-W order;
    landmarks_dense: (478, 2) float64 y-down pixels in mediapipe's face-mesh order, or None
    for detectors without dense points."""

    box: tuple[float, float, float, float]
    score: float
    landmarks68: np.ndarray = field(repr=False)
    landmarks_dense: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def area(self) -> float:
        left, top, right, bottom = self.box
        return (right - left + 1) * (bottom - top + 1)

    @property
    def five_points(self) -> np.ndarray:
        """(5, 2) y-down alignment points (eyeL, eyeR, nose, mouthL, mouthR)."""
        return five_points_from_68(self.landmarks68)


def five_points_from_68(landmarks68: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG landmarks -> (5, 2) float64 alignment points, as the original derives them."""
    landmarks68 = np.asarray(landmarks68, dtype=np.float64)
    if landmarks68.shape != (68, 2):
        raise ValueError(f"landmarks68 must be (68, 2), got {landmarks68.shape}")
    return five_point_template(landmarks68)


def box_from_five_points(points: np.ndarray) -> tuple[float, float, float, float]:
    """A dlib-style face box (left, top, right, bottom), y-down pixels, from 5 points.

    Args:
        points: (5, 2) y-down pixels (eyeL, eyeR, nose, mouthL, mouthR).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"five points must be a finite (5, 2) array, got {points.shape}")
    eyes = points[:2].mean(0)
    mouth = points[3:].mean(0)
    axis = mouth - eyes
    length = float(np.hypot(*axis))
    if length <= 0:
        raise ValueError("five points are degenerate: eye and mouth centres coincide")
    centre = (eyes + mouth) / 2 + BOX_SHIFT_PER_EYE_MOUTH * axis
    half = BOX_SIDE_PER_EYE_MOUTH * length / 2
    return (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)


def default_predictor_path() -> Path:
    """The 68-point model inside the face-recognition-models package; one clear error if absent."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "dlib's 68-landmark model comes with the 'face-recognition-models' package, which "
            "is not installed: pip install face-recognition-models")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / SHAPE_PREDICTOR_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SHAPE_PREDICTOR_FILE} is missing from the face-recognition-models "
                            f"package at {list(spec.submodule_search_locations)}; reinstall it")


def _as_rgb_uint8(image) -> np.ndarray:
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be a PIL image or a uint8 (H, W, 3) RGB array, got "
                         f"{array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


class LandmarkDetector:
    """dlib's HOG face detector and 68-point shape predictor, loaded once per instance."""

    def __init__(self, config: Optional[DetectorConfig] = None) -> None:
        import dlib  # heavy, and only needed here

        self.config = config or DetectorConfig()
        path = Path(self.config.predictor_path) if self.config.predictor_path \
            else default_predictor_path()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: dlib 68-landmark model not found")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(os.fspath(path))

    def _upsample_times(self, array: np.ndarray) -> int:
        if self.config.upsample is not None:
            return self.config.upsample
        return 1 if min(array.shape[:2]) < self.config.auto_upsample_below else 0

    def _predict(self, array: np.ndarray, rectangle) -> np.ndarray:
        shape = self._predictor(array, rectangle)
        return np.array([[part.x, part.y] for part in shape.parts()], dtype=np.float64)

    def detect_faces(self, image) -> list[Detection]:
        """All faces scoring above the threshold, largest box first.

        Args:
            image: PIL image or uint8 (H, W, 3) RGB array.
        """
        array = _as_rgb_uint8(image)
        rectangles, scores, _ = self._detector.run(array, self._upsample_times(array),
                                                   self.config.score_threshold)
        detections = [
            Detection(box=(float(r.left()), float(r.top()), float(r.right()), float(r.bottom())),
                      score=float(score), landmarks68=self._predict(array, r))
            for r, score in zip(rectangles, scores) if score > self.config.score_threshold]
        return sorted(detections, key=lambda d: d.area, reverse=True)

    def detect_largest(self, image) -> Optional[Detection]:
        """The largest face above the threshold, or None."""
        detections = self.detect_faces(image)
        return detections[0] if detections else None

    def landmarks68_in_box(self, image, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 landmarks predicted inside a given (left, top, right, bottom) y-down box.

        Returns:
            (68, 2) float64 y-down pixels.
        """
        array = _as_rgb_uint8(image)
        left, top, right, bottom = (int(round(v)) for v in box)
        if right <= left or bottom <= top:
            raise ValueError(f"empty face box {box}")
        return self._predict(array, self._dlib.rectangle(left, top, right, bottom))

    def landmarks68_from_five(self, image, points: np.ndarray) -> np.ndarray:
        """68 landmarks for a face known by its 5 points (a detection file), (68, 2) y-down."""
        return self.landmarks68_in_box(image, box_from_five_points(points))

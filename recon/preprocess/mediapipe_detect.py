"""Dense face landmarks with mediapipe's face mesh (478 points), offline.

``mediapipe`` 0.10.14 ships its face detector (BlazeFace, short range) and the 478-point
face-mesh model with iris refinement inside the wheel, so ``mp.solutions.face_mesh`` runs
without downloading anything. A detection comes back in dlib's ``Detection`` type with:

- ``landmarks_dense`` (478, 2): mediapipe's points in its own (face-mesh) order;
- ``landmarks68`` (68, 2): the iBUG 300-W points, each a mediapipe point or the mean of two
  (``IBUG68_FROM_MEDIAPIPE``, the published correspondence of P. Yan's
  "Mediapipe_2_Dlib_Landmarks"), for the code paths that need 68 points;
- ``five_points`` derived from those 68 exactly as for dlib (eye centres = means of the
  eye corners 33/133 and 362/263, nose tip 4, mouth corners 61 and 291);
- ``box`` from the 5 points (``box_from_five_points``, calibrated against dlib's boxes);
- ``score`` NaN: the face-mesh solution does not report its detector's score.

Coordinates: mediapipe returns x / width and y / height with pixel *corners* at integers
(checked on the examples: a photo and its mirror image give x + x' = W, not W - 1); here
they become y-down pixels with pixel *centres* at integers (``recon.types``), x W - 0.5.
Images larger than ``max_side`` are detected on a downscaled copy; normalised coordinates
do not depend on the image size, so the points scale back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image

from .detect import Detection, _as_rgb_uint8, box_from_five_points

MEDIAPIPE_POINT_COUNT = 478     # 468 face-mesh points + 2 x 5 iris points (refine_landmarks)
DEFAULT_MAX_SIDE = 1000         # longest side mediapipe sees; larger photos are downscaled

# iBUG 300-W point (0-based order) -> mediapipe face-mesh point(s); two ids: their mean.
IBUG68_FROM_MEDIAPIPE: tuple[tuple[int, ...], ...] = (
    # jaw line (17)
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # brows (5 + 5)
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    # nose bridge (4) and base (5)
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    # eyes (6 + 6)
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lips (12), inner lips (8)
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)


def ibug68_from_dense(dense: np.ndarray) -> np.ndarray:
    """(478, D) mediapipe points -> (68, D) float64 iBUG 300-W points (``IBUG68_FROM_MEDIAPIPE``)."""
    dense = np.asarray(dense, dtype=np.float64)
    if dense.ndim != 2 or dense.shape[0] != MEDIAPIPE_POINT_COUNT:
        raise ValueError(f"dense landmarks must be ({MEDIAPIPE_POINT_COUNT}, D), got {dense.shape}")
    return np.stack([dense[list(ids)].mean(0) for ids in IBUG68_FROM_MEDIAPIPE])


def face_oval_ids() -> np.ndarray:
    """Sorted mediapipe point ids of the face outline (``FACEMESH_FACE_OVAL``), (36,) int64."""
    face_mesh = _import_face_mesh()
    return np.array(sorted({i for edge in face_mesh.FACEMESH_FACE_OVAL for i in edge}), dtype=np.int64)


def _import_face_mesh():
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError as err:
        raise ImportError("the mediapipe detector needs mediapipe 0.10.14 (its wheel ships the face "
                          "models; the 1.x wheels do not): pip install mediapipe==0.10.14") from err
    return face_mesh


@dataclass
class MediaPipeConfig:
    """max_faces: most faces reported per image; min_detection_confidence: BlazeFace's
    threshold in [0, 1] (mediapipe's default 0.5); max_side: photos whose longest side is
    larger are detected on a copy downscaled to it (pixels)."""

    max_faces: int = 4
    min_detection_confidence: float = 0.5
    max_side: int = DEFAULT_MAX_SIDE


class MediaPipeDetector:
    """mediapipe's face mesh in static-image mode: faces with 478 + 68 + 5 points, largest first.

    One mediapipe graph per instance (not for concurrent use from several threads);
    ``close()`` (or ``with``) frees it.
    """

    def __init__(self, config: Optional[MediaPipeConfig] = None) -> None:
        self.config = config or MediaPipeConfig()
        if self.config.max_side < 64:
            raise ValueError(f"max_side must be >= 64 pixels, got {self.config.max_side}")
        face_mesh = _import_face_mesh()
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True,
                                        max_num_faces=self.config.max_faces,
                                        min_detection_confidence=self.config.min_detection_confidence)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "MediaPipeDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dense_landmarks(self, image) -> list[np.ndarray]:
        """Each face's 478 points, in mediapipe's face order.

        Args:
            image: PIL image or uint8 (H, W, 3) RGB array.
        Returns:
            list of (478, 2) float64 y-down pixels of ``image`` (centres at integers).
        """
        array = _as_rgb_uint8(image)
        height, width = array.shape[:2]
        result = self._mesh.process(self._detection_copy(array))
        faces = result.multi_face_landmarks or []
        return [np.array([[p.x * width - 0.5, p.y * height - 0.5] for p in face.landmark], dtype=np.float64)
                for face in faces]

    def _detection_copy(self, array: np.ndarray) -> np.ndarray:
        """The image mediapipe sees: ``array`` or a copy whose longest side is ``max_side``."""
        height, width = array.shape[:2]
        scale = self.config.max_side / max(height, width)
        if scale >= 1.0:
            return array
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return np.asarray(Image.fromarray(array).resize(size, Image.Resampling.LANCZOS))

    def detect_faces(self, image) -> list[Detection]:
        """All faces mediapipe finds, largest box first (``Detection`` with ``landmarks_dense``).

        Args:
            image: PIL image or uint8 (H, W, 3) RGB array.
        """
        detections = []
        for dense in self.dense_landmarks(image):
            landmarks68 = ibug68_from_dense(dense)
            detection = Detection(box=(0.0, 0.0, 0.0, 0.0), score=float("nan"),
                                  landmarks68=landmarks68, landmarks_dense=dense)
            detection.box = tuple(float(v) for v in box_from_five_points(detection.five_points))
            detections.append(detection)
        return sorted(detections, key=lambda d: d.area, reverse=True)

    def detect_largest(self, image) -> Optional[Detection]:
        """The largest face, or None."""
        detections = self.detect_faces(image)
        return detections[0] if detections else None

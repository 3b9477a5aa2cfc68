"""Optional face detector: insightface's SCRFD detector and 68-point 3D landmark network.

Imported only when asked for (``faceset reconstruct --detector insightface``). It needs the
``insightface`` extra (``pip install "faceset[insightface]"``, with onnxruntime) and fetches
its model pack (``buffalo_l``) into ``~/.insightface`` at first use, so it cannot run on
machines without internet access; dlib (``recon.preprocess.detect``) is the offline default.
Detections come back in dlib's ``Detection`` type, so the rest of the pipeline is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detect import Detection, _as_rgb_uint8


@dataclass
class InsightFaceConfig:
    """model_pack: insightface model pack name; det_size: detector input side, pixels;
    score_threshold: keep detections scoring above this (SCRFD scores are in [0, 1]);
    device: "cpu" or "cuda" (onnxruntime execution provider)."""

    model_pack: str = "buffalo_l"
    det_size: int = 640
    score_threshold: float = 0.5
    device: str = "cpu"


class InsightFaceDetector:
    """Faces with 68 landmarks (y-down pixels, iBUG order), largest first."""

    def __init__(self, config: InsightFaceConfig | None = None) -> None:
        self.config = config or InsightFaceConfig()
        try:
            from insightface.app import FaceAnalysis
        except ImportError as err:
            raise ImportError("the insightface detector needs the 'insightface' extra: "
                              "pip install \"faceset[insightface]\"") from err
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"]
                     if self.config.device.startswith("cuda") else ["CPUExecutionProvider"])
        self._app = FaceAnalysis(name=self.config.model_pack, providers=providers,
                                 allowed_modules=["detection", "landmark_3d_68"])
        ctx_id = 0 if self.config.device.startswith("cuda") else -1
        self._app.prepare(ctx_id=ctx_id, det_size=(self.config.det_size, self.config.det_size))

    def detect_faces(self, image) -> list[Detection]:
        """image: PIL image or uint8 (H, W, 3) RGB array."""
        bgr = np.ascontiguousarray(_as_rgb_uint8(image)[:, :, ::-1])
        detections = [
            Detection(box=tuple(float(v) for v in face.bbox), score=float(face.det_score),
                      landmarks68=np.asarray(face.landmark_3d_68, dtype=np.float64)[:, :2])
            for face in self._app.get(bgr) if face.det_score > self.config.score_threshold]
        return sorted(detections, key=lambda d: d.area, reverse=True)

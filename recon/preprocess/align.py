"""Face alignment exactly as the original's ``align_img`` (SPEC 6.3).

A 5-point similarity fit (POS least squares) of the detected points to the standard 3D
5-point template gives a scale ``s`` (crop pixels per photo pixel) and a translation; the
whole photo is resized by ``s`` with PIL BICUBIC and a 224x224 box is cut out of it with
PIL ``crop`` (zero fill outside), so that the template's origin lands at the crop centre.

Coordinates: our API takes and returns **y-down** pixel coordinates (``recon.types``). The
original works in y-up coordinates (y_up = H - 1 - y_down) and rounds the detections to
float32 first (``test.py``); we reproduce that arithmetic step for step, so crops are
pixel-identical and the crop landmarks equal the original's ones (its y-up crop landmarks
v convert to ours as 223 - v, as its saved ``lm68``). A consequence of the original's
arithmetic that we keep on purpose: the crop landmarks sit up to about one pixel off the
resampled image content (int() truncations of the size and box, and the y-up flip uses
H - 1), and the landmark loss of a trained R-Net expects exactly these values.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from recon import constants as C
from recon.io import write_text_atomic
from recon.standard_landmarks import five_point_template

TRANSFORM_FORMAT = "faceset.crop_transform/1"  # tag of the crop-to-photo JSON file
MAX_RESIZED_SIDE = 1 << 15  # a resized photo larger than this means degenerate landmarks


@dataclass(frozen=True)
class CropTransform:
    """Photo <-> aligned-crop mapping of one image, the original's ``trans_params``.

    w0, h0: photo size in pixels; s: crop pixels per photo pixel (= 102 / s_pos);
    tx, ty: POS translation in photo pixels, **y-up** as in the original (ty measured from
    the bottom row); target_size: crop side (224). The resized photo size and the crop box
    follow from these with the original's int() truncations.

    "Photo" is the image the crop was cut from. For ``faceset`` that is the working image of
    ``recon.preprocess.photo.load_photo``: upright (EXIF applied) and downscaled when very
    large. photo_to_stored: when that differs from the file's stored pixels, the (3, 3)
    y-down affine from photo to stored pixels (row-major nested tuples), else None;
    ``to_stored`` / ``matrix_crop_to_stored`` then reach the file's pixels as stored.
    """

    w0: int
    h0: int
    s: float
    tx: float
    ty: float
    target_size: int = C.IMAGE_SIZE
    photo_to_stored: Optional[tuple] = None

    def __post_init__(self) -> None:
        if self.w0 <= 0 or self.h0 <= 0 or not np.isfinite(self.s) or self.s <= 0:
            raise ValueError(f"invalid crop transform: w0={self.w0}, h0={self.h0}, s={self.s}")
        if min(self.resized_size) <= 0:
            raise ValueError(f"crop transform resizes a {self.w0}x{self.h0} photo to nothing "
                             f"(s={self.s}); the landmarks are too close together")

    @property
    def trans_params(self) -> np.ndarray:
        """The original's ``[w0, h0, s, tx, ty]`` (float64, tx/ty y-up)."""
        return np.array([self.w0, self.h0, self.s, self.tx, self.ty], dtype=np.float64)

    @property
    def resized_size(self) -> tuple[int, int]:
        """(w, h) of the resized photo: int() truncation of (w0 s, h0 s)."""
        return int(self.w0 * self.s), int(self.h0 * self.s)

    def _half_offsets(self) -> tuple[float, float]:
        # (w/2 - T/2, h/2 - T/2): the float offsets the original's landmark transform uses.
        w, h = self.resized_size
        return w / 2 - self.target_size / 2, h / 2 - self.target_size / 2

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        """(left, up, right, below) in resized-photo pixels (y-down), as PIL ``crop`` takes."""
        w, h = self.resized_size
        half = self.target_size / 2
        left = int(w / 2 - half + (self.tx - self.w0 / 2) * self.s)
        up = int(h / 2 - half + (self.h0 / 2 - self.ty) * self.s)
        return left, up, left + self.target_size, up + self.target_size

    # -- the original's y-up arithmetic -------------------------------------------------
    def _photo_up_to_crop_up(self, points_up: np.ndarray) -> np.ndarray:
        """(K,2) y-up photo points -> y-up crop points, the original's operation order."""
        # float64 first: the original's tx/ty are float64 arrays, so its float32 points upcast.
        points_up = np.asarray(points_up, dtype=np.float64)
        dx, dy = self._half_offsets()
        x = (points_up[:, 0] - self.tx + self.w0 / 2) * self.s - dx
        y = (points_up[:, 1] - self.ty + self.h0 / 2) * self.s - dy
        return np.stack([x, y], axis=1)

    def _crop_up_to_photo_up(self, points_up: np.ndarray) -> np.ndarray:
        dx, dy = self._half_offsets()
        x = (points_up[:, 0] + dx) / self.s + self.tx - self.w0 / 2
        y = (points_up[:, 1] + dy) / self.s + self.ty - self.h0 / 2
        return np.stack([x, y], axis=1)

    # -- public y-down API ----------------------------------------------------------------
    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) y-down photo pixels -> (K, 2) float64 y-down crop pixels."""
        points = _as_points(points, "points")
        up = np.stack([points[:, 0], (self.h0 - 1) - points[:, 1]], axis=1)
        crop_up = self._photo_up_to_crop_up(up)
        return np.stack([crop_up[:, 0], (self.target_size - 1) - crop_up[:, 1]], axis=1)

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) y-down crop pixels -> (K, 2) float64 y-down photo pixels (inverse of to_crop)."""
        points = _as_points(points, "points")
        crop_up = np.stack([points[:, 0], (self.target_size - 1) - points[:, 1]], axis=1)
        up = self._crop_up_to_photo_up(crop_up)
        return np.stack([up[:, 0], (self.h0 - 1) - up[:, 1]], axis=1)

    def matrix_photo_to_crop(self) -> np.ndarray:
        """3x3 float64 affine matrix, homogeneous y-down photo -> y-down crop pixels."""
        dx, dy = self._half_offsets()
        last = self.target_size - 1
        bx = (self.w0 / 2 - self.tx) * self.s - dx
        by = last - (self.h0 - 1 - self.ty + self.h0 / 2) * self.s + dy
        return np.array([[self.s, 0.0, bx], [0.0, self.s, by], [0.0, 0.0, 1.0]])

    def matrix_crop_to_photo(self) -> np.ndarray:
        """3x3 float64 affine matrix, homogeneous y-down crop -> y-down photo pixels."""
        return np.linalg.inv(self.matrix_photo_to_crop())

    def matrix_crop_to_stored(self) -> np.ndarray:
        """3x3 float64 affine, y-down crop -> the file's stored pixels (EXIF rotation and
        any downscaling undone; equal to ``matrix_crop_to_photo`` when there was none)."""
        stored = np.eye(3) if self.photo_to_stored is None else np.array(self.photo_to_stored)
        return stored @ self.matrix_crop_to_photo()

    def to_stored(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) y-down crop pixels -> (K, 2) float64 pixels of the file as stored."""
        points = _as_points(points, "points")
        matrix = self.matrix_crop_to_stored()
        return points @ matrix[:2, :2].T + matrix[:2, 2]

    def with_stored(self, photo_to_stored: Optional[np.ndarray]) -> "CropTransform":
        """This transform with a photo -> stored-pixels affine (None or identity: none)."""
        if photo_to_stored is None or np.allclose(photo_to_stored, np.eye(3), rtol=0, atol=1e-12):
            return replace(self, photo_to_stored=None)
        rows = np.asarray(photo_to_stored, dtype=np.float64).tolist()
        return replace(self, photo_to_stored=tuple(tuple(row) for row in rows))

    # -- files ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": TRANSFORM_FORMAT, "convention": "pixels, y down, centres at integers",
                "w0": self.w0, "h0": self.h0, "s": self.s, "tx": self.tx, "ty": self.ty,
                "target_size": self.target_size, "resized_size": list(self.resized_size),
                "crop_box": list(self.crop_box),
                "crop_to_photo": self.matrix_crop_to_photo().tolist(),
                **({} if self.photo_to_stored is None else {
                    "photo_to_stored": [list(row) for row in self.photo_to_stored],
                    "crop_to_stored": self.matrix_crop_to_stored().tolist()})}

    def to_json(self) -> str:
        """JSON text; floats are written exactly (shortest round-trip decimals)."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> "CropTransform":
        """Parse ``to_json`` output; ``source`` names the file in error messages."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: not valid JSON ({error})") from None
        if not isinstance(data, dict) or data.get("format") != TRANSFORM_FORMAT:
            raise ValueError(f"{source}: not a crop transform file (format must be "
                             f"{TRANSFORM_FORMAT!r})")
        try:
            transform = cls(w0=int(data["w0"]), h0=int(data["h0"]), s=float(data["s"]),
                            tx=float(data["tx"]), ty=float(data["ty"]),
                            target_size=int(data.get("target_size", C.IMAGE_SIZE)))
            if "photo_to_stored" in data:
                stored = np.array(data["photo_to_stored"], dtype=np.float64).reshape(3, 3)
                transform = transform.with_stored(stored)
        except KeyError as error:
            raise ValueError(f"{source}: missing field {error}") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: bad crop transform ({error})") from None
        _check_derived(transform, data, source)
        return transform

    def save(self, path: str | os.PathLike) -> None:
        """Write ``to_json`` atomically."""
        write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CropTransform":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"{path}: cannot read crop transform ({error})") from None
        return cls.from_json(text, source=str(path))


def _check_derived(transform: CropTransform, data: dict, source: str) -> None:
    # The stored box and size are redundant; disagreeing ones mean an edited/corrupt file.
    for key, value in (("resized_size", transform.resized_size), ("crop_box", transform.crop_box)):
        if key in data and list(data[key]) != list(value):
            raise ValueError(f"{source}: {key} {data[key]} disagrees with w0/h0/s/tx/ty "
                             f"(expected {list(value)})")


@dataclass
class AlignedFace:
    """One aligned crop.

    image: (T, T, 3) uint8 RGB crop; landmarks: (K, 2) float64 y-down crop pixels (the
    input landmarks transformed, K = 5 or 68); transform: the photo<->crop mapping;
    mask: the mask image cut the same way ((T, T) or (T, T, C) uint8), or None.
    """

    image: np.ndarray
    landmarks: np.ndarray
    transform: CropTransform
    mask: Optional[np.ndarray] = None


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must be (K, 2), got shape {points.shape}")
    return points


def _to_pil(image, name: str) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (
            array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{name} must be a PIL image or a uint8 (H, W[, C]) array, got "
                         f"{array.dtype} {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(array))


def pos_fit(points_up: np.ndarray, template: np.ndarray) -> tuple[float, float, float]:
    """The original's POS least squares of 2D points to a 3D template (SPEC 6.3 step 1).

    Args:
        points_up: (5, 2) y-up photo pixels (any float dtype; the original passes float32).
        template: (5, 3) model-unit 3D points.
    Returns:
        (tx, ty, s_pos): y-up translation in pixels and the mean norm of the two rows of the
        scaled projection, pixels per model unit.
    """
    n = template.shape[0]
    system = np.zeros((2 * n, 8))
    system[0::2, 0:3] = template
    system[0::2, 3] = 1
    system[1::2, 4:7] = template
    system[1::2, 7] = 1
    rhs = np.reshape(points_up, (2 * n, 1))  # x1, y1, x2, y2, ... as the rows above
    k = np.linalg.lstsq(system, rhs, rcond=None)[0][:, 0]
    s_pos = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return float(k[3]), float(k[7]), float(s_pos)


def estimate_crop_transform(landmarks: np.ndarray, width: int, height: int,
                            template: Sequence = C.TEMPLATE_5PT,
                            target_size: int = C.IMAGE_SIZE,
                            rescale_factor: float = C.RESCALE_FACTOR) -> CropTransform:
    """The crop transform ``align_face`` would use, without touching pixels.

    Args:
        landmarks: (5, 2) or (68, 2) y-down photo pixels (68 are reduced to 5 as the original).
        width, height: photo size in pixels.
        template: (5, 3) 3D template in model units (default: the standard one; pass the
            float32 values of the user's ``similarity_Lm3D_all.mat`` for bit-identical s).
    """
    points_up = _landmarks_to_up(landmarks, height)
    template = np.asarray(template, dtype=np.float64)
    if template.shape != (5, 3):
        raise ValueError(f"template must be (5, 3), got {template.shape}")
    five_up = points_up if points_up.shape[0] == 5 else five_point_template(points_up)
    tx, ty, s_pos = pos_fit(five_up, template)
    scale = rescale_factor / s_pos if np.isfinite(s_pos) and s_pos > 0 else np.inf
    if max(width, height) * scale > MAX_RESIZED_SIDE:
        raise ValueError(f"degenerate landmarks (too close together, scale {scale:.3g}): "
                         f"{np.asarray(landmarks).tolist()}")
    return CropTransform(w0=int(width), h0=int(height), s=scale, tx=tx, ty=ty,
                         target_size=target_size)


def _landmarks_to_up(landmarks: np.ndarray, height: int) -> np.ndarray:
    # As test.py: float32 landmarks, flipped to y-up in float32 arithmetic.
    points = np.asarray(landmarks)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] not in (5, 68):
        raise ValueError(f"landmarks must be (5, 2) or (68, 2), got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain non-finite values")
    points = points.astype(np.float32)
    points[:, 1] = (height - 1) - points[:, 1]
    return points


def crop_with_transform(image, transform: CropTransform, name: str = "image") -> np.ndarray:
    """Resize (PIL BICUBIC) and crop (zero fill) a photo-sized image with ``transform``.

    Args:
        image: PIL image or uint8 (h0, w0[, C]) array of the photo's size.
    Returns:
        (T, T[, C]) uint8 array, C as the input's mode gives it.
    """
    pil = _to_pil(image, name)
    if pil.size != (transform.w0, transform.h0):
        raise ValueError(f"{name} is {pil.size[0]}x{pil.size[1]}, the transform expects "
                         f"{transform.w0}x{transform.h0}")
    resized = pil.resize(transform.resized_size, resample=Image.Resampling.BICUBIC)
    return np.asarray(resized.crop(transform.crop_box))


def align_face(image, landmarks: np.ndarray, mask=None,
               template: Sequence = C.TEMPLATE_5PT, target_size: int = C.IMAGE_SIZE,
               rescale_factor: float = C.RESCALE_FACTOR) -> AlignedFace:
    """Align a photo to the 224 crop exactly as the original's ``align_img``.

    Args:
        image: PIL image (converted to RGB) or uint8 RGB (H, W, 3) array.
        landmarks: (5, 2) or (68, 2) y-down photo pixels; 68 points are reduced to the 5
            alignment points as the original (eye means of 37/40 and 43/46, 31, 49, 55).
        mask: optional PIL image or uint8 (H, W[, C]) array of the photo's size, cut the same.
        template, target_size, rescale_factor: see ``estimate_crop_transform``.
    Returns:
        AlignedFace with the (T, T, 3) uint8 crop and all K landmarks in y-down crop pixels.
    """
    pil = _to_pil(image, "image").convert("RGB")
    width, height = pil.size
    transform = estimate_crop_transform(landmarks, width, height, template, target_size,
                                        rescale_factor)
    crop = crop_with_transform(pil, transform)
    crop_up = transform._photo_up_to_crop_up(_landmarks_to_up(landmarks, height))
    crop_landmarks = np.stack([crop_up[:, 0], (target_size - 1) - crop_up[:, 1]], axis=1)
    mask_crop = None if mask is None else crop_with_transform(mask, transform, "mask")
    return AlignedFace(image=crop, landmarks=crop_landmarks, transform=transform, mask=mask_crop)


PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")  # the files of a folder that are taken as photos


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file as 8-bit RGB in its stored pixels (no EXIF rotation, full size),
    with one clear error naming the file. 16-bit gray keeps its range, alpha goes on white
    (``recon.preprocess.photo.to_rgb8``); ``photo.load_photo`` is the upright, size-capped
    reading of the reconstruction pipeline."""
    from recon.preprocess.photo import to_rgb8
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb8(image, [])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: cannot read image ({error})") from None

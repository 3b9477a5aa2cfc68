"""Photo files as phones and editors write them, turned into the RGB image the pipeline uses.

``load_photo`` returns the **working image**: 8-bit RGB, upright (the EXIF orientation tag
applied, as every photo viewer does) and, when the file is very large, downscaled so that
its longer side is ``MAX_WORKING_SIDE`` (JPEGs are decoded at reduced size directly, so a
10000 x 10000 photo never exists in memory at full size). Conversions of unusual files
(16-bit, grayscale, CMYK, palette, alpha) each leave a one-line note.

Coordinates: detection and landmark files, like the original's, are in the file's
**stored** pixels (y down, pixel centres at integers, no EXIF applied).
``LoadedPhoto.stored_to_working`` maps them onto the working image and
``working_to_stored`` (a 3x3 affine matrix) maps back; the crop transform of a
reconstruction carries the latter so its results can be drawn on the file as stored.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

MAX_WORKING_SIDE = 4096     # longer side of the working image; larger photos are downscaled
EXIF_ORIENTATION_TAG = 0x0112
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels become white, as viewers show them

# EXIF orientation -> what a viewer does to the stored pixels to show them upright.
ORIENTATION_NAMES = {2: "mirrored left-right", 3: "rotated 180 degrees",
                     4: "mirrored top-bottom", 5: "transposed",
                     6: "rotated 90 degrees clockwise", 7: "transversed",
                     8: "rotated 90 degrees counter-clockwise"}

T = Image.Transpose
TRANSPOSE_METHODS = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM,
                     5: T.TRANSPOSE, 6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90}


FULL_FRAME_DIAGONAL_MM = float(np.hypot(36.0, 24.0))  # the 35 mm film frame's diagonal
EXIF_FOCAL_35MM = 0xA405                              # FocalLengthIn35mmFilm (EXIF sub-IFD)
EXIF_SUB_IFD = 0x8769


def focal_from_35mm(focal_35mm: float, width: int, height: int) -> float:
    """Photo focal length in pixels from the 35 mm-equivalent focal length (mm): the
    equivalent scales the frame's diagonal to the 35 mm film frame's."""
    return float(focal_35mm) * float(np.hypot(width, height)) / FULL_FRAME_DIAGONAL_MM


def exif_focal_35mm(image) -> Optional[float]:
    """The photo's EXIF ``FocalLengthIn35mmFilm`` (mm), or None.

    image: a PIL image as opened (before conversion: ``convert`` drops EXIF).
    """
    try:
        exif = image.getexif()
        value = exif.get(EXIF_FOCAL_35MM) or exif.get_ifd(EXIF_SUB_IFD).get(EXIF_FOCAL_35MM)
        value = float(value)
    except (AttributeError, OSError, TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


@dataclass
class LoadedPhoto:
    """The working image of a photo file and how its pixels relate to the stored ones.

    image: PIL RGB working image; stored_size: (w, h) of the file's pixels;
    orientation: the EXIF orientation applied (1 = none); working_to_stored: (3, 3)
    float64 affine matrix, homogeneous y-down working pixels -> stored pixels;
    notes: one line per conversion made; focal_35mm: the EXIF 35 mm-equivalent focal
    length (mm), or None.
    """

    path: Path
    image: Image.Image
    stored_size: tuple[int, int]
    orientation: int
    working_to_stored: np.ndarray
    notes: list[str] = field(default_factory=list)
    focal_35mm: Optional[float] = None

    def stored_to_working(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) stored-pixel points -> (K, 2) float64 working-image points."""
        return apply_affine(np.linalg.inv(self.working_to_stored), points)

    def to_stored(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) working-image points -> (K, 2) float64 stored-pixel points."""
        return apply_affine(self.working_to_stored, points)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(3, 3) homogeneous affine applied to (K, 2) points; (K, 2) float64."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def orientation_matrix(orientation: int, width: int, height: int) -> np.ndarray:
    """(3, 3) affine: stored pixel (x, y) of a width x height image -> its upright position
    after the EXIF ``orientation`` is applied (pixel centres at integers, y down)."""
    w, h = width - 1, height - 1
    rows = {1: ((1, 0, 0), (0, 1, 0)), 2: ((-1, 0, w), (0, 1, 0)),
            3: ((-1, 0, w), (0, -1, h)), 4: ((1, 0, 0), (0, -1, h)),
            5: ((0, 1, 0), (1, 0, 0)), 6: ((0, -1, h), (1, 0, 0)),
            7: ((0, -1, h), (-1, 0, w)), 8: ((0, 1, 0), (-1, 0, w))}[orientation]
    return np.array([*rows, (0, 0, 1)], dtype=np.float64)


def scale_matrix(sx: float, sy: float) -> np.ndarray:
    """(3, 3) affine of a resize by (sx, sy) with pixel centres at integers."""
    return np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]], dtype=np.float64)


def load_photo(path: str | os.PathLike, max_side: int = MAX_WORKING_SIDE) -> LoadedPhoto:
    """Read a photo file into its working image (see the module docstring).

    Raises ValueError naming the file when it cannot be read or is too large to decode.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # A large photo is expected here: it is downscaled while decoding, not refused.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return _working_image(path, image, max_side)
    except Image.DecompressionBombError:
        raise ValueError(f"{path}: larger than the {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
                         "megapixels this tool decodes; downscale it first") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read image ({error})") from None


def _working_image(path: Path, image: Image.Image, max_side: int) -> LoadedPhoto:
    stored_size = image.size
    orientation = _orientation(image)
    focal_35mm = exif_focal_35mm(image)
    notes: list[str] = []
    if image.format == "JPEG" and max(stored_size) > max_side:
        # Decode at 1/2, 1/4 or 1/8 size directly (DCT scaling): no full-size pixels in memory.
        image.draft("RGB", _fit_within(stored_size, max_side))
    image.load()
    rgb = to_rgb8(image, notes)
    if max(rgb.size) > max_side:
        rgb = rgb.resize(_fit_within(rgb.size, max_side), Image.Resampling.LANCZOS,
                         reducing_gap=3.0)
    if rgb.size != stored_size:
        notes.append(f"{stored_size[0]}x{stored_size[1]} photo worked on at "
                     f"{rgb.size[0]}x{rgb.size[1]} (results map back to the full size)")
    scaled = scale_matrix(rgb.size[0] / stored_size[0], rgb.size[1] / stored_size[1])
    upright = np.eye(3)
    if orientation != 1:
        upright = orientation_matrix(orientation, *rgb.size)
        rgb = rgb.transpose(TRANSPOSE_METHODS[orientation])
        notes.append(f"EXIF orientation {orientation} applied ({ORIENTATION_NAMES[orientation]})")
    working_to_stored = np.linalg.inv(upright @ scaled)
    return LoadedPhoto(path=path, image=rgb, stored_size=stored_size, orientation=orientation,
                       working_to_stored=working_to_stored, notes=notes, focal_35mm=focal_35mm)


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1  # unreadable EXIF: take the pixels as stored
    return value if value in ORIENTATION_NAMES else 1


def _fit_within(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    factor = max_side / max(size)
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


def to_rgb8(image: Image.Image, notes: list[str]) -> Image.Image:
    """8-bit RGB of any PIL mode, appending one note per non-trivial conversion.

    16-bit and 32-bit integer gray keep their range (65535 -> 255; PIL's own conversion
    clips them to white); float gray is scaled by its maximum; alpha is composited on white;
    CMYK is converted without a colour profile.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _gray8(np.asarray(image), mode, notes)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in image.info
        notes.append("palette image converted to RGB")
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        notes.append(f"alpha channel dropped ({mode}; transparent pixels shown on white)")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB (no colour profile applied)")
    elif mode in ("L", "1"):
        notes.append("grayscale image: the face fit sees no colour")
    elif mode != "RGB":
        notes.append(f"{mode} image converted to RGB")
    return image.convert("RGB")


def _gray8(values: np.ndarray, mode: str, notes: list[str]) -> np.ndarray:
    if mode == "F":
        values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(values.max()) if values.size else 0.0
        notes.append("32-bit float grayscale scaled to 8 bits by its maximum")
        scale = 255.0 / top if top > 0 else 0.0
        return np.clip(values * scale, 0, 255).astype(np.uint8)
    top = int(values.max()) if values.size else 0
    if mode == "I" and top <= 255 and values.min() >= 0:
        notes.append("grayscale image: the face fit sees no colour")
        return values.astype(np.uint8)
    notes.append("16-bit grayscale converted to 8 bits (grayscale: the face fit sees no colour)")
    # The high byte of 16-bit samples; PIL's convert would clip them all to 255.
    return (np.clip(values, 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)

"""Cameras, poses, lights, backgrounds and occluders of the out-of-model photos.

Conventions are the fitted model's, so the truth files read like today's synth: world in dm
(x to the subject's left, y up, z towards the camera), Euler angles (pitch x, yaw y, roll z)
with R = Rz Ry Rx, a pinhole camera at (0, 0, distance) looking down -z, y-down pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from recon import constants as C

from .render import Light

# Camera kinds: (probability, distance from the camera to the face surface in mm).
CAMERA_KINDS = {
    "selfie": (0.35, (300.0, 600.0)),      # phone at arm's length or closer, wide angle
    "ordinary": (0.40, (600.0, 1500.0)),
    "telephoto": (0.25, (1500.0, 3000.0)),
}
FACE_FRONT_DM = 0.55      # the nose tip's z in the model frame: camera distance = face + this
FACE_WIDTH_DM = 1.5       # about the width of the face the camera frames


def rotation(angles: np.ndarray) -> np.ndarray:
    """(3, 3) R = Rz Ry Rx from Euler angles (x, y, z) in radians (fixed world axes)."""
    x, y, z = angles
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class PinholeCamera:
    """focal (px), principal point cx, cy (y-down px), width, height (px), kind (selfie /
    ordinary / telephoto), head_distance (dm): how far the head's origin is from the camera
    (the pose's translation puts it there), distance (dm): the camera sits at (0, 0, d), the
    fitted model's convention (10 dm), so the truth's ``trans`` reads with its camera."""

    focal: float
    cx: float
    cy: float
    width: int
    height: int
    kind: str = "ordinary"
    head_distance: float = C.CAMERA_DISTANCE
    distance: float = C.CAMERA_DISTANCE

    def intrinsics(self) -> np.ndarray:
        return np.array([[self.focal, 0, self.cx], [0, self.focal, self.cy], [0, 0, 1.0]])

    def project(self, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) world dm -> y-down pixels (..., 2) and depth (...,) dm."""
        depth = self.distance - world[..., 2]
        x = self.focal * world[..., 0] / depth + self.cx
        y = self.cy - self.focal * world[..., 1] / depth
        return np.stack([x, y], -1), depth

    def scaled(self, factor: int) -> "PinholeCamera":
        """The same view at ``factor`` times the pixels (pixel centres stay consistent)."""
        return PinholeCamera(self.focal * factor, (self.cx + 0.5) * factor - 0.5,
                             (self.cy + 0.5) * factor - 0.5, self.width * factor,
                             self.height * factor, self.kind, self.head_distance, self.distance)


def draw_camera(rng: np.random.Generator, size_range: tuple[int, int]) -> PinholeCamera:
    """A random camera: kind, image size, distance and focal length."""
    names = list(CAMERA_KINDS)
    kind = names[rng.choice(len(names), p=[CAMERA_KINDS[k][0] for k in names])]
    lo, hi = CAMERA_KINDS[kind][1]
    face_mm = rng.uniform(lo, hi)
    width, height = (int(rng.integers(size_range[0], size_range[1] + 1)) for _ in range(2))
    if kind == "selfie":
        width, height = min(width, height), max(width, height)   # phones shoot portrait
        fov = np.deg2rad(rng.uniform(62.0, 80.0))                 # horizontal field of view
        focal = 0.5 * width / np.tan(0.5 * fov)
    else:
        fraction = rng.uniform(0.3, 0.55)                         # face width / shorter side
        focal = fraction * min(width, height) * (face_mm / 100.0) / FACE_WIDTH_DM
    cx = (width - 1) / 2 + rng.uniform(-0.04, 0.04) * width
    cy = (height - 1) / 2 + rng.uniform(-0.04, 0.04) * height
    return PinholeCamera(float(focal), float(cx), float(cy), width, height, kind,
                         head_distance=face_mm / C.MM_PER_UNIT + FACE_FRONT_DM)


def draw_pose(rng: np.random.Generator, yaw_deg: float, pitch_deg: float, roll_deg: float,
              camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """Euler angles (3,) radians and translation (3,) dm; the face stays near the centre."""
    angles = np.deg2rad([rng.uniform(-pitch_deg, pitch_deg), rng.uniform(-yaw_deg, yaw_deg),
                         rng.uniform(-roll_deg, roll_deg)])
    spread = 0.12 * min(camera.width, camera.height) * camera.head_distance / camera.focal
    trans = np.array([rng.uniform(-spread, spread), rng.uniform(-spread, spread),
                      camera.distance - camera.head_distance])
    return angles, trans


def _kelvin_tint(rng: np.random.Generator) -> np.ndarray:
    """An RGB light colour between warm tungsten and cool shade."""
    warm = rng.uniform(-1, 1)
    return np.array([1.0 + 0.22 * warm, 1.0 + 0.02 * warm, 1.0 - 0.25 * warm])


def _direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    return np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])


def draw_lights(rng: np.random.Generator) -> tuple[list[Light], np.ndarray]:
    """1-3 coloured directional lights (key, fill, rim) and a coloured ambient (linear RGB)."""
    count = int(rng.integers(1, 4))
    key_az = rng.uniform(-70, 70)
    lights = [Light(_direction(key_az, rng.uniform(-10, 50)), rng.uniform(2.0, 3.2) * _kelvin_tint(rng))]
    if count >= 2:   # fill from the other side, softer, no shadow map
        lights.append(Light(_direction(-np.sign(key_az) * rng.uniform(20, 70), rng.uniform(-10, 30)),
                            rng.uniform(0.3, 0.9) * _kelvin_tint(rng), casts_shadow=False))
    if count >= 3:   # rim from behind and to a side
        lights.append(Light(_direction(rng.choice([-1, 1]) * rng.uniform(110, 150), rng.uniform(0, 40)),
                            rng.uniform(1.0, 2.5) * _kelvin_tint(rng)))
    ambient = rng.uniform(0.15, 0.4) * _kelvin_tint(rng) * rng.uniform(0.9, 1.1, 3)
    return lights, ambient


def background(rng: np.random.Generator, width: int, height: int, blur_px: float) -> np.ndarray:
    """(H, W, 3) display RGB: a cluttered scene (wall, shelves, windows, lamps, plants,
    textured panels) defocused by ``blur_px``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)

    def muted() -> np.ndarray:
        """A room colour: mostly greys, beiges and muted tints, sometimes a saturated one."""
        grey = rng.uniform(0.1, 0.9)
        saturation = rng.uniform(0.05, 0.25) if rng.random() < 0.8 else rng.uniform(0.3, 0.6)
        warm = np.array([1.0, 0.92, 0.8]) if rng.random() < 0.6 else np.ones(3)
        return np.clip(grey * warm * (1 + saturation * rng.uniform(-1, 1, 3)), 0, 1)

    base = muted()
    image = np.empty((height, width, 3))
    image[:] = base
    grad = rng.uniform(-0.25, 0.25)
    image *= (1 + grad * (yy / height - 0.5))[..., None]
    for _ in range(int(rng.integers(4, 12))):
        kind = rng.integers(0, 5)
        colour = muted()
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        sx, sy = rng.uniform(0.05, 0.5) * width, rng.uniform(0.05, 0.5) * height
        if kind == 0:       # rectangle (furniture, frames, doors)
            m = (np.abs(xx - cx) < sx / 2) & (np.abs(yy - cy) < sy / 2)
        elif kind == 1:     # ellipse (lamps, plates, plants)
            m = ((xx - cx) / (sx / 2)) ** 2 + ((yy - cy) / (sy / 2)) ** 2 < 1
        elif kind == 2:     # bright window
            m = (np.abs(xx - cx) < sx / 2) & (np.abs(yy - cy) < sy / 2)
            colour = 0.75 + 0.25 * colour
        elif kind == 3:     # stripes (blinds, books)
            m = (np.abs(xx - cx) < sx / 2) & (np.abs(yy - cy) < sy / 2)
            stripes = (np.sin((xx if rng.random() < 0.5 else yy) * rng.uniform(0.1, 0.6)) > 0)
            m &= stripes
        else:               # a textured panel (wood / fabric)
            m = (np.abs(xx - cx) < sx / 2) & (np.abs(yy - cy) < sy / 2)
            grain = gaussian_filter(rng.normal(size=(height, width)), (rng.uniform(0.5, 8), rng.uniform(0.5, 8)))
            grain /= max(grain.std(), 1e-9)
            image[m] = (colour * (1 + 0.2 * grain[..., None]))[m]
            continue
        image[m] = colour
    blur = max(blur_px, 0.3)
    return np.clip(gaussian_filter(image, (blur, blur, 0)), 0, 1)


def _capsule(xx, yy, a, b, radius):
    """(H, W) coverage in [0, 1] of a capsule from a to b (antialiased by one pixel)."""
    ab = np.asarray(b, float) - a
    t = np.clip(((xx - a[0]) * ab[0] + (yy - a[1]) * ab[1]) / max(ab @ ab, 1e-9), 0, 1)
    d = np.hypot(xx - a[0] - t * ab[0], yy - a[1] - t * ab[1])
    return np.clip(radius + 0.5 - d, 0, 1)


def add_occluder(rng: np.random.Generator, image: np.ndarray, landmarks: np.ndarray,
                 skin_tone: np.ndarray) -> tuple[str, tuple[int, int, int, int]]:
    """Paint an occluder over the face in place (display RGB); returns its kind and the box
    (x0, y0, x1, y1) of the pixels it covers."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    lo, hi = landmarks.min(0), landmarks.max(0)
    face = hi - lo
    kind = ["hand", "phone", "hair", "glasses"][rng.integers(0, 4)]
    cover = np.zeros((height, width))
    shade = np.ones((height, width))
    if kind == "hand":
        palm = lo + face * rng.uniform([0.1, 0.55], [0.9, 1.1])
        r = 0.22 * face[0]
        cover = np.clip(r + 0.5 - np.hypot((xx - palm[0]) / 1.2, yy - palm[1]), 0, 1)
        angle = rng.uniform(-2.2, -0.9)
        for k in range(4):
            offset = (k - 1.5) * 0.45 * r
            base = palm + np.array([np.cos(angle + np.pi / 2), np.sin(angle + np.pi / 2)]) * offset
            tip = base + np.array([np.cos(angle), np.sin(angle)]) * r * rng.uniform(1.3, 1.9)
            cover = np.maximum(cover, _capsule(xx, yy, base, tip, 0.2 * r))
        colour = skin_tone * rng.uniform(0.7, 1.1)
        shade = 0.75 + 0.25 * np.clip((yy - palm[1]) / r + 1, 0, 1)
    elif kind == "phone":
        centre = lo + face * rng.uniform([0.0, 0.4], [1.0, 1.0])
        half = np.array([0.22, 0.4]) * face[0] * rng.uniform(0.8, 1.2)
        corner = 0.2 * half[0]
        dx = np.clip(np.abs(xx - centre[0]) - (half[0] - corner), 0, None)
        dy = np.clip(np.abs(yy - centre[1]) - (half[1] - corner), 0, None)
        cover = np.clip(corner + 0.5 - np.hypot(dx, dy), 0, 1)
        colour = rng.choice([0.05, 0.2, 0.7]) * np.ones(3) + rng.uniform(-0.03, 0.03, 3)
        shade = 0.8 + 0.4 * np.clip(1 - np.abs(xx - centre[0] + yy - centre[1]) / (0.3 * face[0]), 0, 1)
    elif kind == "hair":
        colour = rng.uniform(0.03, 0.35) * np.array([1.0, 0.8, 0.6])
        for _ in range(int(rng.integers(15, 40))):
            start = np.array([rng.uniform(lo[0], hi[0]), lo[1] - 0.3 * face[1]])
            bend = rng.uniform(-0.3, 0.3) * face[0]
            length = rng.uniform(0.4, 0.9) * face[1]
            t = np.linspace(0, 1, 8)
            pts = np.stack([start[0] + bend * t ** 2, start[1] + length * t], 1)
            for a, b in zip(pts[:-1], pts[1:]):
                cover = np.maximum(cover, _capsule(xx, yy, a, b, rng.uniform(0.3, 0.8)))
    else:   # glasses: two rims and a bridge around the eyes
        colour = rng.uniform(0.02, 0.3) * np.ones(3)
        thickness = max(1.0, 0.02 * face[0])
        for ids in (slice(36, 42), slice(42, 48)):
            c = landmarks[ids].mean(0)
            rx, ry = 0.16 * face[0], 0.1 * face[0]
            ring = np.abs(np.hypot((xx - c[0]) / rx, (yy - c[1]) / ry) - 1.0) * min(rx, ry)
            cover = np.maximum(cover, np.clip(thickness + 0.5 - ring, 0, 1))
        cover = np.maximum(cover, _capsule(xx, yy, landmarks[39] + [0.1 * face[0], -0.02 * face[1]],
                                           landmarks[42] - [0.1 * face[0], 0.02 * face[1]], thickness))
    cover = gaussian_filter(cover, 0.5)
    image[:] = image * (1 - cover[..., None]) + (colour * shade[..., None]) * cover[..., None]
    rows, cols = np.nonzero(cover > 0.05)
    if not len(rows):
        return kind, (-1, -1, -1, -1)
    return kind, (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))

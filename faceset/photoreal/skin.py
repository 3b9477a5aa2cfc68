"""Skin, eyes, lips and hair painted into a UV texture: albedo detail outside the albedo basis.

The texture lives on the model grid's (theta, height) UV chart. Each texel knows the mean
surface point it covers (the ``Atlas``, one rasterization of the mean mesh in UV space), so
features are painted at millimetre positions relative to the mean landmarks: a per-subject
base skin tone (light to dark), blush, multi-scale blotches, freckles, moles, stubble on
some subjects, eyebrow strokes, lip colour and vertical lip lines, eye whites, irises and
pupils, a dark mouth interior. A second channel holds the specular strength (an oily
forehead and nose, wet eyes and lips). Colours are display (sRGB-like) values in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .mesh import THETA_MAX_DEG, DenseMesh
from .render import rasterize

# Reflectance of skin from very light to very dark (display RGB), drawn between neighbours.
SKIN_TONES = np.array([
    [0.93, 0.78, 0.69], [0.87, 0.69, 0.58], [0.78, 0.58, 0.46], [0.66, 0.47, 0.35],
    [0.52, 0.35, 0.25], [0.38, 0.25, 0.18], [0.27, 0.18, 0.13],
])
IRIS_COLOURS = np.array([[0.30, 0.18, 0.10], [0.18, 0.11, 0.06], [0.35, 0.45, 0.55],
                         [0.32, 0.38, 0.22], [0.45, 0.33, 0.16]])
HAIR_COLOURS = np.array([[0.06, 0.05, 0.04], [0.16, 0.10, 0.06], [0.33, 0.22, 0.12],
                         [0.62, 0.48, 0.28], [0.45, 0.20, 0.08], [0.55, 0.55, 0.55]])


@dataclass
class Atlas:
    """Texel -> mean-surface point map of the UV chart: points (S, S, 3) dm, mask (S, S)."""

    points: np.ndarray
    mask: np.ndarray

    @classmethod
    def of(cls, mesh: DenseMesh, size: int) -> "Atlas":
        xy = np.stack([mesh.uv[:, 0] * (size - 1), (1.0 - mesh.uv[:, 1]) * (size - 1)], 1)
        raster = rasterize(xy, np.ones(len(xy)), mesh.triangles, size, size, perspective=False)
        return cls(raster.interpolate(mesh.mean, mesh.triangles), raster.mask)


@dataclass
class SkinTexture:
    """colour (S, S, 3) display RGB in [0, 1]; specular (S, S) Blinn-Phong strength;
    tone (3,) the base skin colour; hair (3,) the hair colour (display RGB)."""

    colour: np.ndarray
    specular: np.ndarray
    tone: np.ndarray
    hair: np.ndarray

    def sample(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bilinear lookup at uv (..., 2) in [0, 1] (v up) -> colour (..., 3), specular (...)."""
        size = self.colour.shape[0]
        x = np.clip(uv[..., 0], 0, 1) * (size - 1)
        y = (1.0 - np.clip(uv[..., 1], 0, 1)) * (size - 1)
        x0, y0 = np.minimum(np.floor(x).astype(int), size - 2), np.minimum(np.floor(y).astype(int), size - 2)
        fx, fy = (x - x0)[..., None], (y - y0)[..., None]
        both = np.concatenate([self.colour, self.specular[..., None]], -1)
        out = ((both[y0, x0] * (1 - fx) + both[y0, x0 + 1] * fx) * (1 - fy)
               + (both[y0 + 1, x0] * (1 - fx) + both[y0 + 1, x0 + 1] * fx) * fy)
        return out[..., :3], out[..., 3]


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) distance from 2D points (N, 2) to segments a (M, 2) -> b (M, 2)."""
    ab = b - a
    t = ((points[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum((ab ** 2).sum(-1), 1e-12)[None]
    closest = a[None] + np.clip(t, 0, 1)[..., None] * ab[None]
    return np.linalg.norm(points[:, None] - closest, axis=-1)


def _polyline_distance(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    return _segment_distance(points, line[:-1], line[1:]).min(1)


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool, even-odd rule."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0][None], polygon[:, 1][None]
    x1, y1 = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (((y0 > y) != (y1 > y)) & (x < cross)).sum(1) % 2 == 1


def _soft_inside(points: np.ndarray, polygon: np.ndarray, edge: float) -> np.ndarray:
    """(N,) ~1 inside the polygon, falling to 0 over ``edge`` dm outside it."""
    closed = np.concatenate([polygon, polygon[:1]])
    signed = _polyline_distance(points, closed) * np.where(_inside(points, polygon), -1.0, 1.0)
    return np.clip(0.5 - signed / edge, 0.0, 1.0)


def _noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Smooth zero-mean unit-RMS noise of correlation length ``sigma`` texels."""
    field = gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
    return field / max(field.std(), 1e-12)


def _blend(colour: np.ndarray, target, weight: np.ndarray) -> np.ndarray:
    return colour * (1 - weight[..., None]) + np.asarray(target) * weight[..., None]


def paint_skin(atlas: Atlas, mesh: DenseMesh, rng: np.random.Generator, male: bool) -> SkinTexture:
    """Paint one subject's texture (see the module docstring) at the atlas's resolution."""
    size = atlas.mask.shape[0]
    p = atlas.points.reshape(-1, 3)
    xy = p[:, :2]
    lm = mesh.mean_landmarks[:, :2]
    shape = (size, size)

    tone_pos = rng.uniform(0, len(SKIN_TONES) - 1)
    lo = int(np.floor(tone_pos))
    hi = min(lo + 1, len(SKIN_TONES) - 1)
    tone = SKIN_TONES[lo] * (1 - (tone_pos - lo)) + SKIN_TONES[hi] * (tone_pos - lo)
    tone = tone * rng.uniform(0.95, 1.05, 3)
    colour = np.tile(tone, (size * size, 1))
    x, y = xy[:, 0], xy[:, 1]
    # Multi-scale blotches and pores: multiplicative, a few per cent.
    blotch = (0.025 * _noise(rng, shape, 8.0) + 0.012 * _noise(rng, shape, 1.5)
              + 0.015 * _noise(rng, shape, 0.6)).reshape(-1)
    colour *= (1 + blotch)[:, None]
    cheeks = np.exp(-0.5 * (((np.abs(x) - 0.36) / 0.12) ** 2 + ((y + 0.1) / 0.1) ** 2))
    nose = np.exp(-0.5 * ((x / 0.06) ** 2 + ((y - lm[30, 1]) / 0.08) ** 2))
    redness = rng.uniform(0.05, 0.25) * cheeks + rng.uniform(0.0, 0.2) * nose
    colour = colour * (1 - redness[:, None] * np.array([0.0, 0.35, 0.3]))
    spec = 0.25 + 0.1 * _noise(rng, shape, 3.0).reshape(-1)

    forehead = np.exp(-0.5 * ((x / 0.25) ** 2 + ((y - lm[19, 1] - 0.22) / 0.12) ** 2))
    spec += rng.uniform(0.3, 0.9) * (forehead + nose)

    # Freckles and moles: small dark spots on the face.
    face = (np.abs(x) < 0.55) & (y > lm[8, 1]) & (y < lm[19, 1] + 0.4) & (p[:, 2] > 0.0)
    spots = np.zeros(size * size)
    fx, fy = x[face], y[face]
    face_spots = np.zeros(len(fx))
    n_freckles = int(rng.choice([0, 0, 30, 80, 200]))
    for _ in range(n_freckles):
        cx, cy = rng.normal(0, 0.18), rng.normal(0.02, 0.1)
        r = rng.uniform(0.006, 0.014)
        face_spots = np.maximum(face_spots, rng.uniform(0.2, 0.5)
                                * np.exp(-0.5 * ((fx - cx) ** 2 + (fy - cy) ** 2) / r ** 2))
    spots[face] = face_spots
    colour = colour * (1 - spots[:, None] * np.array([0.35, 0.55, 0.7]))
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(-0.45, 0.45), rng.uniform(lm[8, 1] + 0.1, lm[19, 1] + 0.2)
        r = rng.uniform(0.008, 0.018)
        mole = np.clip(1.5 - np.hypot(x - cx, y - cy) / r, 0, 1)
        colour = _blend(colour, tone * np.array([0.35, 0.25, 0.2]), 0.85 * mole)

    # Stubble: dark dots in the beard area of some subjects.
    if male:
        beard_edge = np.clip((lm[33, 1] - 0.02 - y) / 0.04, 0, 1) * np.clip((0.62 - np.abs(x)) / 0.08, 0, 1)
        lips_zone = _soft_inside(xy, lm[48:60], 0.01)
        dots = (rng.random(size * size) < rng.uniform(0.25, 0.5)).astype(float)
        dots = gaussian_filter(dots.reshape(shape), 0.6).reshape(-1)
        density = beard_edge * (1 - lips_zone) * face
        colour = _blend(colour, np.array([0.10, 0.09, 0.09]), np.clip(density * dots * 1.6, 0, 0.8))
        spec *= 1 - 0.5 * density

    # Lips: a redder, darker version of the skin with vertical lines; a dark mouth gap.
    lips = _soft_inside(xy, lm[48:60], 0.006)
    lip_colour = tone * np.array([0.82, 0.55, 0.55]) * rng.uniform(0.85, 1.05)
    lines = 1 - 0.12 * (np.sin(x / 0.006 * np.pi + 3 * _noise(rng, shape, 2.0).reshape(-1)) > 0.6)
    colour = _blend(colour, lip_colour * lines[:, None], lips)
    spec = spec * (1 - lips) + 0.7 * lips
    inner = _soft_inside(xy, lm[60:68], 0.004)
    colour = _blend(colour, np.array([0.16, 0.05, 0.05]), inner)
    spec = spec * (1 - inner) + 0.15 * inner

    # Eyebrows: short strokes along the brow line.
    hair = HAIR_COLOURS[rng.integers(0, len(HAIR_COLOURS))] * rng.uniform(0.8, 1.1)
    brow_weight = np.zeros(size * size)
    for brow, outward in ((lm[17:22], -1.0), (lm[22:27], 1.0)):
        centre_line = brow - np.array([0.0, 0.018])
        near = _polyline_distance(xy, centre_line) < 0.05
        idx = np.flatnonzero(near)
        k = 160
        s = rng.uniform(0, 1, k)
        seg = np.clip(s * (len(centre_line) - 1), 0, len(centre_line) - 1 - 1e-9)
        i = seg.astype(int)
        start = centre_line[i] * (1 - (seg - i))[:, None] + centre_line[i + 1] * (seg - i)[:, None]
        start = start + rng.normal(0, 0.008, (k, 2))
        angle = np.deg2rad(rng.uniform(10, 40, k)) * np.where(s < 0.5, 1.0, 0.3)
        direction = np.stack([outward * np.cos(angle), np.sin(angle)], 1)
        end = start + direction * rng.uniform(0.02, 0.04, (k, 1))
        dist = _segment_distance(xy[idx], start, end).min(1)
        brow_weight[idx] = np.maximum(brow_weight[idx], np.clip(1.5 - dist / 0.0025, 0, 1))
    colour = _blend(colour, hair * 0.8, 0.9 * brow_weight)

    # Eyes: whites, iris with radial streaks and a dark limbal ring, pupil.
    iris_colour = IRIS_COLOURS[rng.integers(0, len(IRIS_COLOURS))] * rng.uniform(0.8, 1.2)
    for ids in (range(36, 42), range(42, 48)):
        poly = lm[list(ids)]
        eye = _soft_inside(xy, poly, 0.004)
        centre = lm[[ids[1], ids[2], ids[4], ids[5]]].mean(0)
        r = np.hypot(x - centre[0], y - centre[1])
        ang = np.arctan2(y - centre[1], x - centre[0])
        white = np.array([0.86, 0.82, 0.78]) * (1 - 0.15 * np.clip(np.abs(x - centre[0]) / 0.12, 0, 1))[:, None]
        colour = _blend(colour, white, eye)
        streaks = 1 + 0.25 * np.sin(ang * 37 + 4 * np.sin(ang * 5))
        iris = np.clip(1 - (r - 0.048) / 0.005, 0, 1) * eye
        ring = np.clip(1 - np.abs(r - 0.046) / 0.006, 0, 1)
        colour = _blend(colour, iris_colour * streaks[:, None] * (1 - 0.5 * ring)[:, None], iris)
        pupil = np.clip(1 - (r - 0.018) / 0.003, 0, 1) * eye
        colour = _blend(colour, np.array([0.02, 0.02, 0.02]), pupil)
        spec = spec * (1 - eye) + 2.0 * eye
        # lashes along the upper lid
        upper = lm[[ids[0], ids[1], ids[2], ids[3]]]
        lash = np.clip(1.0 - _polyline_distance(xy, upper) / 0.006, 0, 1) * (1 - 0.5 * eye)
        colour = _blend(colour, hair * 0.4, 0.7 * lash)

    # Scalp hair above a wavy hairline and over the ears, where the mask meets the head.
    theta = np.abs(np.linspace(-1.0, 1.0, size))[None].repeat(size, 0).reshape(-1) * THETA_MAX_DEG
    hairline = lm[19, 1] + rng.uniform(0.3, 0.42) + 0.02 * np.sin(x / 0.07 + rng.uniform(0, 6))
    scalp = np.clip((y - hairline) / 0.02, 0, 1)
    scalp = np.maximum(scalp, np.clip((theta - rng.uniform(78, 86)) / 3, 0, 1) * np.clip((y - lm[0, 1] + 0.05) / 0.05, 0, 1))
    strands = 1 + 0.2 * _noise(rng, shape, (0.5, 3.0)).reshape(-1)
    colour = _blend(colour, hair * strands[:, None], scalp)
    spec = spec * (1 - scalp) + 0.3 * scalp
    colour = np.where(atlas.mask.reshape(-1, 1), colour, tone)
    colour = colour.reshape(size, size, 3)
    # Smooth by a fraction of a texel so painted edges are not aliased.
    colour = gaussian_filter(colour, (0.5, 0.5, 0))
    return SkinTexture(np.clip(colour, 0.0, 1.0), np.clip(spec.reshape(shape), 0.0, 3.0), tone, hair)

"""The embedded procedural morphable model: a face generated deterministically by code.

BFM09 cannot be shipped, so the toolkit builds a stand-in with the same fields
(`recon.morphable.MorphableModel`): a face-shaped template in decimetres, identity /
expression / albedo bases in standard-deviation units, 68 landmark vertices in iBUG 300-W
order placed exactly on the original's standard 3D landmarks, front and skin masks,
incident-triangle lists and UV coordinates. It is for demos, tests, synthetic benchmarks and
training runs; it is no substitute for BFM09's accuracy.

Construction (all closed form, no data files):

1. A regular grid over a tube-like parameterisation: azimuth ``theta`` around a vertical axis
   (front = 0, +-96 degrees: a little behind the ears) and height ``y`` (neck to upper
   forehead). A point is ``(A(y) rho sin(theta), y, zc(y) + B(y) rho cos(theta))``: an
   elliptic cross-section whose radial factor ``rho`` carries the facial relief.
2. ``rho`` = 1 + analytic relief (brow ridge, eye sockets, eyeballs, nose, cheekbones, lips,
   chin, jaw, temples) + a smooth correction (two Gaussian-RBF passes) that makes the surface
   pass exactly through the 68 standard landmarks.
3. The grid nodes nearest each landmark slide (inside the parameter domain, with a smooth
   local field) onto the landmark's parameters, so the landmark vertices sit exactly on the
   standard landmarks without moving the surface.
4. Bases are displacement / colour fields written as functions of the template (interpretable
   modes first, then smooth random fields), orthogonalised by Gram-Schmidt in that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import expit

from ..morphable import MorphableModel, incident_triangles
from ..standard_landmarks import STANDARD_LANDMARKS_68

# Grid extent of the parameter domain.
THETA_MAX = np.deg2rad(96.3)     # azimuth range: a little behind the ears; with the height range
                                 # it puts the vertex centroid at the origin (< 0.3 mm), so the
                                 # face model's recentring leaves the landmarks where they are
Y_BOTTOM = -1.0                  # dm, upper neck below the chin
Y_TOP = 1.0                      # dm, upper forehead (symmetric: centroid y ~ 0)
COLUMNS_PER_ROW = 1.1            # grid columns per row (the face is a little wider than tall)
THETA_FRONT_DENSITY = 0.6        # >0 packs columns towards the front (cubic warp strength)

DEFAULT_RESOLUTION = 96          # rows; 96 x 107 = 10272 vertices
BFM_DENSITY_RESOLUTION = 180     # rows; 180 x 199 = 35820 vertices (BFM09 has 35709)


@dataclass(frozen=True)
class _Tube:
    """Cross-section profiles of the base surface as cubic functions of height y (dm)."""

    heights: np.ndarray
    half_width: np.ndarray   # A(y): half width of the elliptic section
    axis_z: np.ndarray       # zc(y): z of the vertical axis
    depth: np.ndarray        # B(y): front half-depth of the section

    def at(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # A C2 spline: C1 interpolants leave visible shading lines at their knots.
        from scipy.interpolate import CubicSpline
        return tuple(CubicSpline(self.heights, table, bc_type="natural")(y)
                     for table in (self.half_width, self.axis_z, self.depth))


# Head cross-sections read off the standard landmarks: the jaw landmarks 0/16 (ears, y=0.22)
# fix the widest section, the forehead/chin front fixes the depth. Below the chin the front
# retreats to the throat.
_TUBE = _Tube(
    heights=np.array([-1.08, -0.96, -0.84, -0.70, -0.50, -0.25, 0.0, 0.22, 0.45, 0.70, 0.98]),
    half_width=np.array([0.50, 0.51, 0.53, 0.57, 0.63, 0.68, 0.72, 0.74, 0.73, 0.69, 0.58]),
    axis_z=np.array([-0.44, -0.47, -0.51, -0.55, -0.57, -0.58, -0.59, -0.59, -0.59, -0.60, -0.62]),
    depth=np.array([0.38, 0.52, 0.69, 0.78, 0.84, 0.87, 0.88, 0.88, 0.88, 0.86, 0.78]),
)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _below_edge(z: np.ndarray) -> np.ndarray:
    """Logistic step 1 / (1 + exp(z)), without overflow: ~1 for z << 0, ~0 for z >> 0."""
    return expit(-z)


def _relief(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Outward relief in dm over the base tube; ``x`` is A(y) sin(theta) (≈ world x)."""
    ax = np.abs(x)
    h = np.zeros_like(x)
    # Brow ridge: a horizontal bar over both eyes, strongest above the inner eye.
    h += 0.07 * _gauss(ax, y, 0.30, 0.47, 0.20, 0.06)
    h += 0.03 * _gauss(ax, y, 0.0, 0.44, 0.12, 0.07)        # glabella
    # Eye sockets (sunk) with the eyeball filling the opening.
    h -= 0.085 * _gauss(ax, y, 0.31, 0.30, 0.12, 0.075)
    h += 0.045 * _gauss(ax, y, 0.31, 0.30, 0.09, 0.04)
    # Temples: hollow behind the brow ends.
    h -= 0.04 * _gauss(ax, y, 0.68, 0.40, 0.08, 0.14)
    # Nose: a narrow ridge widening downwards, a rounded tip and the alae.
    ridge_width = 0.05 + 0.035 * np.clip((0.30 - y) / 0.40, 0.0, 1.0)
    ridge_height = np.interp(y, [-0.20, -0.16, -0.05, 0.06, 0.18, 0.30, 0.42],
                             [0.0, 0.10, 0.24, 0.22, 0.16, 0.09, 0.0])
    h += ridge_height * np.exp(-0.5 * (x / ridge_width) ** 2)
    h += 0.05 * _gauss(x, y, 0.0, -0.06, 0.045, 0.05)       # tip
    h += 0.045 * _gauss(ax, y, 0.10, -0.11, 0.04, 0.04)     # alae
    # Cheekbones and the mid-cheek fullness.
    h += 0.05 * _gauss(ax, y, 0.44, 0.08, 0.12, 0.10)
    h += 0.03 * _gauss(ax, y, 0.33, -0.15, 0.12, 0.12)
    # Muzzle (dental arch) and lips.
    h += 0.07 * _gauss(x, y, 0.0, -0.36, 0.20, 0.12)
    h += 0.035 * _gauss(x, y, 0.0, -0.31, 0.16, 0.035)      # upper lip
    h += 0.035 * _gauss(x, y, 0.0, -0.42, 0.14, 0.035)      # lower lip
    h -= 0.012 * _gauss(x, y, 0.0, -0.36, 0.12, 0.008)      # mouth line
    # Labiomental fold and chin.
    h -= 0.03 * _gauss(x, y, 0.0, -0.52, 0.12, 0.04)
    h += 0.05 * _gauss(x, y, 0.0, -0.68, 0.13, 0.08)
    # Nasolabial folds: a shallow groove from the alae past the mouth corners.
    h -= 0.012 * _line_bump(ax, y, (0.13, -0.10), (0.31, -0.44), 0.018)
    # Philtrum: a faint groove under the nose.
    h -= 0.006 * _gauss(x, y, 0.0, -0.23, 0.018, 0.05)
    return h


def _line_bump(x: np.ndarray, y: np.ndarray, start: tuple[float, float], end: tuple[float, float],
               width: float) -> np.ndarray:
    """Gaussian ridge of ``width`` (dm) along the segment start-end, fading at its ends."""
    a, b = np.asarray(start), np.asarray(end)
    d = b - a
    t = ((x - a[0]) * d[0] + (y - a[1]) * d[1]) / (d @ d)
    px, py = a[0] + np.clip(t, 0, 1) * d[0], a[1] + np.clip(t, 0, 1) * d[1]
    taper = np.sin(np.pi * np.clip(t, 0.0, 1.0)) ** 0.5
    return taper * np.exp(-0.5 * ((x - px) ** 2 + (y - py) ** 2) / width ** 2)


# ----------------------------------------------------------------------------- parameter space

ARC_SCALE = 0.8   # dm per radian: makes (ARC_SCALE theta, y) roughly isometric on the face


def _param_coords(theta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(..., 2) roughly isometric parameter coordinates (dm) used for all smooth fields."""
    return np.stack([ARC_SCALE * theta, y], axis=-1)


def _landmark_parameters(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Invert the tube map for each landmark: (theta, y, rho) with surface(theta, y) = landmark."""
    x, y, z = landmarks.T
    half_width, axis_z, depth = _TUBE.at(y)
    u, w = x / half_width, (z - axis_z) / depth
    return np.arctan2(u, w), y, np.hypot(u, w)


def _gaussian_kernel(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / sigma ** 2)


@dataclass(frozen=True)
class _RbfField:
    """A sum of Gaussians fitted to values at centres (regularised by ``ridge``)."""

    centres: np.ndarray
    weights: np.ndarray
    sigma: float

    @classmethod
    def fit(cls, centres: np.ndarray, values: np.ndarray, sigma: float, ridge: float) -> "_RbfField":
        kernel = _gaussian_kernel(centres, centres, sigma)
        weights = np.linalg.solve(kernel + ridge * np.eye(len(centres)), values)
        return cls(centres, weights, sigma)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        flat = points.reshape(-1, points.shape[-1])
        out = _gaussian_kernel(flat, self.centres, self.sigma) @ self.weights
        return out.reshape(points.shape[:-1] + self.weights.shape[1:])


# Two passes of the landmark correction: a broad regularised one that carries the overall
# mismatch, then a narrow exact one that removes what is left at each landmark.
_CORRECTION_PASSES = ((0.15, 3e-2), (0.035, 1e-10))


@dataclass(frozen=True)
class _Surface:
    """The template surface as a function of (theta, y)."""

    corrections: tuple[_RbfField, ...]

    @classmethod
    def through_landmarks(cls, landmarks: np.ndarray) -> "_Surface":
        theta, y, rho = _landmark_parameters(landmarks)
        centres = _param_coords(theta, y)
        surface = cls(corrections=())
        fields = []
        for sigma, ridge in _CORRECTION_PASSES:
            residual = rho - surface.rho(theta, y)
            fields.append(_RbfField.fit(centres, residual[:, None], sigma, ridge))
            surface = cls(corrections=tuple(fields))
        return surface

    def rho(self, theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        half_width, _, depth = _TUBE.at(y)
        rho = 1.0 + _relief(half_width * np.sin(theta), y) / depth
        coords = _param_coords(theta, y)
        for field in self.corrections:
            rho = rho + field(coords)[..., 0]
        return rho

    def points(self, theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        half_width, axis_z, depth = _TUBE.at(y)
        rho = self.rho(theta, y)
        return np.stack([half_width * rho * np.sin(theta), y,
                         axis_z + depth * rho * np.cos(theta)], axis=-1)


# ----------------------------------------------------------------------------- the grid

def _grid_axes(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Column azimuths (odd count, one column on the midline) and row heights."""
    half = int(round(0.5 * COLUMNS_PER_ROW * resolution))
    u = np.linspace(-1.0, 1.0, 2 * half + 1)
    a = THETA_FRONT_DENSITY
    theta = THETA_MAX * (u + a * u ** 3) / (1.0 + a)
    heights = np.linspace(Y_BOTTOM, Y_TOP, resolution)
    return theta, heights


def _grid_triangles(rows: int, cols: int) -> np.ndarray:
    """Two triangles per grid cell, counter-clockwise seen from outside; the diagonals
    mirror at the midline so the mesh is left-right symmetric."""
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    i, j = i.ravel(), j.ravel()
    v00, v01 = i * cols + j, i * cols + j + 1
    v10, v11 = v00 + cols, v01 + cols
    right_half = j >= (cols - 1) // 2
    # Node (i, j) has theta (x) growing with j and height growing with i, so (00, 01, 11)
    # turns counter-clockwise seen from the front.
    tri_a = np.where(right_half[:, None], np.stack([v00, v01, v11], 1), np.stack([v00, v01, v10], 1))
    tri_b = np.where(right_half[:, None], np.stack([v00, v11, v10], 1), np.stack([v01, v11, v10], 1))
    return np.concatenate([tri_a, tri_b]).astype(np.int64)


def _snap_nodes(theta_axis: np.ndarray, y_axis: np.ndarray, target_theta: np.ndarray,
                target_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Choose one grid node per landmark and slide the grid so those nodes land exactly on
    the landmarks' parameters. The slide is a smooth field a couple of cells wide, so the
    cells around a landmark deform gently instead of one node jumping.

    Returns the node ids (L,) and the moved parameters theta, y, each (rows, cols).
    """
    theta, y = np.meshgrid(theta_axis, y_axis)
    coords = _param_coords(theta, y).reshape(-1, 2)
    targets = _param_coords(target_theta, target_y)
    taken: set[int] = set()
    node_ids = np.empty(len(targets), dtype=np.int64)
    for k, target in enumerate(targets):
        order = np.argsort(((coords - target) ** 2).sum(1))
        node_ids[k] = next(int(n) for n in order if int(n) not in taken)
        taken.add(int(node_ids[k]))
    cell = max(np.diff(y_axis).max(), ARC_SCALE * np.diff(theta_axis).max())
    shift = _RbfField.fit(coords[node_ids], targets - coords[node_ids], 1.0 * cell, 1e-12)
    moved = coords + shift(coords)
    return node_ids, (moved[:, 0] / ARC_SCALE).reshape(theta.shape), moved[:, 1].reshape(y.shape)


# ----------------------------------------------------------------------------- regions

def _segment_distance(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """(N,) distance from 2D points to an open polyline (K, 2)."""
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    t = ((points[:, None] - a[None]) * ab[None]).sum(-1) / (ab ** 2).sum(-1)[None]
    closest = a[None] + np.clip(t, 0.0, 1.0)[..., None] * ab[None]
    return np.linalg.norm(points[:, None] - closest, axis=-1).min(1)


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: even-odd rule for 2D points in a closed polygon (K, 2)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0][None], polygon[:, 1][None]
    x1, y1 = np.roll(polygon[:, 0], -1)[None], np.roll(polygon[:, 1], -1)[None]
    straddles = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (straddles & (x < crossing_x)).sum(1) % 2 == 1


def _soft_polygon(points: np.ndarray, polygon: np.ndarray, margin: float, width: float) -> np.ndarray:
    """(N,) weight ~1 inside the polygon grown by ``margin``, falling off over ``width``."""
    closed = np.concatenate([polygon, polygon[:1]])
    signed = _segment_distance(points, closed) * np.where(_inside_polygon(points, polygon), -1.0, 1.0)
    return _below_edge((signed - margin) / width)


@dataclass(frozen=True)
class _Regions:
    """Soft (N,) weights of facial regions on the template, from its 68 landmarks.

    Regions are tested in the frontal projection (x, y), which is one-to-one over the front
    of the face; ``facing`` switches them off on the sides and back of the tube.
    """

    eyes: np.ndarray
    brows: np.ndarray
    lips: np.ndarray
    inner_mouth: np.ndarray
    front: np.ndarray
    face: np.ndarray
    lips_soft: np.ndarray

    @classmethod
    def of(cls, points: np.ndarray, theta: np.ndarray, landmarks: np.ndarray) -> "_Regions":
        xy, lm = points[:, :2], landmarks[:, :2]
        facing = (np.abs(theta) < np.deg2rad(75.0)).astype(float)
        eyes = np.maximum(_soft_polygon(xy, lm[36:42], 0.0, 0.004),
                          _soft_polygon(xy, lm[42:48], 0.0, 0.004)) * facing
        brows = np.maximum(_brow_weight(xy, lm[17:22]), _brow_weight(xy, lm[22:27])) * facing
        lips = _soft_polygon(xy, lm[48:60], 0.003, 0.004) * facing
        inner_mouth = _soft_polygon(xy, lm[60:68], 0.002, 0.002) * facing
        top = STANDARD_LANDMARKS_68[19, 1] + 0.30  # forehead, about 3 cm above the brows
        outline = np.concatenate([lm[0:17], [[lm[16, 0], top], [lm[0, 0], top]]])
        front = _inside_polygon(xy, outline) & (np.abs(theta) < np.deg2rad(90.0))
        # A soft version of the front region for fields that must fade out without a crease.
        sides = np.clip((np.deg2rad(95.0) - np.abs(theta)) / 0.3, 0.0, 1.0)
        face = _soft_polygon(xy, outline, -0.08, 0.03) * sides
        # Shape modes move the lips with a gentler edge than the albedo draws them.
        lips_soft = _soft_polygon(xy, lm[48:60], 0.0, 0.012) * facing
        return cls(eyes, brows, lips, inner_mouth, front.astype(float), face, lips_soft)


def _brow_weight(xy: np.ndarray, brow: np.ndarray) -> np.ndarray:
    """Eyebrow hair: a band ~1 cm wide along the brow polyline."""
    # The brow landmarks follow the upper edge of the eyebrow; the hair lies just below.
    centre_line = brow - np.array([0.0, 0.02])
    dist = _segment_distance(xy, centre_line)
    return _below_edge((dist - 0.025) / 0.005)


# ----------------------------------------------------------------------------- bases

def _vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N, 3) unit area-weighted vertex normals with the original's (v1-v2)x(v2-v3) sign."""
    v1, v2, v3 = (points[triangles[:, k]] for k in range(3))
    face = np.cross(v1 - v2, v2 - v3)
    normals = np.zeros_like(points)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _smooth_normals(normals: np.ndarray, grid_shape: tuple[int, int], radius_cells: float) -> np.ndarray:
    """(N, 3) vertex normals blurred over the grid (Gaussian, ``radius_cells`` wide), for
    displacement modes: raw normals turn over within one column on the nose ridge and the
    lip line, and pushing along them there would shear the thin triangles over."""
    from scipy.ndimage import gaussian_filter
    grid = normals.reshape(*grid_shape, 3)
    blurred = np.stack([gaussian_filter(grid[..., k], radius_cells, mode="nearest")
                        for k in range(3)], -1).reshape(-1, 3)
    return blurred / np.maximum(np.linalg.norm(blurred, axis=1, keepdims=True), 1e-12)


def _field(weight: np.ndarray, dx=0.0, dy=0.0, dz=0.0) -> np.ndarray:
    """(N, 3) displacement: components (scalars or (N,) arrays) times ``weight`` (N,)."""
    components = np.broadcast_arrays(np.asarray(dx, float), np.asarray(dy, float),
                                     np.asarray(dz, float), weight)[:3]
    return np.stack(components, 1) * weight[:, None]


def _along_normal(normals: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(N, 3) displacement of ``weight`` (N,) dm along the vertex normals."""
    return normals * weight[:, None]


def _matmul(a: np.ndarray, b: np.ndarray, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Matrix product through torch, whose thread pool copes with a busy machine far better
    than numpy's BLAS (seconds instead of milliseconds for these sizes under load)."""
    return (torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
            @ torch.from_numpy(np.ascontiguousarray(b)).to(dtype)).double().numpy()


# Random smooth fields are combinations of one dictionary of 3D plane waves whose wave
# numbers spread log-uniformly over this band (radians per dm; 1.5 ~ the whole head, 16 ~
# a 4 mm ripple): evaluating the dictionary once keeps the builder fast.
_WAVE_BAND = (1.5, 16.0)
_WAVES = 192
_BAND_WIDTH = 0.25   # log-frequency spread of one field's waves


@dataclass(frozen=True)
class _WaveDictionary:
    """Plane waves cos(omega . p + phase) evaluated once on the template, (N, W) each plain
    and mirrored in x; random smooth fields are random combinations of them."""

    waves: np.ndarray
    mirrored: np.ndarray
    log_wave_number: np.ndarray

    @classmethod
    def on(cls, points: np.ndarray, rng: np.random.Generator) -> "_WaveDictionary":
        direction = rng.normal(size=(_WAVES, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        log_k = rng.uniform(*np.log(_WAVE_BAND), size=_WAVES)
        omega = direction * np.exp(log_k)[:, None]
        phase = rng.uniform(0.0, 2.0 * np.pi, size=_WAVES)
        waves = np.cos(_matmul(points, omega.T) + phase)
        mirrored = np.cos(_matmul(points * np.array([-1.0, 1.0, 1.0]), omega.T) + phase)
        return cls(waves, 0.5 * (waves + mirrored), log_k)

    def fields(self, rng: np.random.Generator, frequency: np.ndarray,
               symmetric: np.ndarray) -> np.ndarray:
        """(N, M) zero-mean, unit-RMS smooth scalar fields, one per ``frequency`` (M,)
        (radians per dm); left-right symmetric where ``symmetric`` (M,) is set."""
        log_distance = self.log_wave_number[:, None] - np.log(np.asarray(frequency, float))[None]
        weights = rng.normal(size=log_distance.shape) * np.exp(-0.5 * (log_distance / _BAND_WIDTH) ** 2)
        # float32 is plenty for random fields and halves the cost of the biggest product.
        out = np.where(np.asarray(symmetric)[None], _matmul(self.mirrored, weights, torch.float32),
                       _matmul(self.waves, weights, torch.float32))
        out -= out.mean(0, keepdims=True)
        return out / np.sqrt((out ** 2).mean(0, keepdims=True))


def _orthogonalise(raw: np.ndarray) -> np.ndarray:
    """Gram-Schmidt in column order without renormalising: each column loses its components
    along the earlier ones and keeps the rest at its own size. The modes become uncorrelated,
    the leading (designed) modes keep their meaning, and a random mode that earlier modes
    mostly explain stays small instead of being blown up into noise.
    (Via the Cholesky factor of the Gram matrix: the same result as QR, many times faster.)"""
    raw_t = torch.from_numpy(np.ascontiguousarray(raw))
    upper = torch.linalg.cholesky(raw_t.T @ raw_t).T
    q = torch.linalg.solve_triangular(upper, raw_t, upper=True, left=False)
    return (q * torch.diagonal(upper)[None]).numpy()


def _stack(modes: list[np.ndarray]) -> np.ndarray:
    """List of (N, 3) per-vertex fields -> (3N, K), xyz interleaved per vertex."""
    return np.stack([m.reshape(-1) for m in modes], axis=1)


def _fill_random(modes: list[np.ndarray], count: int, make) -> list[np.ndarray]:
    """Truncate the designed modes to ``count`` or top them up with ``make(indices)``, which
    returns one (N, 3) field per mode index."""
    extra = np.arange(len(modes), count)
    return modes[:count] + (list(make(extra)) if len(extra) else [])


def _identity_modes(p: np.ndarray, normals: np.ndarray, outward: np.ndarray, regions: _Regions,
                    count: int, waves: _WaveDictionary, rng: np.random.Generator) -> np.ndarray:
    """(3N, count) identity basis in dm per sigma: interpretable modes, then random fields.

    ``normals`` (N, 3) are the template's normals smoothed over ~5 mm, ``outward`` over
    ~2.5 cm: random fields push along the latter, which does not turn over the nose."""
    x, y, z = p.T
    ax, one = np.abs(x), np.ones_like(x)
    g = _gauss
    nose = g(x, y, 0.0, 0.05, 0.12, 0.22)
    lower = _below_edge((y + 0.3) / 0.1)
    lips = regions.lips_soft
    along_normal = lambda w: _along_normal(normals, w)   # noqa: E731
    designed = [
        0.035 * (p - np.array([0.0, 0.0, -0.2])),                          # overall size
        _field(one, dx=0.045 * x),                                         # face width
        _field(one, dy=0.04 * (y - 0.1)),                                  # face length
        _field(one, dz=0.04 * (z + 0.59)),                                 # face depth
        _field(lower, dx=0.07 * x),                                        # jaw width
        0.07 * nose[:, None] * (p - np.array([0.0, -0.15, 0.30])),         # nose size
        _field(g(x, y, 0.0, -0.03, 0.06, 0.10), dz=0.025),                 # nose projection
        along_normal(0.022 * g(ax, y, 0.40, -0.22, 0.14, 0.14)),           # cheek fullness
        _field(g(x, y, 0.0, -0.72, 0.16, 0.1), dy=-0.006, dz=0.02),        # chin
        along_normal(0.016 * g(ax, y, 0.30, 0.46, 0.18, 0.06)),            # brow ridge
        _field(g(ax, y, 0.31, 0.30, 0.10, 0.08), dx=0.012 * np.tanh(x / 0.05)),  # eye spacing
        along_normal(-0.014 * g(ax, y, 0.31, 0.30, 0.10, 0.07)),           # eye-socket depth
        along_normal(0.01 * lips) + _field(lips, dy=0.15 * (y + 0.36)),    # lip fullness
        _field(g(x, y, 0.0, -0.37, 0.25, 0.08), dx=0.08 * x, dz=-0.03 * ax),  # mouth width
        _field(one, dz=0.05 * np.clip(y - 0.35, 0.0, None)),               # forehead slope
        _field(nose, dx=0.08 * x),                                         # nose width
        _field(g(x, y, 0.0, 0.20, 0.05, 0.10), dz=0.015),                  # nose bridge height
        along_normal(0.015 * g(ax, y, 0.45, 0.08, 0.10, 0.08)),            # cheekbones
        _field(one, dx=0.04 * x * y),                                      # upper/lower taper
        _field(g(x, y, 0.0, -0.1, 0.35, 0.35), dy=0.012),                  # feature height
    ]
    def random_modes(k: np.ndarray) -> np.ndarray:
        # Variance decays with the mode index while the spatial frequency grows.
        # Faces are nearly symmetric: every fourth mode is asymmetric, at half the size.
        amplitude = 0.012 * (k / 20.0) ** -1.2 * np.where(k % 4 != 0, 1.0, 0.5)
        frequency = np.tile(2.0 + 0.08 * k, 4)
        symmetric = np.concatenate([k % 4 != 0, np.zeros(3 * len(k), dtype=bool)])
        fields = waves.fields(rng, frequency, symmetric).reshape(len(p), 4, len(k))
        displacement = outward[:, :, None] * fields[:, :1] + 0.15 * fields[:, 1:]
        return (amplitude[None, None] * displacement).transpose(2, 0, 1)
    return _orthogonalise(_stack(_fill_random(designed, count, random_modes)))


def _lid_profile(x: np.ndarray, lid: np.ndarray) -> np.ndarray:
    """Height of a lid polyline (K, 2) at ``x`` (linear, clamped at the eye corners)."""
    order = np.argsort(lid[:, 0])
    return np.interp(x, lid[order, 0], lid[order, 1])


def _eye_close_field(p: np.ndarray, lm: np.ndarray, upper: list[int], lower: list[int],
                     facing: np.ndarray) -> np.ndarray:
    """(N,) downward shift (dm) closing one eye by a quarter per unit: the opening between the
    lids compresses onto the lower lid and the skin above follows with a decay."""
    x, y = p[:, 0], p[:, 1]
    top, bottom = _lid_profile(x, lm[upper, :2]), _lid_profile(x, lm[lower, :2])
    gap = np.maximum(top - bottom, 1e-3)
    t = (y - bottom) / gap
    follow = np.where(t <= 1.0, np.clip(t, 0.0, 1.0), np.clip(1.0 - (t - 1.0) / 3.0, 0.0, 1.0))
    corners = lm[upper, 0]
    centre, half = 0.5 * (corners.min() + corners.max()), 0.5 * (corners.max() - corners.min())
    across = np.clip(1.0 - ((x - centre) / (1.15 * half)) ** 2, 0.0, 1.0)
    return (top - bottom) / 4.0 * follow * across * facing


def _expression_modes(p: np.ndarray, normals: np.ndarray, theta: np.ndarray, regions: _Regions,
                      lm: np.ndarray, count: int, waves: _WaveDictionary,
                      rng: np.random.Generator) -> np.ndarray:
    """(3N, count) expression basis in dm per sigma; +3 sigma of ``jaw open`` opens the
    mouth by ~1.7 cm (BFM-like magnitudes)."""
    x, y, z = p.T
    # A smooth sign: antisymmetric fields must not crease at the midline.
    ax, sx = np.abs(x), np.tanh(x / 0.05)
    g = _gauss
    facing = (np.abs(theta) < np.deg2rad(80.0)).astype(float)
    # The jaw: everything below the line between the lips, sharp at the mouth and softer
    # on the cheeks, fading towards the ears (the hinge) and down the neck.
    split = np.interp(x, lm[[60, 67, 66, 65, 64], 0], 0.5 * (lm[[60, 61, 62, 63, 64], 1] +
                                                               lm[[60, 67, 66, 65, 64], 1]))
    split_width = 0.002 + 0.15 * np.clip(ax - 0.2, 0.0, None)
    below_mouth = _below_edge((y - split) / split_width)
    jaw = (below_mouth * np.clip((z + 0.55) / 0.35, 0.0, 1.0) * np.clip((y + 1.08) / 0.15, 0.0, 1.0))
    hinge = np.array([0.0, 0.15, -0.55])
    rel = p - hinge
    jaw_rotation = _field(jaw, dy=-rel[:, 2], dz=rel[:, 1])   # omega x r with omega along +x
    corner = lambda side: g(x, y, side * 0.25, -0.38, 0.07, 0.06)   # noqa: E731
    corners = corner(-1.0) + corner(1.0)
    cheeks = g(ax, y, 0.36, -0.15, 0.12, 0.12)
    brow_band = g(ax, y, 0.35, 0.50, 0.25, 0.10) * facing
    inner_brow = g(ax, y, 0.15, 0.45, 0.08, 0.07)
    upper_lip = regions.lips_soft * (1.0 - below_mouth)
    lower_lip = regions.lips_soft * below_mouth
    mouth = g(x, y, 0.0, -0.37, 0.22, 0.10)
    close_left = _eye_close_field(p, lm, [36, 37, 38, 39], [36, 41, 40, 39], facing)
    close_right = _eye_close_field(p, lm, [42, 43, 44, 45], [42, 47, 46, 45], facing)
    def smile_side(side: float) -> np.ndarray:
        # Mouth corner up, out and back; the cheek above it rises with it.
        weight = corner(side) + 0.35 * g(x, y, side * 0.36, -0.12, 0.1, 0.1)
        return _field(weight, dx=0.015 * side, dy=0.03, dz=-0.01)
    designed = [
        0.048 * jaw_rotation,                                               # jaw open
        smile_side(-1.0) + smile_side(1.0),                                 # smile
        _field(corners, dx=0.02 * sx, dz=-0.006),                           # lip stretch
        _field(mouth, dx=-0.04 * x, dz=0.015),                              # pucker
        _field(brow_band, dy=0.03),                                         # brow raise
        _field(inner_brow, dx=-0.012 * sx, dy=-0.015, dz=0.004),            # frown
        _field(close_left + close_right, dy=-1.0),                          # blink
        _along_normal(normals, 0.02 * cheeks * facing),                     # cheek puff
        _field(upper_lip, dy=0.012, dz=0.004),                              # upper lip raise
        _field(lower_lip, dy=-0.012, dz=0.004),                             # lower lip depress
        _field(jaw, dx=0.02),                                               # jaw sideways
        _field(jaw, dz=0.015),                                              # jaw forward
        _field(mouth, dx=0.015),                                            # mouth sideways
        smile_side(-1.0) - smile_side(1.0),                                 # asymmetric smile
        _field(brow_band * sx, dy=0.03),                                    # one brow raised
        _field(close_left - close_right, dy=-1.0),                          # wink
        _field(g(ax, y, 0.09, 0.0, 0.06, 0.12), dy=0.01),                   # nose wrinkle
        _field(regions.lips_soft, dz=-0.012),                               # lips pressed
        _field(g(ax, y, 0.31, 0.24, 0.10, 0.03) * facing, dy=0.006),        # squint (lower lids)
        _field(0.7 * lower_lip + 0.3 * mouth, dz=0.012),                    # lower lip out
    ]
    face = regions.face
    def random_modes(k: np.ndarray) -> np.ndarray:
        # Local smooth motions inside the face region, weaker and finer with the index.
        amplitude = 0.006 * (k / 20.0) ** -1.2
        frequency = np.tile(3.0 + 0.08 * k, 3)
        symmetric = np.tile(k % 3 != 0, 3)
        fields = waves.fields(rng, frequency, symmetric).reshape(len(p), 3, len(k))
        return (amplitude[None, None] * fields * face[:, None, None]).transpose(2, 0, 1)
    return _orthogonalise(_stack(_fill_random(designed, count, random_modes)))

# ----------------------------------------------------------------------------- albedo

# Mean colours in 0-255 (BFM09's texture units).
_SKIN = np.array([186.0, 136.0, 113.0])
_LIPS = np.array([168.0, 92.0, 88.0])
_BROWS = np.array([92.0, 68.0, 54.0])
_SCLERA = np.array([214.0, 204.0, 198.0])
_IRIS = np.array([82.0, 60.0, 46.0])
_PUPIL = np.array([24.0, 18.0, 18.0])
_MOUTH_GAP = np.array([88.0, 40.0, 40.0])
_NOSTRIL = np.array([96.0, 60.0, 52.0])
_LASHES = np.array([62.0, 46.0, 40.0])


def _blend(base: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return base * (1.0 - weight[:, None]) + colour[None] * weight[:, None]


def _mean_albedo(p: np.ndarray, regions: _Regions, lm: np.ndarray) -> np.ndarray:
    """(N, 3) mean reflectance in 0-255: skin with redder cheeks, lips, brows, eyes."""
    x, y = p[:, 0], p[:, 1]
    ax = np.abs(x)
    colour = np.tile(_SKIN, (len(p), 1))
    cheeks = _gauss(ax, y, 0.38, -0.08, 0.12, 0.12)
    colour = colour + 6.0 * cheeks[:, None] * np.array([1.0, -0.5, -0.4])   # rosier cheeks
    colour = _blend(colour, _BROWS, 0.85 * regions.brows)
    colour = _blend(colour, _LIPS, regions.lips)
    colour = _blend(colour, _MOUTH_GAP, regions.inner_mouth)
    colour = _blend(colour, _NOSTRIL, 0.8 * _gauss(ax, y, 0.055, -0.14, 0.022, 0.012))
    colour = _blend(colour, _SCLERA, regions.eyes)
    for upper_lid in (lm[36:40, :2], lm[[42, 43, 44, 45], :2]):
        # Lashes darken the upper lid margin.
        lashes = _below_edge((_segment_distance(p[:, :2], upper_lid) - 0.008) / 0.004)
        colour = _blend(colour, _LASHES, 0.6 * lashes * (regions.front > 0))
    for eye in (lm[[37, 38, 40, 41], :2].mean(0), lm[[43, 44, 46, 47], :2].mean(0)):
        r = np.hypot(x - eye[0], y - eye[1])
        colour = _blend(colour, _IRIS, regions.eyes * _below_edge((r - 0.05) / 0.004))
        colour = _blend(colour, _PUPIL, regions.eyes * _below_edge((r - 0.018) / 0.003))
    return colour


def _albedo_modes(p: np.ndarray, regions: _Regions, lm: np.ndarray, count: int,
                  waves: _WaveDictionary, rng: np.random.Generator) -> np.ndarray:
    """(3N, count) albedo basis in 0-255 per sigma: skin tone, redness, ..., random fields."""
    x, y = p[:, 0], p[:, 1]
    ax = np.abs(x)
    skin = 1.0 - np.clip(regions.eyes + regions.lips + 0.8 * regions.brows, 0.0, 1.0)
    iris = regions.eyes * np.maximum(*(_below_edge((np.hypot(x - e[0], y - e[1]) - 0.05) / 0.004)
                                       for e in (lm[[37, 38, 40, 41], :2].mean(0),
                                                 lm[[43, 44, 46, 47], :2].mean(0))))
    beard = regions.face * _below_edge((y + 0.22) / 0.05) * (1.0 - regions.lips)
    def tint(rgb, weight: np.ndarray) -> np.ndarray:
        return weight[:, None] * np.asarray(rgb, dtype=float)[None]
    designed = [
        tint([20.0, 18.0, 16.0], np.ones_like(x) - 0.6 * regions.eyes),       # skin lightness
        tint([6.0, -1.5, -1.5], skin * (1.0 + 0.5 * _gauss(ax, y, 0.38, -0.1, 0.15, 0.15))),  # redness
        tint([2.0, 2.0, -5.0], skin),                                          # olive / yellow
        tint([10.0, -3.0, 0.0], regions.lips),                                 # lip colour
        tint([-22.0, -18.0, -15.0], regions.brows),                            # brow darkness
        tint([-10.0, -7.0, -3.0], beard),                                      # beard shadow
        tint([7.0, 0.0, -1.0], _gauss(ax, y, 0.38, -0.12, 0.1, 0.1)),          # cheek blush
        tint([22.0, 22.0, 16.0], iris),                                        # iris colour
        tint([5.0, 4.0, 3.0], skin * np.clip(y, -1.0, 1.0)),                   # top-bottom gradient
        tint([-9.0, -9.0, -4.0], _gauss(ax, y, 0.31, 0.2, 0.1, 0.04)),         # under-eye darkness
        tint([6.0, -1.0, -1.0], _gauss(x, y, 0.0, -0.05, 0.08, 0.12)),         # nose redness
    ]
    def random_modes(k: np.ndarray) -> np.ndarray:
        # Brightness variation in a skin-like colour direction, slightly different per mode.
        amplitude = 6.0 * (k / 11.0) ** -1.0
        frequency = 2.5 + 0.1 * k
        fields = waves.fields(rng, frequency, k % 3 != 0)
        direction = np.array([1.0, 0.85, 0.75])[:, None] + 0.05 * rng.normal(size=(3, len(k)))
        direction /= np.linalg.norm(direction, axis=0, keepdims=True)
        colour = fields[:, None, :] * direction[None]
        return (amplitude[None, None] * colour).transpose(2, 0, 1)
    return _orthogonalise(_stack(_fill_random(designed, count, random_modes)))


# ----------------------------------------------------------------------------- the builder

def build_embedded_model(resolution: int = DEFAULT_RESOLUTION, n_id: int = 80, n_exp: int = 64,
                         n_tex: int = 80, seed: int = 0) -> MorphableModel:
    """Build the embedded procedural morphable model (deterministic for a given argument set).

    Args:
        resolution: grid rows; the mesh has ``resolution x (2 round(0.55 resolution) + 1)``
            vertices: 96 (default) -> 10,272, 180 -> 35,820 (about BFM09's 35,709).
        n_id, n_exp, n_tex: number of identity / expression / albedo basis columns.
        seed: seed of the random smooth modes (the designed leading modes do not depend on it).

    Returns:
        A validated ``MorphableModel`` on the CPU: float32 fields, int64 0-based indices,
        mean shape in dm (x to the subject's left, y up, z towards the camera), landmark
        vertices exactly at ``STANDARD_LANDMARKS_68``, bases in sigma units (columns scaled
        by their standard deviation), albedo in 0-255, ``uvs`` = the grid's (theta, y) in
        [0, 1], v up.
    """
    if resolution < 40:
        raise ValueError(f"procedural model: resolution {resolution} is too coarse for 68 "
                         "distinct landmark vertices (use >= 40)")
    for name, value in (("n_id", n_id), ("n_exp", n_exp), ("n_tex", n_tex)):
        if value < 1:
            raise ValueError(f"procedural model: {name} must be >= 1, got {value}")
    rng = np.random.default_rng(seed)
    landmarks = STANDARD_LANDMARKS_68
    surface = _Surface.through_landmarks(landmarks)
    theta_axis, y_axis = _grid_axes(resolution)
    target_theta, target_y, _ = _landmark_parameters(landmarks)
    landmark_ids, theta, y = _snap_nodes(theta_axis, y_axis, target_theta, target_y)
    points = surface.points(theta, y).reshape(-1, 3)
    grid_shape = theta.shape
    theta = theta.reshape(-1)
    triangles = _grid_triangles(*grid_shape)
    # Displacement directions: normals smoothed over ~5 mm and ~2.5 cm at any resolution.
    cell = (Y_TOP - Y_BOTTOM) / (resolution - 1)
    raw_normals = _vertex_normals(points, triangles)
    normals = _smooth_normals(raw_normals, grid_shape, 0.05 / cell)
    outward = _smooth_normals(raw_normals, grid_shape, 0.25 / cell)
    regions = _Regions.of(points, theta, landmarks)

    waves = _WaveDictionary.on(points, rng)
    id_basis = _identity_modes(points, normals, outward, regions, n_id, waves, rng)
    exp_basis = _expression_modes(points, normals, theta, regions, landmarks, n_exp, waves, rng)
    mean_albedo = _mean_albedo(points, regions, landmarks)
    tex_basis = _albedo_modes(points, regions, landmarks, n_tex, waves, rng)

    front = regions.front > 0.5
    front_ids = np.flatnonzero(front)
    front_triangles = triangles[front[triangles].all(1)]
    not_skin = np.clip(regions.eyes + regions.brows + regions.lips, 0.0, 1.0)
    skin = front & (not_skin < 0.05) & _outside_feature_margins(points, landmarks)
    uvs = np.stack([(theta + THETA_MAX) / (2.0 * THETA_MAX),
                    (points[:, 1] - Y_BOTTOM) / (Y_TOP - Y_BOTTOM)], 1)

    as_float = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))   # noqa: E731
    as_index = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))     # noqa: E731
    triangles_t = as_index(triangles)
    return MorphableModel(
        name=f"procedural-r{resolution}-s{seed}",
        mean_shape=as_float(points), id_basis=as_float(id_basis), exp_basis=as_float(exp_basis),
        mean_albedo=as_float(mean_albedo), tex_basis=as_float(tex_basis),
        triangles=triangles_t, landmark_ids=as_index(landmark_ids),
        point_buf=incident_triangles(triangles_t, len(points)),
        front_vertex_ids=as_index(front_ids), front_triangles=as_index(front_triangles),
        skin_mask=torch.from_numpy(skin), uvs=as_float(np.clip(uvs, 0.0, 1.0)),
    ).validate()


def _outside_feature_margins(points: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(N,) bool: away from the eyes, brows, lips and nostrils by a few millimetres, so the
    albedo-flatness loss sees only plain skin."""
    xy, lm = points[:, :2], lm[:, :2]
    near = np.zeros(len(points), dtype=bool)
    for polygon, margin in ((lm[36:42], 0.03), (lm[42:48], 0.03), (lm[48:60], 0.025)):
        closed = np.concatenate([polygon, polygon[:1]])
        near |= _inside_polygon(xy, polygon) | (_segment_distance(xy, closed) < margin)
    for brow in (lm[17:22], lm[22:27]):
        near |= _segment_distance(xy, brow - np.array([0.0, 0.02])) < 0.05
    near |= _segment_distance(xy, lm[31:36]) < 0.03
    return ~near

"""The dense ground-truth surface: a subdivided model mesh carrying shapes the basis cannot make.

``DenseMesh`` subdivides the fitted (embedded) model's mesh once at edge midpoints: every
triangle becomes four, the model's N vertices keep their ids 0..N-1 (the known map from the
fitted model's vertices to points of the dense surface) and one vertex is added per edge.
A subject's neutral surface is the subdivided model shape (identity, some coefficients beyond
2 SD) plus smooth fields evaluated on the dense vertices: large-scale deformations of several
mm (nose length, nose width, cheek fullness, face depth, jaw width, brow ridge, chin) and
fine random bumps (``detail_mm`` RMS). Units: model units (dm) in canonical axes (x to the
subject's left, y up, z towards the camera) unless a name says mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evaluation.distance import vertex_normals
from recon import constants as C

THETA_MAX_DEG = 96.3   # the embedded model's grid azimuth range (its uv u spans +-this)

# The out-of-basis deformations: name -> (min, max) amplitude magnitude in mm.
DEFORMATIONS_MM = {
    "nose_length": (3.0, 6.0), "nose_width": (2.0, 4.0), "cheek_fullness": (3.0, 6.0),
    "face_depth": (3.0, 7.0), "jaw_width": (3.0, 7.0), "brow_ridge": (2.0, 4.0),
    "chin": (3.0, 6.0),
}


def subdivide(triangles: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """One midpoint subdivision of a triangle mesh.

    triangles (F, 3) int. Returns (edges (E, 2): the two parent vertices of dense vertex
    n_vertices + e, dense triangles (4F, 3) with the parents' winding).
    """
    tri = np.asarray(triangles, np.int64)
    pairs = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    keys = np.sort(pairs, axis=1)
    edges, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(3, -1) + n_vertices             # midpoint ids of edges 01, 12, 20
    m01, m12, m20 = inverse
    a, b, c = tri.T
    dense = np.concatenate([np.stack([a, m01, m20], 1), np.stack([m01, b, m12], 1),
                            np.stack([m20, m12, c], 1), np.stack([m01, m12, m20], 1)])
    return edges, dense


@dataclass
class DenseMesh:
    """The fitted model's mesh subdivided once (see module docstring).

    n_model: the fitted model's vertex count; edges (E, 2); triangles (F_dense, 3);
    mean (V, 3) dm: the recentred mean shape subdivided; uv (V, 2) in [0, 1] (model grid
    theta, height); landmark_ids (68,) (the model's, valid in the dense mesh too);
    mean_landmarks (68, 3) dm.
    """

    n_model: int
    edges: np.ndarray
    triangles: np.ndarray
    mean: np.ndarray
    uv: np.ndarray
    landmark_ids: np.ndarray
    model_triangles: np.ndarray
    _normals: np.ndarray = field(default=None, repr=False)

    @classmethod
    def of(cls, face_model) -> "DenseMesh":
        """From a ``recon.face_model.FaceModel`` (its recentred mean, triangles, uvs)."""
        n = face_model.n_vertices
        model_triangles = face_model.triangles.numpy()
        edges, triangles = subdivide(model_triangles, n)
        mesh = cls(n_model=n, edges=edges, triangles=triangles, mean=None, uv=None,
                   landmark_ids=face_model.landmark_ids.numpy(), model_triangles=model_triangles)
        mesh.mean = mesh.lift(face_model.mean_shape.view(-1, 3).double().numpy())
        mesh.uv = mesh.lift(face_model.uvs.double().numpy())
        return mesh

    @property
    def n_vertices(self) -> int:
        return self.n_model + len(self.edges)

    @property
    def mean_landmarks(self) -> np.ndarray:
        return self.mean[self.landmark_ids]

    @property
    def mean_normals(self) -> np.ndarray:
        if self._normals is None:
            self._normals = vertex_normals(self.mean, self.triangles)
        return self._normals

    @property
    def theta(self) -> np.ndarray:
        """(V,) azimuth of each vertex on the model grid, radians (0 = front)."""
        return (2.0 * self.uv[:, 0] - 1.0) * np.deg2rad(THETA_MAX_DEG)

    def lift(self, values: np.ndarray) -> np.ndarray:
        """Per-model-vertex values (N, ...) -> per-dense-vertex values (V, ...): the model
        vertices keep theirs, each edge vertex gets its parents' mean (linear, so a model
        shape lifts to the same piecewise-flat surface)."""
        values = np.asarray(values)
        return np.concatenate([values, 0.5 * (values[self.edges[:, 0]] + values[self.edges[:, 1]])])


def _gauss(x, y, cx, cy, sx, sy):
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _facing(mesh: DenseMesh) -> np.ndarray:
    """(V,) 1 on the front of the face fading to 0 past ~75 degrees azimuth."""
    return np.clip((np.deg2rad(80.0) - np.abs(mesh.theta)) / np.deg2rad(25.0), 0.0, 1.0)


def deformation_fields(mesh: DenseMesh) -> dict[str, np.ndarray]:
    """Unit (1 mm peak, roughly) displacement fields (V, 3) in dm, one per named deformation.

    Each is a smooth function of the mean surface position, placed by the mean landmarks;
    none is a combination of the model's identity basis (which is built differently), and
    the fine bumps added per subject are beyond any basis of the fitted resolution.
    """
    p, n, lm = mesh.mean, mesh.mean_normals, mesh.mean_landmarks
    x, y, z = p.T
    facing = _facing(mesh)
    mm = 1.0 / C.MM_PER_UNIT
    out = {}
    bridge_y, base_y = lm[27, 1], lm[33, 1]
    along_nose = np.clip((bridge_y - y) / (bridge_y - base_y), 0.0, 1.2)
    nose = _gauss(x, y, 0.0, 0.5 * (bridge_y + base_y), 0.12, 0.22) * facing
    out["nose_length"] = np.stack([0 * x, -along_nose * nose, 0.6 * along_nose * nose], 1) * mm
    wings = _gauss(x, y, 0.0, base_y + 0.03, 0.16, 0.08) * facing
    out["nose_width"] = np.stack([np.tanh(x / 0.06) * wings, 0 * x, 0 * x], 1) * mm
    cheeks = (_gauss(x, y, 0.38, -0.12, 0.13, 0.13) + _gauss(x, y, -0.38, -0.12, 0.13, 0.13)) * facing
    out["cheek_fullness"] = n * cheeks[:, None] * mm
    front = np.clip(np.cos(mesh.theta), 0.0, 1.0) ** 2 * _gauss(x, y, 0.0, 0.0, 0.6, 0.7)
    out["face_depth"] = np.stack([0 * x, 0 * x, front], 1) * mm
    jaw = _gauss(0 * x, y, 0.0, lm[5, 1], 1.0, 0.2) * np.clip(np.abs(x) / 0.55, 0.0, 1.0)
    out["jaw_width"] = np.stack([np.sign(x) * jaw, 0 * x, 0 * x], 1) * mm
    brow_y = 0.5 * (lm[19, 1] + lm[24, 1])
    brow = _gauss(0 * x, y, 0.0, brow_y + 0.02, 1.0, 0.05) * _gauss(x, 0 * y, 0.0, 0.0, 0.3, 1.0) * facing
    out["brow_ridge"] = n * brow[:, None] * mm
    chin = _gauss(x, y, lm[8, 0], lm[8, 1] + 0.08, 0.14, 0.12) * facing
    out["chin"] = np.stack([0 * x, -0.5 * chin, chin], 1) * mm
    return out


def fine_detail(mesh: DenseMesh, rng: np.random.Generator, rms_mm: float, count: int = 48) -> np.ndarray:
    """(V, 3) dm: random Gaussian bumps (widths 5-25 mm) along the normals, ``rms_mm`` RMS
    over the front of the face."""
    p = mesh.mean
    centres = p[rng.integers(0, len(p), count)]
    widths = rng.uniform(0.05, 0.25, count)
    heights = rng.normal(size=count)
    field = np.zeros(len(p))
    for c, w, h in zip(centres, widths, heights):
        field += h * np.exp(-((p - c) ** 2).sum(1) / (2 * w * w))
    front = _facing(mesh) > 0.5
    field *= (rms_mm / C.MM_PER_UNIT) / max(np.sqrt((field[front] ** 2).mean()), 1e-12)
    return field[:, None] * mesh.mean_normals


def draw_identity(rng: np.random.Generator, n_id: int, scale: float, beyond: int) -> np.ndarray:
    """(n_id,) identity coefficients: N(0, scale), with ``beyond`` of the leading 16 pushed
    to 2.1-2.8 SD (random signs), outside the prior the fit regularises towards."""
    coeffs = rng.normal(0.0, scale, n_id)
    picks = rng.choice(min(16, n_id), size=min(beyond, n_id, 16), replace=False)
    coeffs[picks] = rng.choice([-1.0, 1.0], len(picks)) * rng.uniform(2.1, 2.8, len(picks))
    return coeffs


def draw_deformation(rng: np.random.Generator, fields: dict[str, np.ndarray], scale: float = 1.0
                     ) -> tuple[np.ndarray, dict[str, float]]:
    """Sum of the named fields with random amplitudes (mm, random signs); returns the
    (V, 3) dm displacement and the amplitudes drawn."""
    amplitudes = {}
    total = 0.0
    for name, (lo, hi) in DEFORMATIONS_MM.items():
        amplitudes[name] = float(rng.choice([-1.0, 1.0]) * rng.uniform(lo, hi) * scale)
        total = total + amplitudes[name] * fields[name]
    return total, amplitudes


def ellipsoid(radii, centre, rows: int = 24, cols: int = 32, power: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A closed ellipsoid mesh (dm): vertices (V, 3), outward counter-clockwise triangles
    (F, 3); the poles repeat vertices, so a few triangles are degenerate (the rasterizer
    skips them). ``power`` < 1 makes it a boxier superellipsoid (each unit coordinate c
    becomes sign(c) |c|^power)."""
    radii, centre = np.asarray(radii, float), np.asarray(centre, float)
    phi = np.linspace(0.0, np.pi, rows)                   # from the top
    lam = np.linspace(0.0, 2 * np.pi, cols, endpoint=False)
    pp, ll = np.meshgrid(phi, lam, indexing="ij")
    unit = np.stack([np.sin(pp) * np.sin(ll), np.cos(pp), np.sin(pp) * np.cos(ll)], -1).reshape(-1, 3)
    unit = np.sign(unit) * np.abs(unit) ** power
    vertices = unit * radii + centre
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(cols), indexing="ij")
    a, b = (i * cols + j).ravel(), (i * cols + (j + 1) % cols).ravel()
    c, d = a + cols, b + cols
    triangles = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)]).astype(np.int64)
    # orient outward: normals must point away from the centre
    v0, v1, v2 = (vertices[triangles[:, k]] for k in range(3))
    outward = (np.cross(v1 - v0, v2 - v0) * (v0 + v1 + v2 - 3 * centre)).sum(1) >= 0
    triangles[~outward] = triangles[~outward][:, [0, 2, 1]]
    return vertices, triangles


# Body parts behind and below the face mask (the model's mesh is an open mask): the back of
# the head with the hair, the neck (both move with the head) and the shoulders (which turn
# only a little with it). Radii and centres in dm, in the model frame.
HAIR = ((0.76, 1.0, 0.85), (0.0, 0.25, -0.72))
NECK = ((0.50, 1.1, 0.48), (0.0, -1.35, -0.42))
TORSO = ((1.9, 2.0, 0.8), (0.0, -3.65, -0.7))


def head_shell() -> tuple[np.ndarray, np.ndarray]:
    """The back of the head / hair ellipsoid: vertices (V, 3) dm, triangles (F, 3)."""
    return ellipsoid(*HAIR)

"""Alignment: similarity Procrustes, scan-to-mesh refinement (NoW) and scaled ICP (MICC).

All arrays are numpy float64, points as rows ``(N, 3)``. A ``Similarity`` maps a point x
(a row) to ``scale * R @ x + t``; ``R`` is orthogonal and may be a reflection (det -1) when
it comes from ``procrustes(..., reflection="best")``, as MATLAB's and the NoW code's do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from evaluation.distance import TriangleMeshIndex, vertex_normals

# The NoW refinement penalises negative scale with 100 * (|s| - s) (official code).
NOW_SCALE_PENALTY = 100.0


@dataclass
class Similarity:
    """x -> scale * rotation @ x + translation, for points as rows.

    scale: float (> 0 for a proper similarity); rotation: (3, 3) orthogonal (det +-1);
    translation: (3,) in the target's unit.
    """

    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """points: (N, 3) float -> (N, 3) float64 transformed points."""
        return self.scale * _times_transpose(points, self.rotation) + self.translation

    def inverse_apply(self, points: np.ndarray) -> np.ndarray:
        """The inverse map: (N, 3) float -> (N, 3) float64 (needs scale != 0)."""
        return _times_transpose(np.asarray(points, dtype=np.float64) - self.translation,
                                self.rotation.T) / self.scale

    def then(self, outer: "Similarity") -> "Similarity":
        """The similarity that applies ``self`` first, then ``outer``."""
        return Similarity(outer.scale * self.scale, outer.rotation @ self.rotation,
                          outer.scale * outer.rotation @ self.translation + outer.translation)


def _times_transpose(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """points @ matrix.T for (N, 3) points and a (3, 3) matrix, through einsum: BLAS
    threads on such thin products are 30x slower when the cores are busy (measured)."""
    return np.einsum("ij,nj->ni", matrix, np.asarray(points, dtype=np.float64))


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return points


def procrustes(target: np.ndarray, source: np.ndarray, scaling: bool = True,
               reflection: str | bool = "best") -> tuple[Similarity, float]:
    """Least-squares similarity mapping ``source`` points onto ``target`` points.

    The semantics of MATLAB's ``procrustes(X=target, Y=source)``, which the NoW code ports:
    with ``reflection="best"`` the orthogonal part is whatever the SVD gives, a reflection
    included when it fits better; ``True`` forces one, ``False`` forbids one (Umeyama).

    Args:
        target, source: (N, 3) float64 corresponding points, N >= 3, any unit each.
        scaling: fit the scale (else scale 1).
        reflection: "best", True or False.
    Returns:
        (similarity mapping source -> target, d) with d MATLAB's standardised residual
        sum of squares (0 for a perfect fit).
    """
    target, source = _check_points(target, "target points"), _check_points(source, "source points")
    if target.shape != source.shape or len(target) < 3:
        raise ValueError(f"procrustes needs two (N, 3) point sets with N >= 3, got "
                         f"{target.shape} and {source.shape}")
    if reflection not in ("best", True, False):
        raise ValueError(f"reflection must be 'best', True or False, got {reflection!r}")
    mean_t, mean_s = target.mean(axis=0), source.mean(axis=0)
    centred_t, centred_s = target - mean_t, source - mean_s
    norm_t, norm_s = np.linalg.norm(centred_t), np.linalg.norm(centred_s)
    if norm_t == 0.0 or norm_s == 0.0:
        raise ValueError("procrustes: a point set has all its points at one location")
    centred_t, centred_s = centred_t / norm_t, centred_s / norm_s
    u, singular, vt = np.linalg.svd(centred_t.T @ centred_s)
    v = vt.T
    row_map = v @ u.T  # maps rows: centred_s @ row_map ~ centred_t
    if reflection != "best" and (np.linalg.det(row_map) < 0) != reflection:
        v[:, -1] *= -1.0
        singular = singular.copy()
        singular[-1] *= -1.0
        row_map = v @ u.T
    trace = singular.sum()
    if scaling:
        scale = trace * norm_t / norm_s
        residual = 1.0 - trace ** 2
    else:
        scale = 1.0
        residual = 1.0 + (norm_s / norm_t) ** 2 - 2.0 * trace * norm_s / norm_t
    translation = mean_t - scale * mean_s @ row_map
    return Similarity(float(scale), row_map.T.copy(), translation), float(residual)


def rodrigues(r: np.ndarray) -> np.ndarray:
    """Axis-angle (3,) float64, radians -> (3, 3) rotation matrix."""
    r = np.asarray(r, dtype=np.float64)
    theta = np.linalg.norm(r)
    k = _skew(r)
    if theta < 1e-12:
        return np.eye(3) + k  # first order; exact enough below 1e-12 rad
    return (np.eye(3) + np.sin(theta) / theta * k
            + (1.0 - np.cos(theta)) / theta ** 2 * k @ k)


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def rotation_derivatives(r: np.ndarray) -> np.ndarray:
    """dR/dr_k of the axis-angle rotation R(r).

    Args:
        r: (3,) float64 axis-angle, radians.
    Returns:
        (3, 3, 3) float64, [k] = dR/dr_k. Gallego & Yezzi (2015):
        dR/dr_k = (r_k [r]x + [r x (I - R) e_k]x) R / |r|^2, and [e_k]x at r = 0.
    """
    r = np.asarray(r, dtype=np.float64)
    theta_sq = float(r @ r)
    if theta_sq < 1e-20:
        return np.stack([_skew(axis) for axis in np.eye(3)])
    rotation = rodrigues(r)
    return np.stack([(r[k] * _skew(r) + _skew(np.cross(r, (np.eye(3) - rotation)[:, k])))
                     @ rotation / theta_sq for k in range(3)])


def rotated_point_jacobian(r: np.ndarray, points: np.ndarray) -> np.ndarray:
    """d(R(r) @ q)/dr for each point q.

    Args:
        r: (3,) axis-angle, radians; points: (N, 3) float64.
    Returns:
        (N, 3, 3) float64, [n, i, k] = d(R q_n)_i / d r_k.
    """
    points = np.asarray(points, dtype=np.float64)
    return np.stack([points @ d.T for d in rotation_derivatives(r)], axis=2)


@dataclass
class RefineConfig:
    """Solver settings for ``refine_to_surface``.

    The official NoW code runs chumpy's dogleg and stops at a relative objective
    improvement below 1e-4; MINPACK's Levenberg-Marquardt here stops at a relative
    reduction below ``ftol`` = 1e-6, nearer the local minimum both approach from the same
    start. On synthetic faces, stopping at 1e-4 instead of 1e-10 moved the per-image
    median by 2e-5 mm and the mean by 2e-6 mm; against chumpy's dogleg itself see
    ``benchmarks/results/eval_speed.md`` (per-image differences below 1e-3 mm).
    """

    fit_scale: bool = True
    ftol: float = 1e-6
    xtol: float = 1e-8
    gtol: float = 1e-10
    max_evaluations: int = 200


@dataclass
class RefineResult:
    """transform: the similarity found (apply it to the mesh); evaluations: distance
    queries spent; cost: final sum of squared distances (points' unit squared);
    distances: (N,) float64, each point's distance to the mesh moved by ``transform``."""

    transform: Similarity
    evaluations: int
    cost: float
    distances: np.ndarray


class _ScanToMeshObjective:
    """Residuals d_i = distance from scan point i to the mesh moved by s R(r) x + t.

    The mesh index stays fixed: a similarity with s > 0 scales all distances by s, so
    the distance to the moved mesh is s times the distance of the inversely moved point.
    The Jacobian holds the closest point's barycentric weights fixed (its derivative is
    the partial one, as for any minimum over a set: Danskin's theorem).
    """

    def __init__(self, points: np.ndarray, index: TriangleMeshIndex, fit_scale: bool) -> None:
        self.points, self.index, self.fit_scale = points, index, fit_scale
        self._cache_key: bytes | None = None
        self._hint: np.ndarray | None = None  # the last closest triangles: steps are small
        self.evaluations = 0

    def unpack(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        if self.fit_scale:
            return float(x[0]), x[1:4], x[4:7]
        return 1.0, x[0:3], x[3:6]

    def _evaluate(self, x: np.ndarray) -> None:
        key = x.tobytes()
        if key == self._cache_key:
            return
        scale, r, t = self.unpack(x)
        rotation = rodrigues(r)
        magnitude = max(abs(scale), 1e-12)
        signed = magnitude if scale >= 0 else -magnitude  # s < 0 is a point reflection
        local = _times_transpose(self.points - t, rotation.T) / signed
        closest = self.index.query(local, hint=self._hint)
        self._hint = closest.triangle_ids
        self.evaluations += 1
        distances = magnitude * closest.distances
        rotated = _times_transpose(closest.points, rotation)
        offset = self.points - (scale * rotated + t)
        # Where a scan point lies on the surface the unsigned distance has no gradient;
        # a zero row keeps the solver finite (the official code divides by zero there).
        safe = distances > 1e-12
        normal = np.zeros_like(offset)
        normal[safe] = offset[safe] / distances[safe, None]
        # n . (dR/dr_k q) for k = 0, 1, 2.
        jac_r = -scale * np.einsum("ni,kij,nj->nk", normal, rotation_derivatives(r),
                                   closest.points)
        jac_t = -normal
        blocks = [jac_r, jac_t]
        if self.fit_scale:
            blocks.insert(0, -np.einsum("ni,ni->n", normal, rotated)[:, None])
        self._residuals = distances
        self._jacobian = np.hstack(blocks)
        self._cache_key = key

    def distances(self, x: np.ndarray) -> np.ndarray:
        self._evaluate(x)
        return self._residuals

    def residuals(self, x: np.ndarray) -> np.ndarray:
        self._evaluate(x)
        if not self.fit_scale:
            return self._residuals
        penalty = NOW_SCALE_PENALTY * (abs(x[0]) - x[0])
        return np.append(self._residuals, penalty)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        self._evaluate(x)
        if not self.fit_scale:
            return self._jacobian
        penalty_row = np.zeros((1, self._jacobian.shape[1]))
        penalty_row[0, 0] = NOW_SCALE_PENALTY * (np.sign(x[0]) - 1.0)
        return np.vstack([self._jacobian, penalty_row])


def refine_to_surface(points: np.ndarray, index: TriangleMeshIndex,
                      config: RefineConfig | None = None) -> RefineResult:
    """Find s, R(r), t minimising sum_i dist(points_i, s R mesh + t)^2 (NoW step 3).

    Args:
        points: (N, 3) float64 scan points (the cropped scan's vertices), mm.
        index: the mesh (already Procrustes-aligned to the scan), same unit and frame.
        config: ``fit_scale=False`` gives the metrical variant (rotation and translation).
    Returns:
        RefineResult; apply ``result.transform`` to the mesh vertices.
    Starts from s = 1, r = 0, t = 0 as the official code does.
    """
    config = config or RefineConfig()
    points = _check_points(points, "scan points")
    objective = _ScanToMeshObjective(points, index, config.fit_scale)
    start = np.zeros(7 if config.fit_scale else 6)
    if config.fit_scale:
        start[0] = 1.0
    solution = least_squares(objective.residuals, start, jac=objective.jacobian, method="lm",
                             ftol=config.ftol, xtol=config.xtol, gtol=config.gtol,
                             max_nfev=config.max_evaluations)
    scale, r, t = objective.unpack(solution.x)
    transform = Similarity(scale, rodrigues(r), np.array(t, dtype=np.float64))
    distances = objective.distances(solution.x)  # cached when the last trial was accepted
    return RefineResult(transform, objective.evaluations, float(2.0 * solution.cost), distances)


@dataclass
class IcpConfig:
    """Scaled ICP settings. ``point_to_plane`` minimises the distance of each target point
    to the tangent plane of its nearest source vertex; otherwise point-to-point (Umeyama
    per iteration). Stops when the RMSE changes by less than ``tolerance`` (relative)."""

    point_to_plane: bool = True
    fit_scale: bool = True
    max_iterations: int = 60
    tolerance: float = 1e-7


@dataclass
class IcpResult:
    """transform: maps the source (prediction) onto the target points; rmse: final
    point-to-plane (or point-to-point) RMSE in the target's unit; iterations run."""

    transform: Similarity
    rmse: float
    iterations: int


def _plane_fit_step(targets, sources, normals, current: Similarity, fit_scale: bool) -> Similarity:
    """Similarity minimising sum(((t_i - T(q_i)) . R n_i)^2) for fixed correspondences."""

    def unpack(x):
        scale = float(np.exp(x[0])) if fit_scale else current.scale
        offset = 1 if fit_scale else 0
        return scale, rodrigues(x[offset:offset + 3]) @ current.rotation, x[offset + 3:offset + 6]

    def residuals(x):
        scale, rotation, t = unpack(x)
        moved = scale * _times_transpose(sources, rotation) + t
        return np.einsum("ij,ij->i", targets - moved, _times_transpose(normals, rotation))

    start = np.concatenate([[np.log(current.scale)] if fit_scale else [], np.zeros(3),
                            current.translation])
    solution = least_squares(residuals, start, method="lm", xtol=1e-12, ftol=1e-12)
    scale, rotation, t = unpack(solution.x)
    return Similarity(scale, rotation, np.asarray(t, dtype=np.float64))


def icp_similarity(source_vertices: np.ndarray, source_faces: np.ndarray, targets: np.ndarray,
                   init: Similarity | None = None, config: IcpConfig | None = None) -> IcpResult:
    """Rigid ICP with one isotropic scale, moving a source mesh onto target points.

    Args:
        source_vertices: (V, 3) float64 prediction vertices, any unit.
        source_faces: (F, 3) int, 0-based (for vertex normals).
        targets: (N, 3) float64 ground-truth points, mm.
        init: starting similarity (e.g. from landmarks); identity when None.
        config: IcpConfig.
    Returns:
        IcpResult. Correspondence: for each target point, the nearest source vertex
        (the nearest vertex is the same before and after a similarity, so the KD-tree is
        built once on the untransformed source).
    """
    config = config or IcpConfig()
    source = _check_points(source_vertices, "source vertices")
    targets = _check_points(targets, "target points")
    used = np.unique(np.asarray(source_faces, dtype=np.int64))
    normals = vertex_normals(source, source_faces)[used]
    source = source[used]
    tree = cKDTree(source)
    transform = init or Similarity()
    previous = np.inf
    rmse = np.inf
    iterations = 0
    for iterations in range(1, config.max_iterations + 1):
        _, nearest = tree.query(transform.inverse_apply(targets))
        matched, matched_normals = source[nearest], normals[nearest]
        if config.point_to_plane:
            transform = _plane_fit_step(targets, matched, matched_normals, transform,
                                        config.fit_scale)
        else:
            transform, _ = procrustes(targets, matched, scaling=config.fit_scale, reflection=False)
        rmse = _rmse(targets, transform, matched, matched_normals, config.point_to_plane)
        if abs(previous - rmse) <= config.tolerance * max(rmse, 1e-12):
            break
        previous = rmse
    return IcpResult(transform, float(rmse), iterations)


def _rmse(targets, transform, matched, normals, point_to_plane: bool) -> float:
    moved = transform.apply(matched)
    if point_to_plane:
        error = np.einsum("ij,ij->i", targets - moved, _times_transpose(normals, transform.rotation))
    else:
        error = np.linalg.norm(targets - moved, axis=1)
    return float(np.sqrt(np.mean(error ** 2)))

"""Exact point-to-triangle-mesh distances with a spatial index.

Every function here takes plain numpy arrays: points ``(N, 3)`` float64 in any length unit
(the protocols use millimetres), triangle meshes as ``vertices (V, 3)`` float64 plus
``faces (F, 3)`` int (0-based vertex ids). Results are in the points' unit.

Two backends find, for each query point, the triangle that holds its closest surface point:

- ``"open3d"``: open3d's ``RaycastingScene`` (a BVH, float32 internally). The winning
  triangle is then re-solved exactly in float64, so only near-ties between triangles whose
  distances differ by float32 rounding can differ from an exact search.
- ``"scipy"``: KD-trees over triangle centroids. For a query point ``p`` whose ``k`` nearest
  centroids are examined, every triangle left out has its centroid at least ``D_k`` away
  and all its points within ``R`` of its centroid, so its distance is at least ``D_k - R``.
  When the best examined distance is ``<= D_k - R`` the answer is provably exact; otherwise
  ``k`` doubles for that point. Triangles are grouped by size (classes a factor 1.25 apart,
  one tree each) so that a few large triangles do not inflate ``R`` for all.

``"auto"`` takes open3d when it is installed (the optional extra ``faceset[open3d]``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

BACKENDS = ("auto", "open3d", "scipy")
CLASS_RATIO = 1.25  # size ratio between the scipy backend's triangle classes


@dataclass
class ClosestPoints:
    """The closest surface point of each query point.

    distances: (N,) float64, unsigned Euclidean distance, the points' unit.
    points: (N, 3) float64, the closest point on the mesh surface.
    triangle_ids: (N,) int64, the triangle (row of ``faces``) holding that point.
    barycentrics: (N, 3) float64, weights of the triangle's three vertices (sum to 1).
    """

    distances: np.ndarray
    points: np.ndarray
    triangle_ids: np.ndarray
    barycentrics: np.ndarray


def _closest_on_segments(points: np.ndarray, start: np.ndarray, end: np.ndarray):
    """Closest points on segments [start, end]; returns (closest (N,3), parameter t (N,))."""
    direction = end - start
    length_sq = np.einsum("ij,ij->i", direction, direction)
    safe = np.where(length_sq > 0.0, length_sq, 1.0)  # a zero-length edge is its start point
    t = np.einsum("ij,ij->i", points - start, direction) / safe
    t = np.clip(np.where(length_sq > 0.0, t, 0.0), 0.0, 1.0)
    return start + t[:, None] * direction, t


def closest_points_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray,
                                c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact closest point on each triangle (a_i, b_i, c_i) to each point p_i.

    Args:
        points, a, b, c: (N, 3) float64, any unit; row i is one point-triangle pair.
    Returns:
        closest: (N, 3) float64, the closest point of triangle i to point i.
        barycentrics: (N, 3) float64, its weights on (a, b, c).

    The closest point is either the orthogonal projection (when it falls inside the
    triangle) or lies on the boundary, so the minimum over the three edges covers every
    other case, including degenerate (zero-area) triangles.
    """
    points, a, b, c = (np.asarray(x, dtype=np.float64) for x in (points, a, b, c))
    ab, ac = b - a, c - a
    normal = np.cross(ab, ac)
    area_sq = np.einsum("ij,ij->i", normal, normal)
    scale_sq = np.maximum(np.einsum("ij,ij->i", ab, ab), np.einsum("ij,ij->i", ac, ac))
    proper = area_sq > 1e-24 * np.maximum(scale_sq, 1e-300) ** 2
    safe_area = np.where(proper, area_sq, 1.0)
    ap = points - a
    # Barycentric coordinates of the projection, from sub-triangle areas.
    w_b = np.einsum("ij,ij->i", np.cross(ap, ac), normal) / safe_area
    w_c = np.einsum("ij,ij->i", np.cross(ab, ap), normal) / safe_area
    w_a = 1.0 - w_b - w_c
    inside = proper & (w_a >= 0.0) & (w_b >= 0.0) & (w_c >= 0.0)

    closest = np.empty_like(points)
    bary = np.zeros_like(points)
    closest[inside] = (w_a[inside, None] * a[inside] + w_b[inside, None] * b[inside]
                       + w_c[inside, None] * c[inside])
    bary[inside] = np.stack([w_a[inside], w_b[inside], w_c[inside]], axis=1)

    outside = ~inside
    if np.any(outside):
        p, pa, pb, pc = points[outside], a[outside], b[outside], c[outside]
        best_point, best_bary = _closest_on_boundary(p, pa, pb, pc)
        closest[outside] = best_point
        bary[outside] = best_bary
    return closest, bary


def _closest_on_boundary(p, a, b, c):
    """Closest point on the three edges of each triangle, with barycentric weights."""
    edges = ((a, b, 0, 1), (b, c, 1, 2), (c, a, 2, 0))
    best_dist = np.full(len(p), np.inf)
    best_point = np.zeros_like(p)
    best_bary = np.zeros_like(p)
    for start, end, i_start, i_end in edges:
        point, t = _closest_on_segments(p, start, end)
        dist = np.einsum("ij,ij->i", p - point, p - point)
        better = dist < best_dist
        best_dist[better] = dist[better]
        best_point[better] = point[better]
        weights = np.zeros((better.sum(), 3))
        weights[:, i_start] = 1.0 - t[better]
        weights[:, i_end] = t[better]
        best_bary[better] = weights
    return best_point, best_bary


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ValueError(f"mesh vertices must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"mesh faces must have shape (F, 3) with F > 0, got {faces.shape}")
    faces = faces.astype(np.int64)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"mesh faces index vertices outside 0..{len(vertices) - 1}")
    if not np.all(np.isfinite(vertices)):
        raise ValueError("mesh vertices contain NaN or infinite values")
    return vertices, faces


def open3d_available() -> bool:
    """True when open3d (the optional ``faceset[open3d]`` extra) can be imported."""
    return importlib.util.find_spec("open3d") is not None


class TriangleMeshIndex:
    """A spatial index over one triangle mesh for exact closest-point queries.

    Build once per mesh, query many times (the NoW refinement queries the same predicted
    mesh with moved scan points on every solver step).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, backend: str = "auto") -> None:
        """vertices: (V, 3) float, any unit; faces: (F, 3) int, 0-based; backend: one of
        ``BACKENDS``."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown distance backend {backend!r}; choose one of {BACKENDS}")
        self.vertices, self.faces = _check_mesh(vertices, faces)
        if backend == "auto":
            backend = "open3d" if open3d_available() else "scipy"
        if backend == "open3d" and not open3d_available():
            raise ValueError("distance backend 'open3d' asked for but open3d is not installed "
                             "(pip install 'faceset[open3d]')")
        self.backend = backend
        self._corners = self.vertices[self.faces]  # (F, 3, 3)
        if backend == "open3d":
            self._build_open3d()
        else:
            self._build_kdtree()

    # ---- open3d -------------------------------------------------------------------------
    def _build_open3d(self) -> None:
        import open3d as o3d

        # float32 loses precision far from the origin, so the BVH works in centred coordinates.
        self._origin = 0.5 * (self.vertices.min(axis=0) + self.vertices.max(axis=0))
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(
            o3d.core.Tensor((self.vertices - self._origin).astype(np.float32)),
            o3d.core.Tensor(self.faces.astype(np.uint32)))
        self._scene = scene

    def _candidates_open3d(self, points: np.ndarray) -> np.ndarray:
        import open3d as o3d

        query = o3d.core.Tensor((points - self._origin).astype(np.float32))
        result = self._scene.compute_closest_points(query)
        return result["primitive_ids"].numpy().astype(np.int64)

    # ---- scipy --------------------------------------------------------------------------
    def _build_kdtree(self) -> None:
        from scipy.spatial import cKDTree

        centroids = self._corners.mean(axis=1)
        radii = np.linalg.norm(self._corners - centroids[:, None, :], axis=2).max(axis=1)
        # Triangles are grouped by size (radius classes CLASS_RATIO apart), one KD-tree
        # each, so the bound D_k - R of a class uses that class's own R.
        smallest = max(float(radii.min()), 1e-12 * max(float(radii.max()), 1e-300))
        ratio = np.log(np.maximum(radii, smallest) / smallest) / np.log(CLASS_RATIO)
        classes = np.floor(ratio).astype(np.int64)
        self._classes = []
        for value in np.unique(classes):
            members = np.flatnonzero(classes == value)
            self._classes.append((members, float(radii[members].max()),
                                  cKDTree(centroids[members])))

    def _best_among(self, points: np.ndarray, candidates: np.ndarray):
        """Best of candidate triangles (N, K) for each point: (distance (N,), id (N,))."""
        n, k = candidates.shape
        corners = self._corners[candidates.ravel()]
        repeated = np.repeat(points, k, axis=0)
        closest, _ = closest_points_on_triangles(repeated, corners[:, 0], corners[:, 1],
                                                 corners[:, 2])
        dist = np.linalg.norm(repeated - closest, axis=1).reshape(n, k)
        pick = dist.argmin(axis=1)
        rows = np.arange(n)
        return dist[rows, pick], candidates[rows, pick]

    def _candidates_scipy(self, points: np.ndarray, hint: np.ndarray | None) -> np.ndarray:
        n = len(points)
        best_dist = np.full(n, np.inf)
        best_id = np.zeros(n, dtype=np.int64)
        if hint is not None:  # a good guess tightens the bound, so fewer rounds are needed
            best_dist, best_id = self._best_among(points, hint[:, None])
        for members, radius, tree in self._classes:
            # Points already closer than this class's nearest centroid minus R skip it.
            nearest_gap, _ = tree.query(points, k=1)
            pending = np.flatnonzero(best_dist > nearest_gap - radius)
            done_k, k = 0, min(4, len(members))
            while len(pending):
                gap, index = tree.query(points[pending], k=k)
                gap, index = gap.reshape(len(pending), k), index.reshape(len(pending), k)
                # Only the neighbours not examined in the previous round are new.
                fresh = members[index[:, done_k:]]
                dist, tri = self._best_among(points[pending], fresh)
                better = dist < best_dist[pending]
                best_dist[pending[better]] = dist[better]
                best_id[pending[better]] = tri[better]
                # Every unexamined triangle of this class is at least (k-th gap - R) away.
                proven = (best_dist[pending] <= gap[:, -1] - radius) | (k == len(members))
                pending = pending[~proven]
                done_k, k = k, min(2 * k, len(members))
        return best_id

    # ---- public -------------------------------------------------------------------------
    def query(self, points: np.ndarray, chunk: int = 200_000,
              hint: np.ndarray | None = None) -> ClosestPoints:
        """Closest surface point of each query point.

        Args:
            points: (N, 3) float, same unit and frame as the mesh.
            chunk: points per batch (bounds the memory of the scipy backend).
            hint: optional (N,) int triangle ids likely to be closest (e.g. from the
                previous solver step); the scipy backend starts its bound from them.
                The answer is exact either way.
        Returns:
            ClosestPoints with (N,) distances, (N, 3) points, (N,) triangle ids and (N, 3)
            barycentric weights, all float64 / int64.
        """
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"query points must have shape (N, 3), got {points.shape}")
        if len(points) == 0:
            return ClosestPoints(np.zeros(0), np.zeros((0, 3)), np.zeros(0, np.int64),
                                 np.zeros((0, 3)))
        if hint is not None:
            hint = np.asarray(hint, dtype=np.int64)
            if hint.shape != (len(points),) or hint.min() < 0 or hint.max() >= len(self.faces):
                raise ValueError(f"hint must be (N,) triangle ids, got shape {hint.shape}")
        parts = np.array_split(np.arange(len(points)), max(1, -(-len(points) // chunk)))
        ids = np.concatenate([
            self._candidates_open3d(points[part]) if self.backend == "open3d"
            else self._candidates_scipy(points[part], None if hint is None else hint[part])
            for part in parts])
        corners = self._corners[ids]
        closest, bary = closest_points_on_triangles(points, corners[:, 0], corners[:, 1],
                                                    corners[:, 2])
        return ClosestPoints(np.linalg.norm(points - closest, axis=1), closest, ids, bary)


def point_to_mesh_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                           backend: str = "auto") -> np.ndarray:
    """Unsigned distance from each point to the nearest point on a triangle mesh.

    Args:
        points: (N, 3) float, any unit.
        vertices: (V, 3) float, same unit and frame; faces: (F, 3) int, 0-based.
        backend: "auto", "open3d" or "scipy" (see the module docstring).
    Returns:
        (N,) float64 distances in the points' unit.
    """
    return TriangleMeshIndex(vertices, faces, backend).query(points).distances


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals.

    Args:
        vertices: (V, 3) float; faces: (F, 3) int, 0-based, counter-clockwise = outward.
    Returns:
        (V, 3) float64 unit normals; a vertex in no proper triangle gets (0, 0, 0).
    """
    vertices, faces = _check_mesh(vertices, faces)
    corners = vertices[faces]
    # The cross product's length is twice the area: summing it weights by area.
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def point_to_plane_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                            normals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Point-to-plane distance: for each point, |(p - q) . n_q| with q its nearest mesh
    vertex and n_q that vertex's unit normal (the tangent plane of the mesh at q).

    Args:
        points: (N, 3) float, any unit; vertices (V, 3) float, same unit and frame;
        faces: (F, 3) int, 0-based; normals: optional (V, 3) unit vertex normals.
    Returns:
        distances: (N,) float64, the points' unit; nearest: (N,) int64 vertex ids.
    """
    from scipy.spatial import cKDTree

    vertices, faces = _check_mesh(vertices, faces)
    if normals is None:
        normals = vertex_normals(vertices, faces)
    points = np.asarray(points, dtype=np.float64)
    used = np.unique(faces)  # vertices in no triangle have no tangent plane
    _, pick = cKDTree(vertices[used]).query(points)
    nearest = used[pick]
    offset = points - vertices[nearest]
    return np.abs(np.einsum("ij,ij->i", offset, normals[nearest])), nearest.astype(np.int64)

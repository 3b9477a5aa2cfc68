"""Point-to-triangle distances: brute force, analytic answers, backend agreement."""

import numpy as np
import pytest
from scipy.optimize import minimize

from evaluation.distance import (TriangleMeshIndex, closest_points_on_triangles,
                                 open3d_available, point_to_mesh_distance,
                                 point_to_plane_distance, vertex_normals)
from evaluation.synthetic import face_mesh, grid_faces

BACKENDS = ["scipy"] + (["open3d"] if open3d_available() else [])


def brute_force_distance(p, a, b, c, samples=120):
    """Minimum over a dense barycentric grid, polished by a constrained minimiser."""
    u, v = np.meshgrid(np.linspace(0, 1, samples + 1), np.linspace(0, 1, samples + 1))
    keep = u + v <= 1.0
    u, v = u[keep], v[keep]
    points = a + u[:, None] * (b - a) + v[:, None] * (c - a)
    dist = np.linalg.norm(points - p, axis=1)
    start = np.array([u[dist.argmin()], v[dist.argmin()]])

    def objective(x):
        return np.sum((a + x[0] * (b - a) + x[1] * (c - a) - p) ** 2)

    result = minimize(objective, start, method="SLSQP", bounds=[(0, 1), (0, 1)],
                      constraints=[{"type": "ineq", "fun": lambda x: 1 - x[0] - x[1]}],
                      options={"ftol": 1e-16, "maxiter": 200})
    return min(dist.min(), np.sqrt(objective(result.x)))


def test_closest_point_matches_brute_force_on_random_triangles():
    rng = np.random.default_rng(0)
    n = 60
    a, b, c = (rng.normal(size=(n, 3)) for _ in range(3))
    # Points near and far, so vertex, edge and face regions all occur.
    p = (a + b + c) / 3 + rng.normal(scale=rng.choice([0.1, 1.0, 3.0], size=(n, 1)), size=(n, 3))
    closest, bary = closest_points_on_triangles(p, a, b, c)
    exact = np.linalg.norm(p - closest, axis=1)
    reference = np.array([brute_force_distance(*row) for row in zip(p, a, b, c)])
    assert np.all(exact <= reference + 1e-9)  # never worse than any surface point
    np.testing.assert_allclose(exact, reference, atol=1e-6)
    # The barycentric weights reproduce the closest point and lie in the triangle.
    np.testing.assert_allclose(bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c, closest,
                               atol=1e-12)
    assert np.all(bary >= -1e-12) and np.allclose(bary.sum(axis=1), 1.0)


def test_vertex_edge_face_regions_analytic():
    a, b, c = np.array([0.0, 0, 0]), np.array([4.0, 0, 0]), np.array([0.0, 4, 0])
    cases = {  # point: (closest point, region)
        (1.0, 1.0, 2.5): (1.0, 1.0, 0.0),     # face: straight below
        (2.0, -3.0, 4.0): (2.0, 0.0, 0.0),    # edge ab
        (3.0, 3.0, -1.0): (2.0, 2.0, 0.0),    # edge bc (hypotenuse)
        (-2.0, -1.0, 1.0): (0.0, 0.0, 0.0),   # vertex a
        (7.0, -1.0, 0.0): (4.0, 0.0, 0.0),    # vertex b
    }
    points = np.array(list(cases))
    expected = np.array(list(cases.values()))
    n = len(points)
    closest, _ = closest_points_on_triangles(points, np.tile(a, (n, 1)), np.tile(b, (n, 1)),
                                             np.tile(c, (n, 1)))
    np.testing.assert_allclose(closest, expected, atol=1e-12)


def test_degenerate_triangle_is_a_segment():
    p = np.array([[1.0, 1.0, 0.0]])
    a, b = np.array([[0.0, 0, 0]]), np.array([[2.0, 0, 0]])
    closest, _ = closest_points_on_triangles(p, a, b, (a + b) / 2)  # collinear corners
    np.testing.assert_allclose(closest, [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_plane_against_parallel_plane_is_exactly_two_mm(backend):
    axis = np.linspace(-50, 50, 21)
    x, y = np.meshgrid(axis, axis)
    plane = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    inner = np.abs(plane[:, :2]).max(axis=1) <= 40  # away from the border
    distances = point_to_mesh_distance(plane[inner] + [0, 0, 2.0], plane, grid_faces(21, 21),
                                       backend)
    np.testing.assert_allclose(distances, 2.0, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sphere_against_larger_sphere_gives_the_radius_gap(backend):
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=80.0)
    gap = 3.0
    # For a polyhedron inscribed in a sphere, the radial push of a vertex projects back
    # onto that vertex exactly (v . (w - v) <= 0 for every other vertex w).
    outer = sphere.vertices * (80.0 + gap) / 80.0
    distances = point_to_mesh_distance(outer, sphere.vertices, sphere.faces, backend)
    np.testing.assert_allclose(distances, gap, atol=1e-9)


@pytest.mark.skipif(not open3d_available(), reason="open3d not installed")
def test_backends_agree_on_a_face_mesh():
    rng = np.random.default_rng(3)
    mesh = face_mesh(70, ripple_mm=1.5)
    points = mesh.vertices[rng.choice(len(mesh.vertices), 3000)] + rng.normal(scale=2.0,
                                                                               size=(3000, 3))
    fast = TriangleMeshIndex(mesh.vertices, mesh.faces, "open3d").query(points)
    exact = TriangleMeshIndex(mesh.vertices, mesh.faces, "scipy").query(points)
    np.testing.assert_allclose(fast.distances, exact.distances, atol=1e-5)


def test_scipy_backend_is_exact_against_exhaustive_search():
    rng = np.random.default_rng(4)
    mesh = face_mesh(25, ripple_mm=2.0)
    # A few huge triangles stress the size classes.
    faces = np.vstack([mesh.faces, [[0, 24, 624]]])
    points = rng.uniform(-120, 120, size=(200, 3)) * [1, 1, 0.5] + [0, 0, 40]
    fast = TriangleMeshIndex(mesh.vertices, faces, "scipy").query(points)
    corners = mesh.vertices[faces]
    n, f = len(points), len(faces)
    closest, _ = closest_points_on_triangles(np.repeat(points, f, axis=0),
                                             np.tile(corners[:, 0], (n, 1)),
                                             np.tile(corners[:, 1], (n, 1)),
                                             np.tile(corners[:, 2], (n, 1)))
    exhaustive = np.linalg.norm(np.repeat(points, f, axis=0) - closest, axis=1).reshape(n, f)
    np.testing.assert_allclose(fast.distances, exhaustive.min(axis=1), atol=1e-10)


def test_point_to_plane_distance_on_a_plane():
    axis = np.linspace(-10, 10, 11)
    x, y = np.meshgrid(axis, axis)
    plane = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    faces = grid_faces(11, 11)
    normals = vertex_normals(plane, faces)
    np.testing.assert_allclose(normals, np.tile([0, 0, 1.0], (len(plane), 1)), atol=1e-12)
    points = np.array([[0.3, -0.2, 1.5], [5.1, 5.2, -0.7]])
    distances, _ = point_to_plane_distance(points, plane, faces)
    np.testing.assert_allclose(distances, [1.5, 0.7], atol=1e-12)


def test_bad_mesh_is_a_clear_error():
    with pytest.raises(ValueError, match="faces index vertices"):
        TriangleMeshIndex(np.zeros((3, 3)), np.array([[0, 1, 5]]), "scipy")
    with pytest.raises(ValueError, match="unknown distance backend"):
        TriangleMeshIndex(np.eye(3), np.array([[0, 1, 2]]), "embree")


def test_hint_never_changes_the_answer():
    rng = np.random.default_rng(5)
    mesh = face_mesh(40, ripple_mm=1.0)
    points = rng.uniform(-100, 100, size=(500, 3)) * [1, 1, 0.3] + [0, 0, 40]
    index = TriangleMeshIndex(mesh.vertices, mesh.faces, "scipy")
    plain = index.query(points)
    wrong_hint = index.query(points, hint=rng.integers(0, len(mesh.faces), len(points)))
    np.testing.assert_array_equal(plain.distances, wrong_hint.distances)
    with pytest.raises(ValueError, match="hint"):
        index.query(points, hint=np.zeros(3, dtype=int))

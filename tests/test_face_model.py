"""Face model maths against known values and direct evaluations (SPEC 3)."""

import math

import pytest
import torch

from recon import constants as C
from recon.face_model import (FaceModel, front_triangle_flags, rotation_derivatives, rotation_matrix,
                               sh_basis, shade, vertex_normals)
from recon.types import Camera, Coeffs


def test_rotation_known_values():
    r = rotation_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]]))[0]
    torch.testing.assert_close(r @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6, rtol=0)
    r = rotation_matrix(torch.tensor([[0.0, math.pi / 2, 0.0]]))[0]
    torch.testing.assert_close(r @ torch.tensor([0.0, 0, 1]), torch.tensor([1.0, 0, 0]), atol=1e-6, rtol=0)
    r = rotation_matrix(torch.tensor([[math.pi / 2, 0.0, 0.0]]))[0]
    torch.testing.assert_close(r @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0, 1]), atol=1e-6, rtol=0)


def test_rotation_order_is_z_y_x():
    angles = torch.tensor([[0.3, -0.7, 1.1]])
    single = [rotation_matrix(torch.tensor([[a if i == k else 0.0 for i in range(3)]]))[0]
              for k, a in enumerate(angles[0].tolist())]
    torch.testing.assert_close(rotation_matrix(angles)[0], single[2] @ single[1] @ single[0])


def test_rotation_derivatives_match_finite_differences():
    angles = torch.tensor([[0.3, -0.7, 1.1], [-1.2, 0.4, 0.2]], dtype=torch.float64)
    analytic = rotation_derivatives(angles)
    for k in range(3):
        step = torch.zeros_like(angles)
        step[:, k] = 1e-6
        numeric = (rotation_matrix(angles + step) - rotation_matrix(angles - step)) / 2e-6
        torch.testing.assert_close(analytic[..., k], numeric, atol=1e-8, rtol=0)


def test_projection_known_values():
    cam = Camera()
    # a point 1 dm right and 0.5 dm up of the origin, world z = 0 -> depth 10
    cam_pts = cam.to_camera_space(torch.tensor([[1.0, 0.5, 0.0]]))
    assert cam_pts[0, 2] == 10.0
    u, v = cam.project(cam_pts)[0].tolist()
    assert u == pytest.approx(112 + 101.5) and v == pytest.approx(223 - (112 + 50.75))


def test_intrinsics_round_trip():
    cam = Camera.from_intrinsics([[800.0, 0, 300], [0, 810, 200], [0, 0, 1]], 640, 480)
    torch.testing.assert_close(cam.intrinsics(), torch.tensor(
        [[800.0, 0, 300], [0, 810, 200], [0, 0, 1]], dtype=torch.float64))


def test_sh_basis_matches_table():
    n = torch.nn.functional.normalize(torch.randn(20, 3), dim=-1)
    x, y, z = n.unbind(-1)
    table = torch.stack([torch.full_like(x, 0.886227), -1.772454 * y, 1.772454 * z, -1.772454 * x,
                         2.427032 * x * y, -2.427032 * y * z, 0.700624 * (3 * z ** 2 - 1),
                         -2.427032 * x * z, 1.213516 * (x ** 2 - y ** 2)], -1)
    torch.testing.assert_close(sh_basis(n), table, atol=2e-6, rtol=1e-5)


def test_ambient_light_gives_0709_of_albedo():
    albedo = torch.rand(1, 7, 3)
    normals = torch.nn.functional.normalize(torch.randn(1, 7, 3), dim=-1)
    lit = shade(albedo, normals, torch.zeros(1, 27))
    torch.testing.assert_close(lit, albedo * 0.8 * 0.886227, atol=1e-6, rtol=1e-5)


def test_shade_is_channel_major():
    gamma = torch.zeros(1, 27)
    gamma[0, 9 + 2] = 0.5            # green channel, the z band
    normals = torch.tensor([[[0.0, 0.0, 1.0]]])
    lit = shade(torch.ones(1, 1, 3), normals, gamma)[0, 0]
    base = 0.8 * C.SH_A[0] * C.SH_C[0]
    torch.testing.assert_close(lit, torch.tensor([base, base + 0.5 * C.SH_A[1] * C.SH_C[1], base]))


def test_vertex_normals_of_a_closed_mesh_point_outwards(octahedron_model):
    model = octahedron_model
    verts = model.mean_shape[:6][None]
    normals = vertex_normals(verts, model.triangles, model.point_buf[:6])
    torch.testing.assert_close(normals, torch.nn.functional.normalize(verts, dim=-1), atol=1e-6, rtol=0)


def test_compute_pose_and_landmarks(octahedron_model):
    fm = FaceModel(octahedron_model, recenter=False)
    coeffs = Coeffs.zeros(2, fm.coeff_sizes)
    coeffs.trans[1] = torch.tensor([0.1, -0.2, 0.5])
    coeffs.angle[1] = torch.tensor([0.1, 0.2, 0.3])
    geo = fm.compute(coeffs)
    lm3d = fm.mean_shape.view(-1, 3)[fm.landmark_ids]
    expected_world = lm3d @ rotation_matrix(coeffs.angle[1:])[0].T + coeffs.trans[1]
    torch.testing.assert_close(geo.world[1, fm.landmark_ids], expected_world)
    z = 10 - expected_world[:, 2]
    u = 1015 * expected_world[:, 0] / z + 112
    v = 223 - (1015 * expected_world[:, 1] / z + 112)
    torch.testing.assert_close(geo.landmarks[1], torch.stack([u, v], -1), rtol=1e-5, atol=1e-3)
    # normals are rotated with the shape
    torch.testing.assert_close(geo.normals[1], geo.normals[0] @ rotation_matrix(coeffs.angle[1:])[0].T,
                               atol=1e-5, rtol=0)


def test_recentering_subtracts_the_centroid(octahedron_model):
    fm = FaceModel(octahedron_model, recenter=True)
    torch.testing.assert_close(fm.mean_shape.view(-1, 3).mean(0), torch.zeros(3), atol=1e-6, rtol=0)


def test_wrong_coefficient_sizes_are_rejected(octahedron_model):
    fm = FaceModel(octahedron_model)
    with pytest.raises(ValueError, match="do not match"):
        fm.compute(Coeffs.zeros(1))


def test_coeffs_vector_round_trip():
    vec = torch.randn(3, 257)
    coeffs = Coeffs.from_vector(vec)
    assert coeffs.id.shape == (3, 80) and coeffs.gamma.shape == (3, 27)
    torch.testing.assert_close(coeffs.to_vector(), vec)
    torch.testing.assert_close(coeffs.angle, vec[:, 224:227])
    sizes = Coeffs.sizes_for(5, 4, 3)
    small = torch.randn(2, 5 + 4 + 3 + 33)
    torch.testing.assert_close(Coeffs.from_vector(small, sizes).to_vector(), small)
    with pytest.raises(ValueError):
        Coeffs.from_vector(torch.randn(2, 256))


def test_front_triangle_flags_mark_the_front_triangles_by_rasterizer_id():
    triangles = torch.tensor([[0, 1, 2], [1, 3, 2], [2, 3, 4], [4, 5, 2]])
    front = torch.tensor([[2, 1, 3], [5, 2, 4]])     # the same triangles, other vertex order
    flags = front_triangle_flags(triangles, front)
    assert flags.tolist() == [False, False, True, False, True]   # index 0 = background

"""The landmark initialiser recovers known pose and shape from synthetic landmarks."""

import math

import numpy as np
import torch

from recon.face_model import FaceModel, rotation_matrix
from recon.landmark_fit import LandmarkFitConfig, estimate_lighting, euler_from_rotation, fit_landmarks
from recon.morphable import MorphableModel, incident_triangles
from recon.types import Coeffs

from test_face_model import tiny_model


def synthetic_batch(fm, seed=0):
    gen = torch.Generator().manual_seed(seed)
    coeffs = Coeffs.zeros(4, fm.coeff_sizes)
    coeffs.id = torch.randn(4, 5, generator=gen) * 0.5
    coeffs.exp = torch.randn(4, 4, generator=gen) * 0.5
    coeffs.angle = torch.tensor([[0.1, 0.3, 0.05], [-0.2, -0.6, 0.0], [0.0, 0.0, 0.0], [0.05, 0.9, -0.1]])
    coeffs.trans = torch.tensor([[0.1, -0.05, 0.3], [0.0, 0.0, -0.5], [0.0, 0.0, 0.0], [0.2, 0.1, 1.0]])
    return coeffs


def test_euler_round_trip():
    angles = torch.tensor([[0.3, -0.7, 1.1], [-1.0, 0.2, -2.5]])
    torch.testing.assert_close(euler_from_rotation(rotation_matrix(angles)), angles)


def test_recovers_pose_and_shape_from_exact_landmarks():
    fm = FaceModel(tiny_model(), recenter=False)
    truth = synthetic_batch(fm)
    target = fm.compute(truth).landmarks
    # weak priors: with exact landmarks the MAP estimate approaches the truth
    fit = fit_landmarks(fm, target, LandmarkFitConfig(sigma_px=0.01, lm_iterations=15))
    torch.testing.assert_close(fit.angle, truth.angle, atol=2e-3, rtol=0)
    torch.testing.assert_close(fit.trans, truth.trans, atol=2e-2, rtol=0)
    torch.testing.assert_close(fit.id, truth.id, atol=0.05, rtol=0)
    residual = (fm.compute(fit).landmarks - target).norm(dim=-1)
    assert residual.max() < 0.05


def test_noisy_landmarks_give_a_plausible_fit():
    fm = FaceModel(tiny_model(), recenter=False)
    truth = synthetic_batch(fm, seed=1)
    target = fm.compute(truth).landmarks + torch.randn(4, 68, 2, generator=torch.Generator().manual_seed(2))
    fit = fit_landmarks(fm, target)
    assert (fit.angle - truth.angle).abs().max() < 0.05
    assert (fm.compute(fit).landmarks - target).norm(dim=-1).mean() < 1.5


def sphere_model(n_lat=40, n_lon=80, radius=0.8) -> MorphableModel:
    lat = torch.linspace(0.05, math.pi - 0.05, n_lat)
    lon = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    verts = radius * torch.stack([la.sin() * lo.sin(), la.cos(), la.sin() * lo.cos()], -1).reshape(-1, 3)
    idx = torch.arange(n_lat * n_lon).view(n_lat, n_lon)
    a, b = idx[:-1], idx[:-1].roll(-1, 1)
    c, d = idx[1:], idx[1:].roll(-1, 1)
    tri = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    n = verts.shape[0]
    return MorphableModel(
        name="sphere", mean_shape=verts, id_basis=torch.zeros(3 * n, 1), exp_basis=torch.zeros(3 * n, 1),
        mean_albedo=torch.full((n, 3), 180.0), tex_basis=torch.zeros(3 * n, 1), triangles=tri,
        landmark_ids=torch.arange(68), point_buf=incident_triangles(tri, n),
        front_vertex_ids=torch.arange(n), front_triangles=tri, skin_mask=torch.ones(n, dtype=torch.bool))


def test_lighting_is_recovered_from_an_image_of_the_face_colours():
    """Fill an image with the lit colour of the nearest visible vertex; fit the light back."""
    from scipy.interpolate import griddata
    fm = FaceModel(sphere_model(), recenter=False)
    coeffs = Coeffs.zeros(1, fm.coeff_sizes)
    gen = torch.Generator().manual_seed(3)
    coeffs.gamma = torch.randn(1, 27, generator=gen) * 0.08
    geo = fm.compute(coeffs)
    front = geo.normals[0, :, 2] > 0
    pts = fm.camera.project(geo.camera[0, front])
    grid_y, grid_x = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    channels = [griddata(pts.numpy(), geo.color[0, front, c].numpy(), (grid_x.numpy(), grid_y.numpy()),
                         method="linear", fill_value=0.0) for c in range(3)]
    image = torch.tensor(np.stack(channels), dtype=torch.float32)[None]
    gamma = estimate_lighting(fm, coeffs, image, ridge=1e-6)
    torch.testing.assert_close(gamma, coeffs.gamma, atol=0.03, rtol=0)

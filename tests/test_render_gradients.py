"""Gradients of image losses against finite differences; antialias against analytic answers."""

from __future__ import annotations

import pytest
import torch

from recon.render import (antialias, antialias_construct_topology_hash, build_topology, interpolate,
                          rasterize)


def scene(seed: int = 0, verts: int = 12, faces: int = 8):
    gen = torch.Generator().manual_seed(seed)
    ndc = torch.rand(1, verts, 3, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    w = 1 + torch.rand(1, verts, 1, generator=gen, dtype=torch.float64)
    pos = torch.cat([ndc * w, w], dim=-1)
    tris = torch.randint(0, verts, (faces, 3), generator=gen)
    attr = torch.rand(1, verts, 3, generator=gen, dtype=torch.float64)
    weight = torch.rand(1, 20, 24, 3, generator=gen, dtype=torch.float64)
    return pos, tris, attr, weight


def image_loss(pos, attr, tris, weight):
    rast = rasterize(pos, tris, weight.shape[1:3], backend="torch")
    return (interpolate(attr, rast, tris, backend="torch") * weight).sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_wrt_positions_and_attributes_match_finite_differences(seed):
    pos, tris, attr, weight = scene(seed)
    pos.requires_grad_()
    attr.requires_grad_()
    # Central differences with a step far below a pixel: coverage does not change.
    assert torch.autograd.gradcheck(lambda p, a: image_loss(p, a, tris, weight), (pos, attr),
                                    eps=1e-7, atol=1e-5, rtol=1e-4)


def test_position_gradient_is_not_trivially_zero():
    pos, tris, attr, weight = scene(0)
    pos.requires_grad_()
    image_loss(pos, attr, tris, weight).backward()
    assert pos.grad.abs().sum() > 0
    assert pos.grad[..., 3].abs().sum() > 0      # w matters through perspective correction


def test_z_over_w_and_ids_carry_no_gradient_like_nvdiffrast():
    pos, tris, _, _ = scene(0)
    pos.requires_grad_()
    rast = rasterize(pos, tris, (20, 24), backend="torch")
    rast[..., 2:].sum().backward() if rast[..., 2:].requires_grad else None
    assert pos.grad is None or pos.grad.abs().sum() == 0


def half_plane(edge_x_pixels: float, width: int = 16, height: int = 6, tilt: float = 0.0):
    """A big triangle covering columns left of a (nearly) vertical edge at ``edge_x_pixels``."""
    to_ndc = lambda px: (2 * px + 1) / width - 1                       # noqa: E731
    top, bottom = to_ndc(edge_x_pixels + tilt), to_ndc(edge_x_pixels - tilt)
    pos = torch.tensor([[[-5.0, -5.0, 0.0, 1.0], [bottom, -5.0, 0.0, 1.0], [top, 5.0, 0.0, 1.0],
                         [-5.0, 5.0, 0.0, 1.0]]], dtype=torch.float64)
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return pos, tris, (height, width)


@pytest.mark.parametrize("edge", [6.2, 6.5, 6.8, 9.05])
def test_antialias_row_sum_equals_covered_length(edge):
    pos, tris, resolution = half_plane(edge)
    rast = rasterize(pos, tris, resolution, backend="torch")
    color = (rast[..., 3:] > 0).double()
    smooth = antialias(color, rast, pos, tris, backend="torch")
    # Coverage of a row: pixels extend half a pixel either side of their centres.
    expected = edge + 0.5
    assert torch.allclose(smooth[0, :, :, 0].sum(-1), torch.full((resolution[0],), expected, dtype=torch.float64),
                          atol=1e-9)


def test_antialias_gradient_moves_the_silhouette():
    pos, tris, resolution = half_plane(6.3)
    pos.requires_grad_()
    rast = rasterize(pos, tris, resolution, backend="torch")
    color = (rast[..., 3:] > 0).double()
    antialias(color, rast, pos, tris, backend="torch").sum().backward()
    # Moving both edge vertices right by one NDC unit (= width / 2 pixels) adds width / 2
    # pixels of coverage to each row.
    ndc_x_gradient = pos.grad[0, 1, 0] + pos.grad[0, 2, 0]
    assert torch.isclose(ndc_x_gradient, torch.tensor(resolution[0] * resolution[1] / 2.0,
                                                      dtype=torch.float64), rtol=1e-6)
    # Interior (shared) edge 0-2 is no silhouette: its vertex 0 and 3 get nothing.
    assert pos.grad[0, [0, 3]].abs().sum() == 0


def test_antialias_gradients_match_finite_differences_on_a_tilted_edge():
    pos, tris, resolution = half_plane(6.3, tilt=0.7)
    colors = torch.tensor([[[0.2, 0.9], [0.4, 0.1], [0.8, 0.5], [0.3, 0.3]]], dtype=torch.float64)
    weight = torch.rand(1, *resolution, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def loss(p, c):
        rast = rasterize(p, tris, resolution, backend="torch")
        image = interpolate(c, rast, tris, backend="torch")
        return (antialias(image, rast, p, tris, backend="torch") * weight).sum()

    assert torch.autograd.gradcheck(loss, (pos.requires_grad_(), colors.requires_grad_()),
                                    eps=1e-7, atol=1e-5, rtol=1e-4)


def test_topology_links_shared_edges_and_marks_borders():
    tris = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    wing = build_topology(tris).wing
    # Triangle 0's edge opposite vertex 1 is (2, 0), shared with triangle 1 whose far vertex is 3.
    assert wing[0].tolist() == [0, 3, 2]
    assert wing[1].tolist() == [0, 2, 1]             # edge (3, 0) is a border: own vertex 2
    assert wing[2].tolist() == [4, 5, 6]             # isolated: every edge is a border


def test_topology_treats_non_manifold_edges_as_borders():
    tris = torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    wing = build_topology(tris).wing
    assert wing[:, 2].tolist() == [2, 3, 4]          # edge (0, 1) opposite vertex 2 in all three


def test_antialias_with_a_prebuilt_topology_hash_matches_the_cached_one():
    pos, tris = _two_triangle_scene()
    rast = rasterize(pos, tris, (16, 16), backend="torch")
    color = interpolate(torch.rand(pos.shape[1], 3, dtype=pos.dtype), rast, tris, backend="torch")
    topology = antialias_construct_topology_hash(tris, backend="torch")
    assert torch.equal(topology.wing, build_topology(tris).wing)
    assert torch.equal(antialias(color, rast, pos, tris, topology, backend="torch"),
                       antialias(color, rast, pos, tris, backend="torch"))


def _two_triangle_scene():
    pos = torch.tensor([[[-0.8, -0.7, 0.1, 1.0], [0.7, -0.8, 0.2, 1.0], [-0.6, 0.8, 0.0, 1.0],
                         [0.9, 0.6, 0.3, 1.0]]], dtype=torch.float64)
    return pos, torch.tensor([[0, 1, 2], [2, 1, 3]])


def test_one_rasterizer_per_backend_and_device():
    from recon.render import MeshRenderer, get_rasterizer
    made = get_rasterizer("torch", "cpu")
    assert get_rasterizer("auto", torch.device("cpu")) is made
    assert MeshRenderer(backend="torch").rasterizer(torch.device("cpu")) is made

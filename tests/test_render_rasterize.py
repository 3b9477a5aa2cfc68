"""Built-in rasterizer against an independent brute-force per-pixel reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from recon.render import interpolate, rasterize
from recon.render import torch_backend

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def reference_raster(pos: np.ndarray, tris: np.ndarray, height: int, width: int) -> np.ndarray:
    """Brute force in float64: every triangle tested at every pixel centre.

    Screen-space edge functions decide coverage, z/w is interpolated linearly in screen
    space, the smallest z/w wins (strictly, so the lower triangle index wins ties), and the
    perspective-correct (u, v) come from dividing the screen-space weights by w.
    Triangles with a vertex at w <= 0 are skipped; only z/w in [-1, 1] counts.
    """
    batch = pos.shape[0]
    out = np.zeros((batch, height, width, 4))
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    sample_x = -1 + (2 * cols + 1) / width
    sample_y = -1 + (2 * rows + 1) / height
    for b in range(batch):
        best = np.full((height, width), np.inf)
        for index, corner_ids in enumerate(tris):
            p = pos[b, corner_ids]
            if (p[:, 3] <= 0).any():
                continue
            x, y, z = (p[:, k] / p[:, 3] for k in range(3))
            area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
            if area == 0:
                continue
            b0 = ((x[1] - sample_x) * (y[2] - sample_y) - (x[2] - sample_x) * (y[1] - sample_y)) / area
            b1 = ((x[2] - sample_x) * (y[0] - sample_y) - (x[0] - sample_x) * (y[2] - sample_y)) / area
            b2 = 1 - b0 - b1
            depth = b0 * z[0] + b1 * z[1] + b2 * z[2]
            wins = (b0 >= 0) & (b1 >= 0) & (b2 >= 0) & (np.abs(depth) <= 1) & (depth < best)
            best[wins] = depth[wins]
            q = np.stack([b0 / p[0, 3], b1 / p[1, 3], b2 / p[2, 3]])
            q = q / q.sum(0)
            out[b][wins] = np.stack([q[0], q[1], depth, np.full_like(depth, index + 1)], -1)[wins]
    return out


def random_scene(seed: int, batch: int = 2, verts: int = 40, faces: int = 30):
    """Overlapping triangles of both windings, some partly outside the image, w in [0.5, 3]."""
    gen = torch.Generator().manual_seed(seed)
    ndc = torch.rand(batch, verts, 3, generator=gen, dtype=torch.float64) * 2.6 - 1.3
    w = 0.5 + 2.5 * torch.rand(batch, verts, 1, generator=gen, dtype=torch.float64)
    pos = torch.cat([ndc * w, w], dim=-1)
    tris = torch.randint(0, verts, (faces, 3), generator=gen)
    return pos, tris


def add_special_triangles(pos: torch.Tensor, tris: torch.Tensor):
    """Append a degenerate (collinear) triangle, one behind the camera, one beyond far."""
    extra = torch.tensor([[[-0.5, -0.5, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.0, 1.0],
                           [-1.0, -1.0, 0.0, -1.0], [1.0, -1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0],
                           [-1.0, -1.0, 2.0, 1.0], [1.0, -1.0, 2.0, 1.0], [0.0, 1.0, 2.0, 1.0]]],
                         dtype=pos.dtype).expand(pos.shape[0], -1, -1)
    base = pos.shape[1]
    new_tris = torch.arange(base, base + 9).reshape(3, 3)
    return torch.cat([pos, extra], 1), torch.cat([tris, new_tris], 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_reference_float64(seed):
    pos, tris = add_special_triangles(*random_scene(seed))
    rast = rasterize(pos, tris, (24, 32), backend="torch")
    expected = reference_raster(pos.numpy(), tris.numpy(), 24, 32)
    np.testing.assert_array_equal(rast[..., 3].numpy(), expected[..., 3])
    np.testing.assert_allclose(rast[..., :3].numpy(), expected[..., :3], atol=1e-9)
    assert (expected[..., 3] > 0).mean() > 0.3      # the scene is not trivially empty
    ids = set(np.unique(expected[..., 3]).astype(int))
    assert len(ids) > 10                            # many triangles visible, some overlapping


def test_float32_agrees_except_near_ties():
    pos, tris = random_scene(5, batch=1, faces=60)
    rast = rasterize(pos.float(), tris, (40, 40), backend="torch")
    expected = reference_raster(pos.numpy(), tris.numpy(), 40, 40)
    mismatch = (rast[..., 3].numpy() != expected[..., 3]).mean()
    assert mismatch < 0.005


def test_special_triangles_cover_nothing():
    pos = torch.tensor([[[-0.5, -0.5, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.0, 1.0],
                         [-1.0, -1.0, 0.0, -1.0], [1.0, -1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0],
                         [-1.0, -1.0, 2.0, 1.0], [1.0, -1.0, 2.0, 1.0], [0.0, 1.0, 2.0, 1.0],
                         [5.0, 5.0, 0.0, 1.0], [6.0, 5.0, 0.0, 1.0], [5.0, 6.0, 0.0, 1.0]]])
    tris = torch.arange(12).reshape(4, 3)
    rast = rasterize(pos, tris, (16, 16), backend="torch")
    assert not (rast != 0).any()


def test_chunking_does_not_change_the_result():
    pos, tris = random_scene(3, faces=80)
    whole = torch_backend.rasterize(pos, tris, (32, 32))
    chunked = torch_backend.rasterize(pos, tris, (32, 32), max_pairs=1)   # budget = one image
    assert torch.equal(whole, chunked)
    one_item_per_pass = torch_backend.rasterize(pos, tris, (32, 32), triangles_per_pass=1)
    assert torch.equal(whole, one_item_per_pass)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_items_alone_and_together(device):
    pos, tris = random_scene(4, batch=3)
    pos, tris = pos.float().to(device), tris.to(device)
    attr = torch.rand(3, pos.shape[1], 5, dtype=torch.float32, device=device)
    together = rasterize(pos, tris, (20, 30), backend="torch")
    image = interpolate(attr, together, tris, backend="torch")
    for b in range(3):
        alone = rasterize(pos[b:b + 1], tris, (20, 30), backend="torch")
        assert torch.equal(alone, together[b:b + 1])
        assert torch.equal(interpolate(attr[b:b + 1], alone, tris, backend="torch"), image[b:b + 1])


def test_pixel_to_ndc_convention_row_zero_is_minus_one():
    # One small triangle around the centre of pixel (row 1, col 2) of a 4x5 image.
    cx, cy = -1 + (2 * 2 + 1) / 5, -1 + (2 * 1 + 1) / 4
    d = 0.05
    pos = torch.tensor([[[cx - d, cy - d, 0, 1], [cx + d, cy - d, 0, 1], [cx, cy + d, 0, 1]]],
                       dtype=torch.float64)
    rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (4, 5), backend="torch")
    covered = torch.nonzero(rast[0, ..., 3]).tolist()
    assert covered == [[1, 2]]


def test_interpolated_clip_position_reprojects_to_pixel_centre():
    """Perspective correctness: interpolating the clip coordinates themselves must give a
    point whose projection is the pixel centre (an identity independent of the method)."""
    pos, tris = random_scene(7, batch=1)
    rast = rasterize(pos, tris, (16, 16), backend="torch")
    point = interpolate(pos, rast, tris, backend="torch")
    covered = rast[..., 3] > 0
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    ndc_x = (-1 + (2 * cols + 1) / 16).double()
    ndc_y = (-1 + (2 * rows + 1) / 16).double()
    projected_x = point[0, ..., 0] / point[0, ..., 3]
    projected_y = point[0, ..., 1] / point[0, ..., 3]
    assert torch.allclose(projected_x[covered[0]], ndc_x[covered[0]], atol=1e-9)
    assert torch.allclose(projected_y[covered[0]], ndc_y[covered[0]], atol=1e-9)
    zw = point[0, ..., 2] / point[0, ..., 3]
    assert torch.allclose(zw[covered[0]], rast[0, ..., 2][covered[0]], atol=1e-9)


def test_interpolate_is_exact_at_vertices():
    # A triangle whose vertices sit on pixel centres (pushed 1e-9 outwards, so that the
    # centres are strictly inside despite rounding), w different per vertex.
    height = width = 9
    centre = lambda i, j: (-1 + (2 * j + 1) / width, -1 + (2 * i + 1) / height)  # noqa: E731
    corners = torch.tensor([centre(1, 1), centre(7, 1), centre(1, 7)], dtype=torch.float64)
    corners = corners + 1e-9 * (corners - corners.mean(0))
    ws = [1.0, 2.0, 3.0]
    pos = torch.tensor([[[x * w, y * w, 0.0, w] for (x, y), w in zip(corners.tolist(), ws)]],
                       dtype=torch.float64)
    attr = torch.tensor([[[1.0, -2.0], [3.0, 5.0], [-7.0, 0.5]]], dtype=torch.float64)
    tris = torch.tensor([[0, 1, 2]])
    image = interpolate(attr, rasterize(pos, tris, (height, width), backend="torch"), tris, backend="torch")
    for (i, j), value in zip([(1, 1), (7, 1), (1, 7)], attr[0]):
        assert torch.allclose(image[0, i, j], value, atol=1e-7)


def test_interpolate_broadcasts_unbatched_attributes_and_zeroes_background():
    pos, tris = random_scene(8, batch=2)
    attr = torch.rand(pos.shape[1], 2, dtype=torch.float64)
    rast = rasterize(pos, tris, (12, 12), backend="torch")
    image = interpolate(attr, rast, tris, backend="torch")
    assert image.shape == (2, 12, 12, 2)
    assert torch.equal(image, interpolate(attr[None].expand(2, -1, -1), rast, tris, backend="torch"))
    assert (image[rast[..., 3] == 0] == 0).all()


@pytest.mark.parametrize("bad, message", [
    (lambda p, t: (p[..., :3], t, (8, 8)), "clip_pos"),
    (lambda p, t: (p, t.float(), (8, 8)), "integer"),
    (lambda p, t: (p, t + 1000, (8, 8)), "outside"),
    (lambda p, t: (p, t, (0, 8)), "resolution"),
])
def test_bad_input_is_one_clear_error(bad, message):
    pos, tris = random_scene(0)
    with pytest.raises(ValueError, match=message):
        rasterize(*bad(pos, tris), backend="torch")


def test_unknown_backend_is_rejected():
    pos, tris = random_scene(0)
    with pytest.raises(ValueError, match="unknown renderer backend"):
        rasterize(pos, tris, (8, 8), backend="opengl")


def pixel_grid_mesh(n: int, step: float, size: int, dtype, seed: int = 0):
    """An n x n vertex grid in pixel units starting at pixel (10, 10), spacing ``step``,
    random w per vertex; with integer steps every vertex and diagonal hits pixel centres."""
    gen = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(n) * step + 10, torch.arange(n) * step + 10, indexing="ij")
    w = 1 + 2 * torch.rand(n * n, generator=gen, dtype=torch.float64)
    ndc_x = (2 * cols.flatten().double() + 1) / size - 1
    ndc_y = (2 * rows.flatten().double() + 1) / size - 1
    pos = torch.stack([ndc_x * w, ndc_y * w, torch.zeros_like(w), w], -1)[None].to(dtype)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].flatten(), idx[:-1, 1:].flatten(), idx[1:, :-1].flatten(), idx[1:, 1:].flatten()
    return pos, torch.cat([torch.stack([a, b, d], 1), torch.stack([a, d, c], 1)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("step", [1.0, 3.0, 0.37, 7.3])
def test_shared_edges_are_watertight(dtype, step):
    """No pixel centre may fall between two triangles that share an edge, not even when
    vertices and edges pass exactly through pixel centres."""
    pos, tris = pixel_grid_mesh(20, step, 256, dtype)
    mask = (rasterize(pos, tris, (256, 256), backend="torch")[0, ..., 3] > 0).numpy()
    assert mask.sum() > 0
    assert not (ndimage.binary_fill_holes(mask) & ~mask).any()


def test_face_model_mask_has_no_holes():
    from recon.face_model import FaceModel
    from recon.models.procedural import build_embedded_model
    from recon.render import MeshRenderer
    from recon.types import Coeffs
    model = FaceModel(build_embedded_model(resolution=120, n_id=2, n_exp=2, n_tex=2))
    coeffs = Coeffs.zeros(2, model.coeff_sizes).replace(angle=torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.5, 0.0]]))
    mask = MeshRenderer(backend="torch").render(model.compute(coeffs), model.triangles).mask[:, 0] > 0
    for item in mask.numpy():
        assert not (ndimage.binary_fill_holes(item) & ~item).any()

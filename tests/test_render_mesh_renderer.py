"""Projection helper and MeshRenderer on the face model."""

from __future__ import annotations

import pytest
import torch

from recon.face_model import FaceModel
from recon.models.procedural import build_embedded_model
from recon.render import MeshRenderer, clip_space, projection_matrix
from recon.types import Camera, Coeffs


def test_default_camera_reproduces_the_original_matrix_exactly():
    expected = torch.tensor([[9.0625, 0, 0, 0], [0, 9.0625, 0, 0], [0, 0, 2, -15], [0, 0, 1, 0]],
                            dtype=torch.float64)
    assert torch.equal(projection_matrix(Camera()), expected)


def test_clip_space_applies_matrix_to_flipped_points():
    points = torch.tensor([[[0.3, -0.2, 9.0], [0.0, 0.0, 5.0], [0.1, 0.4, 15.0]]], dtype=torch.float64)
    clip = clip_space(points, Camera())
    x, y, z = points[0].unbind(-1)
    assert torch.allclose(clip[0, :, 0], 9.0625 * x)
    assert torch.allclose(clip[0, :, 1], -9.0625 * y)
    assert torch.allclose(clip[0, :, 2], 2 * z - 15)
    assert torch.equal(clip[0, :, 3], z)
    assert torch.allclose(clip[0, 1:, 2] / clip[0, 1:, 3], torch.tensor([-1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("camera", [Camera(), Camera(focal_x=800, focal_y=900, center_x=70, center_y=50,
                                                     width=160, height=120, znear=2, zfar=30)])
def test_raster_position_is_projection_minus_half_pixel_d2(camera):
    """Rasterizer pixel coordinates vs Camera.project: columns 0.5 left, rows 0.5 down (D2)."""
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(1, 50, 3, generator=gen, dtype=torch.float64) - 0.5
    points[..., 2] = 3 + 20 * torch.rand(1, 50, generator=gen, dtype=torch.float64)
    clip = clip_space(points, camera)
    column = (clip[..., 0] / clip[..., 3] + 1) * camera.width / 2 - 0.5
    row = (clip[..., 1] / clip[..., 3] + 1) * camera.height / 2 - 0.5
    projected = camera.project(points)
    assert torch.allclose(column, projected[..., 0] - 0.5)
    assert torch.allclose(row, projected[..., 1] + 0.5)
    depth = clip[..., 2] / clip[..., 3]
    near_far = clip_space(torch.tensor([[[0, 0, camera.znear], [0, 0, camera.zfar]]], dtype=torch.float64), camera)
    assert torch.allclose(near_far[0, :, 2] / near_far[0, :, 3], torch.tensor([-1.0, 1.0], dtype=torch.float64))
    assert (depth.diff(dim=-1).sign() == points[..., 2].diff(dim=-1).sign()).all()


@pytest.fixture(scope="module")
def face():
    model = FaceModel(build_embedded_model(resolution=48, n_id=8, n_exp=6, n_tex=5))
    gen = torch.Generator().manual_seed(0)
    coeffs = Coeffs.zeros(3, model.coeff_sizes)
    coeffs = coeffs.replace(id=0.5 * torch.randn(3, 8, generator=gen),
                            angle=torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.4, 0.0], [-0.1, -0.3, 0.1]]),
                            trans=torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.05, 0.3], [-0.1, 0.1, -0.5]]))
    return model, model.compute(coeffs)


def test_mask_centroid_and_extent_match_projected_landmarks(face):
    model, geometry = face
    out = MeshRenderer(backend="torch").render(geometry, model.triangles)
    assert out.mask.shape == (3, 1, 224, 224) and out.image.shape == (3, 3, 224, 224)
    rows, cols = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    for b in range(3):
        mask = out.mask[b, 0]
        landmarks = geometry.landmarks[b]
        centroid = torch.stack([(cols * mask).sum(), (rows * mask).sum()]) / mask.sum()
        middle = (landmarks.min(0).values + landmarks.max(0).values) / 2
        span = landmarks.max(0).values - landmarks.min(0).values
        # The mesh extends beyond the 68 landmarks (forehead, cheeks) but stays centred on them.
        assert (centroid - middle).abs().max() < 0.25 * span.max()
        # All 68 landmarks (rounded to pixels) fall on the rendered mask (self-occlusion aside).
        pix = landmarks.round().long().clamp(0, 223)
        assert mask[pix[:, 1], pix[:, 0]].mean() > 0.9
        xs, ys = cols[mask > 0], rows[mask > 0]
        # The jaw-line landmarks lie on the silhouette: the mask spans them (to a pixel or two).
        extent = torch.stack([xs.max() - xs.min(), ys.max() - ys.min()])
        assert (extent > span - 3).all() and (extent < 2.0 * span).all()


def test_depth_is_right_for_every_batch_item_d3(face):
    model, geometry = face
    out = MeshRenderer(backend="torch").render(geometry, model.triangles)
    for b in range(3):
        z = geometry.camera[b, :, 2]
        covered = out.mask[b, 0] > 0
        depth = out.depth[b, 0][covered]
        assert depth.min() >= z.min() - 1e-5 and depth.max() <= z.max() + 1e-5
        assert (out.depth[b, 0][~covered] == 0).all()
    # Item 2 is pushed away from the camera (trans z = -0.5): its depth differs from item 0's.
    assert out.depth[2][out.mask[2] > 0].mean() > out.depth[0][out.mask[0] > 0].mean() + 0.3


def test_batch_render_equals_items_alone(face):
    model, geometry = face
    renderer = MeshRenderer(backend="torch")
    together = renderer.render(geometry, model.triangles)
    for b in range(3):
        alone = renderer.render(geometry[b], model.triangles)
        assert torch.equal(alone.image, together.image[b:b + 1])
        assert torch.equal(alone.depth, together.depth[b:b + 1])


def test_front_triangles_mask_is_inside_full_mask(face):
    model, geometry = face
    renderer = MeshRenderer(backend="torch")
    full = renderer.render(geometry, model.triangles).mask
    front = renderer.render(geometry, model.front_triangles).mask
    assert front.sum() > 0.3 * full.sum()
    assert (front <= full).all()


def test_antialias_option_keeps_interior_and_softens_silhouette(face):
    model, geometry = face
    plain = MeshRenderer(backend="torch").render(geometry, model.triangles)
    smooth = MeshRenderer(backend="torch", antialias=True).render(geometry, model.triangles)
    changed = (plain.mask != smooth.mask)
    assert changed.any()
    fractional = (smooth.mask > 0) & (smooth.mask < 1)
    assert fractional.sum() > 0
    # Antialiasing only touches pixels next to the silhouette.
    assert changed.float().sum() < 0.2 * plain.mask.sum()


def test_renderer_gradients_reach_coefficients():
    model = FaceModel(build_embedded_model(resolution=40, n_id=4, n_exp=3, n_tex=3))
    coeffs = Coeffs.zeros(1, model.coeff_sizes)
    coeffs.gamma.requires_grad_()
    coeffs.trans.requires_grad_()
    out = MeshRenderer(backend="torch").render(model.compute(coeffs), model.triangles)
    out.image.mean().backward()
    assert coeffs.gamma.grad.abs().sum() > 0
    assert coeffs.trans.grad.abs().sum() > 0


def test_background_fills_uncovered_pixels_and_keeps_the_face(face):
    model, geometry = face
    renderer = MeshRenderer(backend="torch")
    plain = renderer.render(geometry, model.triangles)
    background = torch.rand(geometry.camera.shape[0], 3, 224, 224)
    shown = renderer.render(geometry, model.triangles, background=background)
    outside = plain.mask.expand_as(plain.image) == 0
    assert torch.equal(shown.image[outside], background[outside])
    assert torch.equal(shown.image[~outside], plain.image[~outside])
    with pytest.raises(ValueError, match="background must be"):
        renderer.render(geometry, model.triangles, background=background[:, :, :100])


def test_silhouette_over_a_background_pulls_a_flat_face_towards_the_target():
    """A uniformly coloured face over a plain background: only the silhouette says where
    the face is. Antialiased over the background, the image error's gradient moves the
    face towards a target rendered a little to the side; without antialiasing it is zero."""
    model = FaceModel(build_embedded_model(resolution=40, n_id=4, n_exp=3, n_tex=3))
    colours = torch.full((model.mean_shape.numel() // 3, 3), 0.8)
    background = torch.full((1, 3, 224, 224), 0.1)

    def image(shift: torch.Tensor, antialias: bool) -> torch.Tensor:
        coeffs = Coeffs.zeros(1, model.coeff_sizes)
        coeffs = coeffs.replace(trans=torch.stack([shift, torch.zeros(()), torch.zeros(())])[None])
        renderer = MeshRenderer(backend="torch", antialias=antialias)
        return renderer.render(model.compute(coeffs), model.triangles, colors=colours,
                               background=background).image

    target = image(torch.tensor(0.05), antialias=True).detach()   # 5 mm to the side
    for antialias, moves in ((True, True), (False, False)):
        shift = torch.zeros((), requires_grad=True)
        (image(shift, antialias) - target).abs().sum().backward()
        if moves:
            assert shift.grad < 0   # descent increases the shift, towards the target
        else:
            assert shift.grad == 0

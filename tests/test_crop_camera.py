"""recon.crop_camera: per-image cameras in the aligned crop, against direct projections."""

import numpy as np
import pytest
import torch
from PIL import Image

from recon.crop_camera import (adapt_camera_points, crop_intrinsics, default_intrinsics, exif_focal_px,
                               focal_from_35mm)
from recon.preprocess.align import align_face
from recon.types import Camera


def _points(count=50, seed=0):
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(2, count, 2, generator=generator, dtype=torch.float64) - 0.5
    z = 3 + 5 * torch.rand(2, count, 1, generator=generator, dtype=torch.float64)
    return torch.cat([xy, z], -1)


def test_adapted_points_project_like_each_images_own_camera():
    shared = Camera()
    intrinsics = torch.tensor([[400.0, 100.0, 130.0], [2500.0, 120.0, 105.0]], dtype=torch.float64)
    points = _points()
    adapted = adapt_camera_points(points, shared, intrinsics)
    for i, (focal, cx, cy) in enumerate(intrinsics.tolist()):
        own = Camera(focal_x=focal, focal_y=focal, center_x=cx, center_y=cy)
        assert torch.allclose(shared.project(adapted[i]), own.project(points[i]), atol=1e-9)
    assert torch.allclose(adapted[..., 2], points[..., 2] * Camera().focal_x / intrinsics[:, :1])


def test_the_shared_cameras_intrinsics_change_nothing():
    points = _points()
    assert torch.allclose(adapt_camera_points(points, Camera(), default_intrinsics(Camera(), 2, dtype=torch.float64)),
                          points, atol=1e-12)


def test_crop_intrinsics_project_like_the_photo_camera_followed_by_the_crop():
    photo_size = (640, 480)
    focal = 520.0
    photo_camera = Camera(focal_x=focal, focal_y=focal, center_x=(photo_size[0] - 1) / 2,
                          center_y=(photo_size[1] - 1) / 2, width=photo_size[0], height=photo_size[1])
    points = _points(seed=1)[0]
    photo_pixels = photo_camera.project(points).numpy()
    five = np.array([[300.0, 200], [360, 202], [330, 240], [305, 275], [355, 276]])
    aligned = align_face(Image.new("RGB", photo_size), five)
    in_crop = aligned.transform.to_crop(photo_pixels)
    f, cx, cy = crop_intrinsics(aligned.transform, focal)
    crop_camera = Camera(focal_x=f, focal_y=f, center_x=cx, center_y=cy)
    assert np.allclose(crop_camera.project(points).numpy(), in_crop, atol=1e-6)


def test_exif_focal_round_trip(tmp_path):
    image = Image.new("RGB", (400, 300))
    exif = Image.Exif()
    exif[0xA405] = 26
    image.save(tmp_path / "phone.jpg", exif=exif)
    with Image.open(tmp_path / "phone.jpg") as reopened:
        assert exif_focal_px(reopened) == pytest.approx(26 * 500 / np.hypot(36, 24))
    image.save(tmp_path / "plain.jpg")
    with Image.open(tmp_path / "plain.jpg") as reopened:
        assert exif_focal_px(reopened) is None
    assert focal_from_35mm(43.2666, 36, 24) == pytest.approx(43.2666, rel=1e-4)


def test_bad_shapes_and_focal_refused():
    with pytest.raises(ValueError, match="intrinsics"):
        adapt_camera_points(torch.zeros(2, 5, 3), Camera(), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="positive"):
        crop_intrinsics(None, -1.0)

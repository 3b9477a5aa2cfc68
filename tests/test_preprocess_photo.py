"""recon.preprocess.photo: EXIF orientation, unusual modes and very large photos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from recon.preprocess.photo import (apply_affine, load_photo,
                                    orientation_matrix, to_rgb8)


def _index_image(width: int, height: int) -> Image.Image:
    """RGB image whose pixel (x, y) holds x in red and y in green (both < 256)."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    return Image.fromarray(np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.uint8))


def _with_exif(image: Image.Image, orientation: int) -> Image.Image:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    image.getexif()[0x0112] = orientation
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matrix_agrees_with_pil_exif_transpose(orientation):
    stored = _index_image(7, 4)
    upright = ImageOps.exif_transpose(_with_exif(stored.copy(), orientation))
    matrix = orientation_matrix(orientation, *stored.size)
    pixels = np.asarray(upright)
    for x in range(stored.width):
        for y in range(stored.height):
            u, v = apply_affine(matrix, np.array([[x, y]]))[0]
            assert tuple(pixels[int(v), int(u), :2]) == (x, y)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_load_photo_applies_exif_and_maps_back_to_stored_pixels(tmp_path, orientation):
    stored = _index_image(60, 40)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "p.png", exif=exif.tobytes())
    photo = load_photo(tmp_path / "p.png")
    assert photo.orientation == orientation and "EXIF orientation" in photo.notes[0]
    working = np.asarray(photo.image)
    expected_size = stored.size if orientation == 3 else stored.size[::-1]
    assert photo.image.size == expected_size
    points = np.array([[0, 0], [5, 7], [photo.image.width - 1, photo.image.height - 1]], float)
    for (u, v), (x, y) in zip(points, photo.to_stored(points)):
        assert tuple(working[int(v), int(u), :2]) == (round(x), round(y))
    np.testing.assert_allclose(photo.stored_to_working(photo.to_stored(points)), points, atol=1e-9)


def test_sixteen_bit_gray_keeps_its_range():
    values = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    notes: list[str] = []
    rgb = np.asarray(to_rgb8(image, notes))
    np.testing.assert_array_equal(rgb[..., 0], (values >> 8).astype(np.uint8))
    assert (rgb < 255).mean() > 0.99 and "16-bit" in notes[0]  # PIL's own convert: all 255
    assert (np.asarray(image.convert("RGB")) == 255).mean() > 0.99


def test_alpha_goes_on_white_and_palette_cmyk_convert():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255
    notes: list[str] = []
    rgb = np.asarray(to_rgb8(Image.fromarray(rgba, "RGBA"), notes))
    assert tuple(rgb[0, 0]) == (200, 0, 0) and tuple(rgb[1, 1]) == (255, 255, 255)
    for mode, word in (("P", "palette"), ("CMYK", "CMYK"), ("L", "grayscale")):
        notes = []
        out = to_rgb8(Image.new("RGB", (3, 3), (10, 20, 30)).convert(mode), notes)
        assert out.mode == "RGB" and word in notes[0]


def test_large_jpeg_is_decoded_small_and_maps_back(tmp_path):
    stored = Image.new("RGB", (6000, 4000), (90, 120, 150))
    stored.paste((250, 10, 10), (3000, 2000, 3100, 2100))
    stored.save(tmp_path / "big.jpg", quality=90)
    photo = load_photo(tmp_path / "big.jpg", max_side=1000)
    assert max(photo.image.size) == 1000 and "worked on at" in photo.notes[0]
    centre = photo.stored_to_working(np.array([[3049.5, 2049.5]]))[0]
    assert tuple(np.asarray(photo.image)[int(round(centre[1])), int(round(centre[0]))])[0] > 200
    np.testing.assert_allclose(photo.to_stored(centre[None]), [[3049.5, 2049.5]], atol=1e-6)


def test_a_10000_pixel_photo_stays_well_under_2_gb(tmp_path):
    """Decoding a 10000 x 10000 JPEG for the pipeline: no DecompressionBombWarning, and
    the process's peak memory stays far below the 2.3 GB the full-size decode took."""
    Image.new("L", (10000, 10000), 128).save(tmp_path / "huge.jpg", quality=80)
    # VmHWM, the peak of this process's own memory (ru_maxrss would include the forking
    # pytest process's peak on Linux).
    code = ("import re, warnings; warnings.simplefilter('error');"
            "from recon.preprocess.photo import load_photo;"
            f"p = load_photo({str(tmp_path / 'huge.jpg')!r});"
            "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1);"
            "print(p.image.size, peak)")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    size, peak_kib = result.stdout.rsplit(")", 1)
    assert size.strip() == "(4096, 4096"
    assert int(peak_kib) < 700 * 1024, peak_kib


def test_exif_rotated_example_photo_gives_the_same_landmarks(shared_data, tmp_path):
    """dlib on an example photo and on a copy stored rotated with EXIF orientation 6: the
    68 landmarks, mapped back to each file's stored pixels, agree within a pixel."""
    from faceset.pipeline import PhotoPreparer
    source = shared_data / "examples" / "000002.jpg"
    upright_path = tmp_path / "upright.png"
    rotated_path = tmp_path / "rotated.png"
    upright = Image.open(source).convert("RGB")
    upright.save(upright_path)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(rotated_path, exif=exif.tobytes())
    preparer = PhotoPreparer()
    a, b = preparer.prepare(upright_path), preparer.prepare(rotated_path)
    assert any("EXIF orientation 6" in note for note in b.notes)
    np.testing.assert_allclose(b.landmarks68, a.landmarks68, atol=1.0)
    on_upright = a.transform.to_stored(a.landmarks68)
    on_rotated = b.transform.to_stored(b.landmarks68)
    # ROTATE_90 turned the upright photo counter-clockwise: (u, v) -> (v, w - 1 - u).
    expected = np.stack([on_upright[:, 1], upright.width - 1 - on_upright[:, 0]], axis=1)
    assert np.abs(on_rotated - expected).max() < 1.0

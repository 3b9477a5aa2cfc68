"""Detection-file reader and writer (SPEC 6.1, 10)."""

from __future__ import annotations

import numpy as np
import pytest

from recon.preprocess.detections import (DetectionFileError, detection_path_for,
                                         format_detections, read_detections, write_detections)

# SPEC 10's table, first row: 000002.jpg.
EXPECTED_000002 = [[142.84, 207.18], [222.02, 203.9], [159.24, 253.57],
                   [146.59, 290.93], [227.52, 284.74]]


def test_reads_every_shipped_file(shared_data):
    images = sorted((shared_data / "examples").glob("*.jpg"))
    assert images
    for image in images:
        points = read_detections(detection_path_for(image))
        assert points.shape == (5, 2) and points.dtype == np.float64
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left before right
        assert points[:2, 1].max() < points[3:, 1].min()                    # y down: eyes above mouth
    np.testing.assert_array_equal(
        read_detections(shared_data / "examples" / "detections" / "000002.txt"), EXPECTED_000002)


def test_write_read_round_trip_is_exact(tmp_path):
    points = np.random.default_rng(0).uniform(0, 1000, (5, 2))
    path = tmp_path / "detections" / "a.txt"
    write_detections(path, points)
    np.testing.assert_array_equal(read_detections(path), points)
    assert all(len(line.split("\t")) == 2 for line in path.read_text().splitlines())
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]  # no temp file left


def test_format_matches_original_layout():
    assert format_detections(np.array(EXPECTED_000002)).splitlines()[0] == "142.84\t207.18"


def test_detection_path_uses_the_stem(tmp_path):
    assert detection_path_for(tmp_path / "jpg_photo.jpg") == tmp_path / "detections" / "jpg_photo.txt"


@pytest.mark.parametrize("text, message", [
    ("1\t2\n3\t4\n5\t6\n7\t8\n", "expected 5 lines"),
    ("1\t2\n3\t4\n5\t6\n7\t8\n9\t10\n11\t12\n", "expected 5 lines"),
    ("1\t2\n3\t4\n5\n7\t8\n9\t10\n", "line 3: expected 2 numbers"),
    ("1\t2\n3\tabc\n5\t6\n7\t8\n9\t10\n", "line 2: not a number"),
    ("1\t2\n3\tnan\n5\t6\n7\t8\n9\t10\n", "line 2: non-finite"),
])
def test_malformed_files_name_the_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DetectionFileError, match=message) as info:
        read_detections(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DetectionFileError, match="not found"):
        read_detections(tmp_path / "none.txt")


def test_writer_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError):
        write_detections(tmp_path / "x.txt", np.zeros((5, 3)))
    with pytest.raises(ValueError):
        write_detections(tmp_path / "x.txt", np.array([[np.inf, 0]]))

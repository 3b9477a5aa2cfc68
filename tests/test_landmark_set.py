"""LandmarkSet: surface points by barycentrics, the iBUG 68 set, file round trip, checks."""

import pytest
import torch

from recon.landmark_set import LandmarkSet


def _random_set(count=5, vertices=20, seed=0):
    generator = torch.Generator().manual_seed(seed)
    bary = torch.rand(count, 3, generator=generator)
    return LandmarkSet("test", torch.randint(0, vertices, (count, 3), generator=generator),
                       bary / bary.sum(1, keepdim=True), torch.rand(count, generator=generator),
                       torch.rand(count, generator=generator) > 0.5)


def test_points_are_barycentric_combinations():
    landmark_set = _random_set()
    vertices = torch.randn(2, 20, 3, dtype=torch.float64)
    expected = torch.stack([sum(landmark_set.barycentrics[p, k].double() * vertices[:, landmark_set.vertex_ids[p, k]]
                                for k in range(3)) for p in range(landmark_set.count)], 1)
    assert torch.allclose(landmark_set.points(vertices), expected)


def test_ibug68_marks_vertices_and_jaw_contour():
    ids = torch.arange(100, 168)
    landmark_set = LandmarkSet.ibug68(ids, contour_weight=0.5)
    vertices = torch.randn(1, 200, 3)
    assert torch.equal(landmark_set.points(vertices)[0], vertices[0, ids])
    assert landmark_set.contour[:17].all() and not landmark_set.contour[17:].any()
    assert torch.equal(landmark_set.weights[:17], torch.full((17,), 0.5))


def test_save_load_round_trip(tmp_path):
    landmark_set = _random_set()
    landmark_set.save(tmp_path / "set.npz")
    loaded = LandmarkSet.load(tmp_path / "set.npz")
    assert loaded.name == "test"
    for name in ("vertex_ids", "barycentrics", "weights", "contour"):
        assert torch.equal(getattr(loaded, name), getattr(landmark_set, name))


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="sum to 1"):
        LandmarkSet("bad", torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), torch.ones(2), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="weights must be"):
        LandmarkSet.from_vertices("bad", torch.arange(3), weights=torch.tensor([1.0, -1.0, 1.0]))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        LandmarkSet.load(tmp_path / "junk.npz")

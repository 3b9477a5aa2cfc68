"""R-Net checkpoint layout (SPEC 1.4, Appendix A) and output file round trips (SPEC 8)."""

import numpy as np
import pytest
import torch

from recon.io import read_coeffs_mat, read_obj, write_coeffs_mat, write_obj
from recon.rnet import ReconNet, load_checkpoint


def original_layout_state_dict(seed=0) -> dict:
    """A state dict in the original's key layout, built independently of ReconNet:
    torchvision's resnet50 keys without fc under ``backbone.``, plus 7 heads."""
    import torchvision
    torch.manual_seed(seed)
    resnet = torchvision.models.resnet50(weights=None)
    state = {f"backbone.{k}": v for k, v in resnet.state_dict().items() if "fc" not in k}
    for i, d in enumerate((80, 64, 80, 3, 27, 2, 1)):
        state[f"final_layers.{i}.weight"] = torch.randn(d, 2048, 1, 1) * 1e-3
        state[f"final_layers.{i}.bias"] = torch.randn(d)
    return state


def test_state_dict_has_the_original_332_keys():
    state = ReconNet().state_dict()
    assert len(state) == 332
    assert sum(k.startswith("backbone.") for k in state) == 318
    assert state["final_layers.5.weight"].shape == (2, 2048, 1, 1)
    assert sum(p.numel() for p in ReconNet().parameters()) == 24_034_625


def test_zero_initialised_heads_give_zero_coefficients():
    net = ReconNet().eval()
    out = net(torch.rand(2, 3, 224, 224))
    assert out.shape == (2, 257) and torch.count_nonzero(out) == 0


def test_loads_the_original_checkpoint_format_strictly(tmp_path):
    state = original_layout_state_dict()
    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": state, "opt_00": {}, "sched_00": {}}, path)
    net = load_checkpoint(path)
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    coeffs = net.predict(torch.rand(1, 3, 224, 224))
    # tx, ty, tz come from heads 5 and 6, in that order
    assert coeffs.trans.shape == (1, 3)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="epoch_20.pth"):
        load_checkpoint(tmp_path / "epoch_20.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"net_recon": {"backbone.conv1.weight": torch.zeros(1)}}, bad)
    with pytest.raises(ValueError, match="bad.pth"):
        load_checkpoint(bad)


def test_resnet18_variant():
    assert ReconNet("resnet18")(torch.rand(1, 3, 224, 224)).shape == (1, 257)
    with pytest.raises(ValueError, match="resnet34"):
        ReconNet("resnet34")


def test_obj_round_trip_with_colours_and_uvs(tmp_path):
    rng = np.random.default_rng(0)
    verts = rng.normal(size=(30, 3))
    tris = rng.integers(0, 30, size=(40, 3))
    colors = rng.uniform(-0.2, 1.2, size=(30, 3))
    write_obj(tmp_path / "m.obj", verts, tris, colors)
    mesh = read_obj(tmp_path / "m.obj")
    np.testing.assert_allclose(mesh["vertices"], verts, atol=1e-6)
    np.testing.assert_array_equal(mesh["triangles"], tris)
    expected = np.clip(colors * 255, 0, 255).astype(np.uint8) / 255
    np.testing.assert_allclose(mesh["colors"], expected, atol=1e-6)
    uvs = rng.uniform(size=(30, 2))
    write_obj(tmp_path / "t.obj", verts, tris, uvs=uvs)
    mesh = read_obj(tmp_path / "t.obj")
    np.testing.assert_allclose(mesh["uvs"], uvs, atol=1e-6)
    assert mesh["colors"] is None


def test_obj_faces_are_one_based(tmp_path):
    write_obj(tmp_path / "m.obj", np.zeros((3, 3)), np.array([[0, 1, 2]]))
    assert (tmp_path / "m.obj").read_text().strip().splitlines()[-1] == "f 1 2 3"


def test_mat_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    sizes = {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}
    coeffs = {k: rng.normal(size=n).astype(np.float32) for k, n in sizes.items()}
    lm = rng.uniform(0, 224, size=(68, 2))
    write_coeffs_mat(tmp_path / "x.mat", coeffs, lm)
    import scipy.io
    raw = scipy.io.loadmat(tmp_path / "x.mat")
    assert raw["id"].shape == (1, 80) and raw["id"].dtype == np.float32
    assert raw["lm68"].shape == (1, 68, 2)
    back = read_coeffs_mat(tmp_path / "x.mat")
    for k in sizes:
        np.testing.assert_array_equal(back[k], coeffs[k])
    np.testing.assert_allclose(back["lm68"], lm, atol=1e-4)

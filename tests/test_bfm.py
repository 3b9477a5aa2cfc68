"""BFM09 conversion and loading, against an independent per-vertex computation on a
synthetic 53490-vertex BFM09 + Exp_Pca.bin and the original's real helper files."""

import shutil

import numpy as np
import pytest
import scipy.io

from recon.models.bfm import (FRONT_MODEL_KEYS, convert_bfm09, load_bfm, load_bfm_front,
                              read_exp_pca)

N_BFM, N_EXP_MODEL, N_PCS, EXP_DIM = 53490, 53215, 82, 79


@pytest.fixture(scope="module")
def raw_bfm_dir(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("bfm_raw")
    for name in ("BFM_front_idx.mat", "BFM_exp_idx.mat", "facemodel_info.mat", "std_exp.txt"):
        shutil.copy(shared_data / "bfm" / name, folder / name)
    rng = np.random.default_rng(0)
    scipy.io.savemat(folder / "01_MorphableModel.mat", {
        "shapeMU": rng.normal(0, 5e4, (3 * N_BFM, 1)).astype(np.float32),
        "shapePC": rng.normal(0, 1e-3, (3 * N_BFM, N_PCS)).astype(np.float32),
        "shapeEV": rng.uniform(1e4, 9e5, (N_PCS, 1)).astype(np.float32),
        "texMU": rng.uniform(0, 255, (3 * N_BFM, 1)).astype(np.float32),
        "texPC": rng.normal(0, 1e-3, (3 * N_BFM, N_PCS)).astype(np.float32),
        "texEV": rng.uniform(10, 500, (N_PCS, 1)).astype(np.float32),
    })
    exp_mu = rng.normal(0, 1, 3 * N_EXP_MODEL).astype("<f4")
    exp_pc = rng.normal(0, 1e-3, (EXP_DIM, 3 * N_EXP_MODEL)).astype("<f4")
    with open(folder / "Exp_Pca.bin", "wb") as handle:
        handle.write(np.int32(EXP_DIM).tobytes() + exp_mu.tobytes() + exp_pc.tobytes())
    return folder


def test_exp_pca_layout_is_component_major(raw_bfm_dir):
    pcs = read_exp_pca(raw_bfm_dir / "Exp_Pca.bin")
    raw = np.fromfile(raw_bfm_dir / "Exp_Pca.bin", "<f4", offset=4)[3 * N_EXP_MODEL:]
    assert pcs.shape == (3 * N_EXP_MODEL, EXP_DIM)
    assert pcs[5, 3] == raw[3 * 3 * N_EXP_MODEL + 5]


def test_converter_matches_independent_computation(raw_bfm_dir, tmp_path):
    out = convert_bfm09(raw_bfm_dir, tmp_path / "BFM_model_front.mat")
    front = scipy.io.loadmat(out)
    assert set(FRONT_MODEL_KEYS) <= set(front)
    bfm = scipy.io.loadmat(raw_bfm_dir / "01_MorphableModel.mat")
    idx = scipy.io.loadmat(raw_bfm_dir / "BFM_front_idx.mat")["idx"].ravel().astype(int)
    trim = scipy.io.loadmat(raw_bfm_dir / "BFM_exp_idx.mat")["trimIndex"].ravel().astype(int)
    std_exp = np.loadtxt(raw_bfm_dir / "std_exp.txt")
    exp_pc = np.fromfile(raw_bfm_dir / "Exp_Pca.bin", "<f4", offset=4)[3 * N_EXP_MODEL:]
    exp_pc = exp_pc.reshape(EXP_DIM, -1)
    assert front["idBase"].shape == (3 * 35709, 80) and front["exBase"].shape == (3 * 35709, 64)
    assert front["texBase"].shape == (3 * 35709, 80) and front["meanshape"].shape == (1, 3 * 35709)
    assert front["exBase"].dtype == np.float64
    for v in np.random.default_rng(1).choice(35709, 25, replace=False):
        e = idx[v] - 1            # vertex in the expression model
        s = trim[e] - 1           # vertex in BFM09
        for k in range(3):
            row = 3 * v + k
            np.testing.assert_allclose(front["meanshape"][0, row], bfm["shapeMU"][3 * s + k, 0] / 1e5, rtol=1e-6)
            np.testing.assert_allclose(front["meantex"][0, row], bfm["texMU"][3 * s + k, 0], rtol=1e-6)
            for j in (0, 41, 79):
                np.testing.assert_allclose(front["idBase"][row, j],
                                           bfm["shapePC"][3 * s + k, j] * bfm["shapeEV"][j, 0] / 1e5, rtol=1e-5)
                np.testing.assert_allclose(front["texBase"][row, j],
                                           bfm["texPC"][3 * s + k, j] * bfm["texEV"][j, 0], rtol=1e-5)
            for j in (0, 63):
                np.testing.assert_allclose(front["exBase"][row, j],
                                           exp_pc[j, 3 * e + k] * std_exp[j] / 1e5, rtol=1e-6)
    info = scipy.io.loadmat(raw_bfm_dir / "facemodel_info.mat")
    for key in ("tri", "point_buf", "tri_mask2", "keypoints", "frontmask2_idx", "skinmask"):
        np.testing.assert_array_equal(front[key], info[key])


def test_loader_builds_front_triangles_through_the_subset(raw_bfm_dir):
    model = load_bfm(raw_bfm_dir)  # converts on first use
    info = scipy.io.loadmat(raw_bfm_dir / "facemodel_info.mat")
    assert model.n_vertices == 35709 and model.n_triangles == 70789
    assert model.point_buf.max() == model.n_triangles  # the zero-normal pad
    # every mapped front triangle is a triangle of the full mesh (SPEC 2.3 / D1)
    full = {tuple(sorted(t)) for t in model.triangles.tolist()}
    assert all(tuple(sorted(t)) in full for t in model.front_triangles.tolist())
    assert model.front_triangles.shape == (54681, 3)
    assert int(model.skin_mask.sum()) == 9642
    np.testing.assert_array_equal(model.landmark_ids.numpy() + 1, info["keypoints"].ravel().astype(int))


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="01_MorphableModel.mat.*Basel"):
        convert_bfm09(tmp_path)
    with pytest.raises(FileNotFoundError, match="convert-bfm"):
        load_bfm_front(tmp_path / "BFM_model_front.mat")


def test_corrupt_exp_pca_is_reported(tmp_path):
    (tmp_path / "Exp_Pca.bin").write_bytes(np.int32(79).tobytes() + b"\0" * 16)
    with pytest.raises(ValueError, match="Exp_Pca.bin.*bytes"):
        read_exp_pca(tmp_path / "Exp_Pca.bin")

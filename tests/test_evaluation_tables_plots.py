"""Result tables, figures and the ``faceset evaluate`` command end to end."""

import numpy as np
import pandas as pd
import pytest

from evaluation.plots import cumulative_error_curve, plot_cumulative_errors, plot_error_heatmap
from evaluation.synthetic import (face_landmarks, face_mesh, random_similarity,
                                  write_micc_case, write_now_dataset, write_now_prediction)
from evaluation.meshio import TriangleMesh
from evaluation.tables import ResultTable
from faceset.cli import main


def test_result_table_formats():
    table = ResultTable()
    table.add("ours", "selfie", median=1.111, mean=1.4, std=1.2)
    table.add("ours", "all", median=1.0, mean=1.3, std=1.1)
    table.add("DECA_x", "all", median=1.09, mean=1.38, std=1.18)
    table.add("ours", "all", median=0.9, mean=1.2, std=1.0)  # replaces
    wide = table.wide()
    assert list(wide.index) == ["ours", "DECA_x"]
    assert wide.loc["ours", ("all", "median")] == 0.9
    assert np.isnan(wide.loc["DECA_x", ("selfie", "mean")])
    markdown = table.to_markdown()
    assert markdown.splitlines()[0] == ("| method | selfie median | selfie mean | selfie std | "
                                        "all median | all mean | all std |")
    assert "| ours | 1.11 | 1.40 | 1.20 | 0.90 | 1.20 | 1.00 |" in markdown
    assert "| DECA_x | - | - | - | 1.09 | 1.38 | 1.18 |" in markdown
    latex = table.to_latex()
    assert r"\multicolumn{3}{c}{selfie}" in latex and r"DECA\_x" in latex
    frame = pd.read_csv(pd.io.common.StringIO(table.to_csv()))
    assert len(frame) == 3 and set(frame.columns) == {"method", "challenge", "median", "mean", "std"}


def test_table_write_is_atomic(tmp_path):
    table = ResultTable()
    table.add("m", "all", median=1.0, mean=2.0, std=3.0)
    paths = table.write(tmp_path / "t")
    assert sorted(p.split("/")[-1] for p in paths) == ["t.csv", "t.md", "t.tex"]
    assert not list(tmp_path.glob(".*"))


def test_cumulative_curve_known_answer(tmp_path):
    x, percent = cumulative_error_curve(np.array([0.5, 1.0, 1.0, 3.0]), max_mm=4.0, samples=9)
    np.testing.assert_allclose(x, np.arange(9) * 0.5)
    np.testing.assert_allclose(percent, [0, 25, 75, 75, 75, 75, 100, 100, 100])
    plot_cumulative_errors({"a": np.array([0.5, 1.0])}, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_heatmap_png(tmp_path):
    mesh = face_mesh(20)
    plot_error_heatmap(mesh, np.linspace(0, 3, len(mesh.vertices)), tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="one error per scan vertex"):
        plot_error_heatmap(mesh, np.zeros(3), tmp_path / "x.png")


def test_cli_now_end_to_end(tmp_path, capsys):
    scan = face_mesh(60, ripple_mm=1.0)
    write_now_dataset(tmp_path / "now", {"S1": scan},
                      [("S1", "selfie", "IMG_1.jpg"), ("S1", "selfie", "IMG_2.jpg")])
    transform = random_similarity(np.random.default_rng(0), scale=0.01)
    write_now_prediction(tmp_path / "pred", "S1", "selfie", "IMG_1",
                         TriangleMesh(transform.apply(scan.vertices), scan.faces),
                         transform.apply(face_landmarks(scan)))
    out = tmp_path / "out"
    code = main(["evaluate", "now", "--dataset", str(tmp_path / "now"), "--predictions",
                 str(tmp_path / "pred"), "--out", str(out), "--plots", "--quiet",
                 "--method", "ours"])
    assert code == 1  # done, but one prediction is missing: the exit code says so
    printed = capsys.readouterr().out
    assert "1 images, 1 missing" in printed and "median 0.0000 mm" in printed
    per_image = pd.read_csv(out / "now_per_image.csv")
    assert list(per_image["status"]) == ["ok", "missing"]
    official = np.load(out / "ours_computed_distances.npy", allow_pickle=True).item()
    assert official["num_missing_files"] == 1 and len(official["computed_distances"]) == 1
    median, mean, std = map(float, (out / "ours.meanmedian").read_text().split())
    assert median < 1e-4 and mean < 1e-4
    assert (out / "heatmaps" / "S1" / "selfie" / "IMG_1.png").is_file()
    assert (out / "cumulative_error.png").is_file()
    assert "selfie median" in (out / "now_table.md").read_text()


def test_cli_micc_and_errors(tmp_path, capsys):
    gt = face_mesh(50, half_width_mm=110)
    write_micc_case(tmp_path / "gt", tmp_path / "pred", "s1", gt,
                    random_similarity(np.random.default_rng(1), scale=2.0))
    code = main(["evaluate", "facewarehouse", "--gt-dir", str(tmp_path / "gt"), "--predictions",
                 str(tmp_path / "pred"), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    assert "1 meshes, 0 missing" in capsys.readouterr().out
    frame = pd.read_csv(tmp_path / "out" / "facewarehouse_per_mesh.csv")
    assert frame.loc[0, "rmse"] < 1e-4
    code = main(["evaluate", "micc", "--gt-dir", str(tmp_path / "nowhere"), "--predictions",
                 str(tmp_path / "pred"), "--out", str(tmp_path / "out2"), "--quiet"])
    assert code == 2
    assert "nowhere" in capsys.readouterr().err

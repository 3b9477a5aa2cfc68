"""``faceset compare``: one table of several evaluate runs, reference rows kept apart,
different protocols or datasets refused."""

import json

import numpy as np
import pandas as pd
import pytest

from evaluation.compare import compare_runs, load_run
from evaluation.meshio import TriangleMesh
from evaluation.now import pooled_statistics
from evaluation.references import NOW_REFERENCES
from evaluation.synthetic import (face_landmarks, face_mesh, random_similarity,
                                  write_micc_case, write_now_dataset, write_now_prediction)
from faceset.cli import main

IMAGES = [("S1", "selfie", "IMG_1.jpg"), ("S1", "multiview_neutral", "IMG_2.jpg"),
          ("S2", "selfie", "IMG_3.jpg")]


@pytest.fixture(scope="module")
def now_runs(tmp_path_factory):
    """A NoW-layout set of two subjects and three evaluate runs: exact, rippled and one
    with a missing prediction; a fourth run on another image list."""
    root = tmp_path_factory.mktemp("compare")
    scans = {"S1": face_mesh(40), "S2": face_mesh(40, ripple_mm=0.5, phase=1.0)}
    write_now_dataset(root / "now", scans, IMAGES)
    rng = np.random.default_rng(0)
    runs = {}
    for method, ripple, skip in (("exact", 0.0, None), ("rippled", 1.5, None), ("partial", 0.8, "IMG_3")):
        for subject, challenge, name in IMAGES:
            stem = name.split(".")[0]
            if stem == skip:
                continue
            scan = scans[subject]
            mesh = face_mesh(40, ripple_mm=ripple, phase=2.0) if ripple else scan
            transform = random_similarity(rng, scale=0.01)
            write_now_prediction(root / f"pred_{method}", subject, challenge, stem,
                                 TriangleMesh(transform.apply(mesh.vertices), mesh.faces),
                                 transform.apply(face_landmarks(scan)))
        assert main(["evaluate", "now", "--dataset", str(root / "now"), "--predictions",
                     str(root / f"pred_{method}"), "--out", str(root / f"run_{method}"),
                     "--method", method, "--quiet"]) == (1 if skip else 0)   # 1: a prediction missing
        runs[method] = root / f"run_{method}"
    write_now_dataset(root / "other", scans, IMAGES[:2])
    assert main(["evaluate", "now", "--dataset", str(root / "other"), "--predictions",
                 str(root / "pred_exact"), "--out", str(root / "run_other"), "--quiet"]) == 0
    runs["other"] = root / "run_other"
    return runs


def test_table_rows_and_columns(now_runs, tmp_path):
    comparison = compare_runs([now_runs["exact"], now_runs["rippled"], now_runs["partial"]])
    frame = comparison.frame()
    assert list(frame["method"]) == ["exact", "rippled", "partial"]
    challenge_columns = [c for c in frame.columns if c.split(" ")[-1] in ("median", "mean", "std")]
    assert challenge_columns == [f"{c} {s}" for c in ("multiview_neutral", "selfie", "all")
                                 for s in ("median", "mean", "std")]
    # the table's numbers are the runs' own pooled statistics
    run = load_run(now_runs["rippled"])[0]
    stats = pooled_statistics([run.errors()])
    row = frame.set_index("method").loc["rippled"]
    assert row["all median"] == pytest.approx(stats["median"])
    assert row["all std"] == pytest.approx(stats["std"])
    assert frame.set_index("method").loc["partial", "missing or failed"] == 1
    assert frame.set_index("method").loc["exact", "all median"] < 1e-3
    assert dict(zip(frame["method"], frame["rank"])) == {"exact": 1, "partial": 2, "rippled": 3} or \
        dict(zip(frame["method"], frame["rank"])) == {"exact": 1, "partial": 3, "rippled": 2}
    written = comparison.write(tmp_path / "cmp")
    names = sorted(p.name for p in written)
    assert names == sorted(["comparison.md", "comparison.csv", "comparison.tex", "cumulative_errors.png",
                            "bars_multiview_neutral.png", "bars_selfie.png", "bars_all.png"])
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert markdown.splitlines()[0].startswith("| method | rank | multiview_neutral median |")
    assert len([line for line in markdown.splitlines() if line.startswith("| ")]) == 1 + 3


def test_reference_rows_labelled_and_excluded(now_runs, tmp_path):
    plain = compare_runs([now_runs["rippled"], now_runs["partial"]])
    comparison = compare_runs([now_runs["rippled"], now_runs["partial"]], reference="now")
    frame = comparison.frame()
    references = frame[frame["kind"] == "reference"]
    assert len(references) == len(NOW_REFERENCES)
    assert references["rank"].isna().all()
    assert all(source.startswith("published: [") for source in references["source"])
    assert "NoW non-metrical, test set" in comparison.to_markdown()
    deca = references.set_index("method").loc["DECA (SIGGRAPH'21)"]
    assert (deca["all median"], deca["all mean"], deca["all std"]) == (1.09, 1.38, 1.18)
    assert np.isnan(deca["selfie median"])
    # the measured rows, their ranks and the figures are those without references
    measured = frame[frame["kind"] == "measured"].drop(columns=[]).reset_index(drop=True)
    pd.testing.assert_frame_equal(measured, plain.frame())
    assert comparison.ranks() == plain.ranks()
    comparison.write(tmp_path / "with")
    plain.write(tmp_path / "without")
    for name in ("cumulative_errors.png", "bars_all.png", "bars_selfie.png"):
        assert (tmp_path / "with" / name).read_bytes() == (tmp_path / "without" / name).read_bytes()
    markdown = comparison.to_markdown()
    lines = markdown.splitlines()
    label = next(i for i, line in enumerate(lines) if "Published reference numbers" in line)
    assert all("measured:" in line for line in lines[2:label])
    assert all(line.startswith("| *") and "published" in line for line in lines[label + 1:label + 1 + len(NOW_REFERENCES)])
    assert "not measured here" in markdown and r"\emph{DECA (SIGGRAPH'21)}" in comparison.to_latex()


def test_mixing_refused(now_runs, tmp_path, capsys):
    with pytest.raises(ValueError, match="different datasets"):
        compare_runs([now_runs["exact"], now_runs["other"]])
    code = main(["compare", str(now_runs["exact"]), str(now_runs["other"]), "--out", str(tmp_path / "x")])
    assert code == 2 and "different datasets" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="would not sit in the same columns"):
        compare_runs([now_runs["exact"]], reference="micc")


def test_mixing_protocols_refused(now_runs, tmp_path):
    gt = face_mesh(30, half_width_mm=110)
    write_micc_case(tmp_path / "gt", tmp_path / "pred", "s1", gt,
                    random_similarity(np.random.default_rng(1), scale=2.0))
    assert main(["evaluate", "micc", "--gt-dir", str(tmp_path / "gt"), "--predictions",
                 str(tmp_path / "pred"), "--out", str(tmp_path / "micc"), "--quiet"]) == 0
    with pytest.raises(ValueError, match="different protocols"):
        compare_runs([now_runs["exact"], tmp_path / "micc"])
    # a MICC run compares alone, with MICC's published rows in its own column
    comparison = compare_runs([tmp_path / "micc"], reference="micc")
    frame = comparison.frame()
    assert [c for c in frame.columns if c.startswith("micc")] == ["micc mean", "micc std"]
    assert frame.loc[frame["kind"] == "measured", "micc mean"].iloc[0] < 1e-3
    # the same --out cannot take a second protocol's run
    code = main(["evaluate", "facewarehouse", "--gt-dir", str(tmp_path / "gt"), "--predictions",
                 str(tmp_path / "pred"), "--out", str(tmp_path / "micc"), "--quiet"])
    assert code == 2


def test_several_methods_in_one_run(now_runs, tmp_path):
    out = tmp_path / "shared"
    for method in ("a", "b"):
        assert main(["evaluate", "now", "--dataset", str(now_runs["exact"].parent / "now"),
                     "--predictions", str(now_runs["exact"].parent / "pred_rippled"),
                     "--out", str(out), "--method", method, "--quiet"]) == 0
    manifest = json.loads((out / "run.json").read_text())
    assert sorted(manifest["methods"]) == ["a", "b"]
    comparison = compare_runs([out, now_runs["exact"]])
    assert list(comparison.frame()["method"]) == ["a", "b", "exact"]
    with pytest.raises(ValueError, match="more than once"):
        compare_runs([out, out])

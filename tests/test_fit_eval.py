"""benchmarks/fit_eval.py: the seed list, and that a set scores the same alone or pooled."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fit_eval.py"


@pytest.fixture(scope="module")
def fit_eval():
    spec = importlib.util.spec_from_file_location("fit_eval", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_lists(fit_eval):
    assert fit_eval.parse_seeds("0-3") == [0, 1, 2, 3]
    assert fit_eval.parse_seeds("5,1,5") == [5, 1]
    assert fit_eval.parse_seeds("0-2, 9") == [0, 1, 2, 9]
    with pytest.raises(SystemExit, match="0-x"):
        fit_eval.parse_seeds("0-x")


def test_a_set_scores_the_same_alone_and_among_others(fit_eval, tmp_path):
    small = ["--subjects", "1", "--images", "2", "--iters", "6"]
    fit_eval.main(small + ["--seeds", "3-4", "--per-photo-csv", str(tmp_path / "both.csv"),
                           "--out", str(tmp_path / "both.md")])
    fit_eval.main(small + ["--seed", "4", "--per-photo-csv", str(tmp_path / "alone.csv")])
    both, alone = pd.read_csv(tmp_path / "both.csv"), pd.read_csv(tmp_path / "alone.csv")
    assert sorted(both.seed.unique()) == [3, 4] and list(alone.seed.unique()) == [4]
    pooled_seed4 = both[both.seed == 4].reset_index(drop=True)
    pd.testing.assert_frame_equal(pooled_seed4, alone, check_exact=False, atol=1e-4)
    report = (tmp_path / "both.md").read_text()
    assert "2 sets (seeds 3-4)" in report and "| 3 | " in report and "| 4 | " in report

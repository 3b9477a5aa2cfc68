"""benchmarks/rnet_eval.py end to end on a tiny held-out set with the shipped R-Net: the
chosen starts only (the landmark initialiser always), the fit's schedule rescaled by --iters."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "rnet_eval.py"


@pytest.fixture(scope="module")
def rnet_eval():
    # the script pins torch to one thread when it loads (its timings are per thread): give
    # the rest of the suite its threads back
    threads = torch.get_num_threads()
    spec = importlib.util.spec_from_file_location("rnet_eval", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shipped_checkpoint():
    found = sorted((ROOT / "recon" / "weights").glob("rnet_*.pth"))
    if not found:
        pytest.skip("no R-Net ships in recon/weights/")
    return found[0]


def test_chosen_starts_and_a_short_schedule(rnet_eval, shipped_checkpoint, tmp_path):
    rnet_eval.main(["--checkpoint", str(shipped_checkpoint), "--arch", "mobilenet_v3_small",
                    "--seeds", "3", "--subjects", "1", "--images", "2", "--iters", "6",
                    "--starts", "R-Net, landmark refit", "--photos", str(tmp_path / "no_photos"),
                    "--data", str(tmp_path / "sets"), "--csv", str(tmp_path / "rows.csv"),
                    "--out", str(tmp_path / "report.md")])
    rows = pd.read_csv(tmp_path / "rows.csv")
    starts = {"landmark init", "R-Net, landmark refit"}
    assert {c for c in rows.columns if c.startswith("fit from ")} == {f"fit from {s}" for s in starts}
    assert "R-Net" not in rows.columns and len(rows) >= 1
    assert (rows["steps from R-Net, landmark refit"] == 6).all()
    assert rows[[*starts, *(f"fit from {s}" for s in starts)]].gt(0).all().all()
    assert "--iters 6 --starts 'landmark init' 'R-Net, landmark refit'" in (tmp_path / "report.md").read_text()


def test_an_unknown_start_and_too_few_steps_are_refused(rnet_eval, shipped_checkpoint):
    with pytest.raises(SystemExit):
        rnet_eval.main(["--checkpoint", str(shipped_checkpoint), "--starts", "R-Net refitted"])
    with pytest.raises(SystemExit):
        rnet_eval.main(["--checkpoint", str(shipped_checkpoint), "--iters", "2"])


def test_subject_bootstrap_resamples_whole_subjects(rnet_eval):
    rows = [{"seed": 0, "subject": f"s{s}", "landmark init": 1.0 + s + 0.1 * p, "R-Net": 0.9 * (1.0 + s + 0.1 * p)}
            for s in range(4) for p in range(3)]
    change, low, high = rnet_eval.subject_bootstrap(rows, "R-Net", "landmark init")
    assert change == pytest.approx(-10.0) and low == pytest.approx(-10.0) and high == pytest.approx(-10.0)
    # one subject much better, the others unchanged: the interval spans whether it is drawn
    for row in rows:
        row["R-Net"] = row["landmark init"] * (0.5 if row["subject"] == "s1" else 1.0)
    change, low, high = rnet_eval.subject_bootstrap(rows, "R-Net", "landmark init")
    assert low < change <= high <= 0.0 and low < -5.0

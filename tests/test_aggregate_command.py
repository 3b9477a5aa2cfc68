"""``faceset aggregate``'s rough edges: a bad per-photo ``.mat`` is skipped with a line and the
rest fused; nothing usable leaves no output folder behind; an up-to-date re-run does nothing
unless ``--force``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io
import torch

from recon.io import write_coeffs_mat
from recon.models import load_face_model
from recon.types import Coeffs

OUTPUTS = ("subject.mat", "subject.obj", "subject_lmk7.npy")


@pytest.fixture(scope="module")
def sizes():
    return load_face_model(None, "cpu").coeff_sizes


def write_photos(folder, sizes, count: int, seed: int = 0) -> np.ndarray:
    """``count`` per-photo .mat files as reconstruct writes them; returns their ids (count, K)."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    coeffs = Coeffs(**{g: 0.3 * torch.randn(count, sizes[g], generator=generator) for g in Coeffs.GROUPS})
    for i in range(count):
        write_coeffs_mat(folder / f"photo_{i}.mat", coeffs[i].to_numpy_dict(), np.zeros((68, 2)))
    return coeffs.id.numpy()


def strings(value) -> list[str]:
    return [str(np.squeeze(item)) for item in np.asarray(value).ravel()]


def leftovers(parent) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith(".tmp"))


def test_bad_files_are_skipped_and_the_rest_fused(tmp_path, sizes, capsys):
    from faceset.cli import main
    results = tmp_path / "results"
    ids = write_photos(results, sizes, 3)
    (results / "zz_garbage.mat").write_bytes(b"not a mat file")
    scipy.io.savemat(results / "zz_no_groups.mat", {"something": np.zeros(3)})
    wrong = {g: np.zeros((1, sizes[g] + (g == "id"))) for g in Coeffs.GROUPS}
    scipy.io.savemat(results / "zz_sizes.mat", wrong)
    nan = {g: np.full((1, sizes[g]), np.nan) for g in Coeffs.GROUPS}
    scipy.io.savemat(results / "zz_nan.mat", nan)
    out = tmp_path / "out"
    assert main(["aggregate", str(results), "--method", "mean", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name, problem in (("zz_garbage.mat", "not a readable .mat"), ("zz_no_groups.mat", "missing coefficient"),
                          ("zz_sizes.mat", "do not fit"), ("zz_nan.mat", "non-finite")):
        lines = [l for l in printed.splitlines() if l.strip().startswith(f"skipped {name}:")]
        assert len(lines) == 2 and problem in lines[0], printed  # as it happens, and at the end
    assert "fused 3 of 7 photos" in printed
    subject = scipy.io.loadmat(out / "subject.mat")
    np.testing.assert_allclose(subject["id"][0], ids.mean(0), rtol=1e-5, atol=1e-6)
    assert strings(subject["photos"]) == ["photo_0", "photo_1", "photo_2"]
    assert sorted(strings(subject["skipped"])) == ["zz_garbage", "zz_nan", "zz_no_groups", "zz_sizes"]
    assert subject["weights"].shape == (3, sizes["id"])
    assert leftovers(tmp_path) == []
    mask = os.umask(0o022)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask


def test_nothing_usable_leaves_no_output_folder(tmp_path, sizes, capsys):
    from faceset.cli import main
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.mat").write_bytes(b"junk")
    (results / "b.mat").write_bytes(b"")
    out = tmp_path / "new" / "deeper" / "out"
    assert main(["aggregate", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "none of the 2 per-photo .mat file(s) could be used" in err and "a.mat" in err
    assert not (tmp_path / "new").exists() and leftovers(tmp_path) == []
    # the same for a run that fails later (a C-Net that does not exist)
    write_photos(results, sizes, 2)
    (tmp_path / "rnet.pth").write_bytes(b"")
    assert main(["aggregate", str(results), "--method", "cnet", "--cnet", str(tmp_path / "absent.pth"),
                 "--checkpoint", str(tmp_path / "rnet.pth"), "--out", str(out)]) == 2
    assert "absent.pth" in capsys.readouterr().err
    assert not (tmp_path / "new").exists() and leftovers(tmp_path) == []
    # an existing OUT keeps what it had, and no staging folder stays beside it
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for path in results.glob("photo_*.mat"):
        path.unlink()
    assert main(["aggregate", str(results), "--out", str(kept)]) == 2
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"] and leftovers(tmp_path) == []


def test_an_up_to_date_rerun_does_nothing_unless_forced(tmp_path, sizes, capsys):
    from faceset.cli import main
    results = tmp_path / "results"
    write_photos(results, sizes, 3)
    out = tmp_path / "out"
    command = ["aggregate", str(results), "--out", str(out)]
    assert main(command) == 0
    stamps = {name: (out / name).stat().st_mtime_ns for name in OUTPUTS}
    capsys.readouterr()

    assert main(command) == 0
    assert "nothing to do (--force redoes it)" in capsys.readouterr().out
    assert {name: (out / name).stat().st_mtime_ns for name in OUTPUTS} == stamps

    def redone() -> bool:
        nonlocal stamps
        now = {name: (out / name).stat().st_mtime_ns for name in OUTPUTS}
        changed = all(now[n] != stamps[n] for n in OUTPUTS)
        stamps = now
        return changed

    assert main(command + ["--force"]) == 0 and redone()
    assert "fused 3 of 3" in capsys.readouterr().out
    # an input newer than the outputs, another set of files, a missing output: each redoes
    future = max(stamps.values()) + 10 ** 9
    os.utime(results / "photo_1.mat", ns=(future, future))
    assert main(command) == 0 and redone()
    write_photos(results / "more", sizes, 1)
    (results / "more" / "photo_0.mat").rename(results / "photo_9.mat")
    assert main(command) == 0 and redone()
    assert strings(scipy.io.loadmat(out / "subject.mat")["photos"])[-1] == "photo_9"
    (out / "subject_lmk7.npy").unlink()
    assert main(command) == 0 and (out / "subject_lmk7.npy").is_file()
    stamps = {name: (out / name).stat().st_mtime_ns for name in OUTPUTS}
    # and so does another method, once
    assert main(command + ["--method", "confidence"]) == 0 and redone()
    assert scipy.io.loadmat(out / "subject.mat")["method"][0] == "confidence"
    assert main(command + ["--method", "confidence"]) == 0 and not redone()


def test_an_unusable_out_is_refused_up_front(tmp_path, sizes, capsys):
    from faceset.cli import main
    results = tmp_path / "results"
    write_photos(results, sizes, 1)
    taken = tmp_path / "taken"
    taken.write_text("a file\n")
    assert main(["aggregate", str(results), "--out", str(taken)]) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert main(["aggregate", str(results), "--out", str(taken / "out")]) == 2
    assert f"{taken} is a file" in capsys.readouterr().err
    assert taken.read_text() == "a file\n" and leftovers(tmp_path) == []

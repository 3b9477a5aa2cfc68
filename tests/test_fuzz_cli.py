"""Every command on bad input, bad paths and odd photos, as a new user would meet them.

The bad items are built here (nothing committed): beside each, two good photos of a tiny
``faceset synth`` set. Each run goes through ``faceset.cli.main`` in-process and must give
the documented exit code (0 done, 1 some items failed, 2 could not run), one line naming
the file and the problem, no traceback, every good photo done and no temporary or partial
file left behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceset.cli import main
from faceset.pipeline import OUTPUT_SUFFIXES

GOOD = ("subject_000_00", "subject_000_01")
JOB_FILES = ("subject", "fused", "subject_texture", "fused_texture", "fit_losses", "fit_overlays")
FIT = ["--iters", "3", "--no-silhouette"]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """A synth set: one person, three photos with detections, landmarks and a scan."""
    root = tmp_path_factory.mktemp("synth")
    assert main(["synth", str(root / "set"), "--subjects", "1", "--images", "3",
                 "--seed", "3", "--occluder-probability", "0"]) == 0
    return root / "set"


@pytest.fixture()
def good_dir(synth_root, tmp_path) -> Path:
    """A fresh folder with the two good photos (and their detection / landmark files)."""
    source = synth_root / "subject_000" / "images"
    folder = tmp_path / "photos"
    for sub in ("", "detections", "landmarks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for stem in GOOD:
        shutil.copy(source / f"{stem}.png", folder / f"{stem}.png")
        for sub in ("detections", "landmarks"):
            shutil.copy(source / sub / f"{stem}.txt", folder / sub / f"{stem}.txt")
    return folder


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_clean(output: str, out_dir: Path) -> None:
    """No traceback on screen, no temporary or half-written file in the output folder."""
    assert "Traceback" not in output and 'File "' not in output, output
    if out_dir.is_dir():
        leftovers = [p.name for p in out_dir.rglob("*") if p.name.endswith(".tmp")
                     or p.name.startswith(".faceset-write-test")]
        assert not leftovers, leftovers
        stems = set()
        for path in out_dir.iterdir():
            suffix = max((s for s in OUTPUT_SUFFIXES if path.name.endswith(s)), key=len, default=None)
            if suffix and path.name[:-len(suffix)] not in JOB_FILES:
                stems.add(path.name[:-len(suffix)])
        for stem in stems:  # a photo's outputs exist completely or not at all
            present = [(out_dir / f"{stem}{s}").exists() for s in OUTPUT_SUFFIXES]
            assert all(present) or not any(present), (stem, present)


def assert_good_done(out_dir: Path) -> None:
    for stem in GOOD:
        for suffix in OUTPUT_SUFFIXES:
            assert (out_dir / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"


# ---- photo-level faults: one bad item beside two good photos ------------------------------

def _copy_good(folder: Path, name: str) -> Path:
    target = folder / name
    shutil.copy(folder / f"{GOOD[0]}.png", target)
    stem = Path(name).stem
    shutil.copy(folder / "landmarks" / f"{GOOD[0]}.txt", folder / "landmarks" / f"{stem}.txt")
    shutil.copy(folder / "detections" / f"{GOOD[0]}.txt", folder / "detections" / f"{stem}.txt")
    return target


def truncated(folder: Path) -> tuple[str, str]:
    data = (folder / f"{GOOD[0]}.png").read_bytes()
    (folder / "bad.png").write_bytes(data[: len(data) // 3])
    return "bad.png", "cannot read image"


def empty(folder: Path) -> tuple[str, str]:
    (folder / "bad.jpg").write_bytes(b"")
    return "bad.jpg", "cannot read image"


def wrong_type(folder: Path) -> tuple[str, str]:
    (folder / "bad.png").write_text("not a picture at all\n")
    return "bad.png", "cannot read image"


def nan_detection(folder: Path) -> tuple[str, str]:
    _copy_good(folder, "bad.png")
    (folder / "detections" / "bad.txt").write_text("nan\tnan\n" * 5)
    return "bad.png", "bad.txt"


def detection_outside(folder: Path) -> tuple[str, str]:
    _copy_good(folder, "bad.png")
    points = np.loadtxt(folder / "detections" / "bad.txt") + [5000.0, 0.0]
    np.savetxt(folder / "detections" / "bad.txt", points, delimiter="\t")
    return "bad.png", "outside"


def landmarks_outside(folder: Path) -> tuple[str, str]:
    _copy_good(folder, "bad.png")
    (folder / "detections" / "bad.txt").unlink()
    points = np.loadtxt(folder / "landmarks" / "bad.txt") * [1.0, -1.0]
    np.savetxt(folder / "landmarks" / "bad.txt", points)
    return "bad.png", "outside"


def garbage_landmarks(folder: Path) -> tuple[str, str]:
    _copy_good(folder, "bad.png")
    (folder / "detections" / "bad.txt").unlink()
    (folder / "landmarks" / "bad.txt").write_text("12 apples\n")
    return "bad.png", "bad.txt"


BAD_PHOTOS = {"truncated": truncated, "empty": empty, "wrong_type": wrong_type,
              "nan_detection": nan_detection, "detection_outside": detection_outside,
              "landmarks_outside": landmarks_outside, "garbage_landmarks": garbage_landmarks}
PHOTO_COMMANDS = {"reconstruct": ["reconstruct"],
                  "subject": ["reconstruct", "--subject", *FIT],
                  "fit": ["fit", *FIT]}


def _with_every_bad_photo(folder: Path) -> dict[str, str]:
    """Add each bad item under its own name; name -> the problem its line must state."""
    problems = {}
    for label, make_bad in BAD_PHOTOS.items():
        scratch = folder.parent / f"scratch_{label}"
        shutil.copytree(folder, scratch)
        name, problem = make_bad(scratch)
        stem, suffix = Path(name).stem, Path(name).suffix
        target = f"bad_{label}{suffix}"
        shutil.copy(scratch / name, folder / target)
        for sub in ("detections", "landmarks"):
            if (scratch / sub / f"{stem}.txt").exists():
                shutil.copy(scratch / sub / f"{stem}.txt", folder / sub / f"bad_{label}.txt")
        problems[target] = problem.replace("bad.txt", f"bad_{label}.txt")
        shutil.rmtree(scratch)
    return problems


@pytest.mark.parametrize("command", PHOTO_COMMANDS)
def test_bad_photos_beside_good_ones(capsys, good_dir, tmp_path, command):
    """Every bad item gets one line naming it and its problem; the good photos are done."""
    problems = _with_every_bad_photo(good_dir)
    out = tmp_path / "out"
    code, output = run(capsys, *PHOTO_COMMANDS[command][:1], good_dir, "--out", out,
                       *PHOTO_COMMANDS[command][1:])
    assert code == 1, output
    for name, problem in problems.items():
        lines = [line for line in output.splitlines() if name in line]
        assert len(lines) == 1 and problem in lines[0], (name, output)
        assert not (out / f"{Path(name).stem}.obj").exists()
    assert_clean(output, out)
    assert_good_done(out)


# ---- photos a phone or an editor writes: converted, noted, done -----------------------------

def exif_rotated(folder: Path) -> tuple[str, str]:
    """The first good photo stored rotated, with EXIF orientation 6 to show it upright;
    its detection file in the stored pixels (as a detector run on the file gives it)."""
    upright = Image.open(folder / f"{GOOD[0]}.png")
    ex = Image.Exif()
    ex[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "odd_exif.jpg", exif=ex.tobytes(),
                                                      quality=95)
    points = np.loadtxt(folder / "detections" / f"{GOOD[0]}.txt")
    stored = np.stack([points[:, 1], upright.width - 1 - points[:, 0]], axis=1)
    np.savetxt(folder / "detections" / "odd_exif.txt", stored, delimiter="\t")
    return "odd_exif.jpg", "EXIF orientation 6"


def _convert_copy(folder: Path, name: str, convert) -> None:
    _copy_good(folder, name)
    image = convert(Image.open(folder / f"{GOOD[0]}.png"))
    image.save(folder / name)


def odd_photos(folder: Path) -> dict[str, str]:
    """Photos as phones and editors write them; name -> the note their line must carry."""
    notes = dict([exif_rotated(folder)])
    _convert_copy(folder, "odd_gray16.png", lambda im: Image.fromarray(
        np.asarray(im.convert("L")).astype(np.uint16) * 257))
    assert Image.open(folder / "odd_gray16.png").mode.startswith("I")
    notes["odd_gray16.png"] = "16-bit"
    _convert_copy(folder, "odd_alpha.png", lambda im: im.convert("RGBA"))
    notes["odd_alpha.png"] = "alpha"
    _convert_copy(folder, "odd_palette.png",
                  lambda im: im.convert("P", palette=Image.Palette.ADAPTIVE))
    notes["odd_palette.png"] = "palette"
    _convert_copy(folder, "odd_cmyk.jpg", lambda im: im.convert("CMYK"))
    notes["odd_cmyk.jpg"] = "CMYK"
    return notes


def test_phone_and_editor_photos_are_converted_with_a_note(capsys, good_dir, tmp_path):
    notes = odd_photos(good_dir)
    out = tmp_path / "out"
    code, output = run(capsys, "reconstruct", good_dir, "--out", out)
    assert code == 0, output
    for name, note in notes.items():
        assert any(name in line and note in line for line in output.splitlines()), (name, output)
        assert (out / f"{Path(name).stem}.png").is_file()
    assert_clean(output, out)
    assert_good_done(out)
    # The 16-bit photo is the good one, not a white page: its crop matches the 8-bit gray one.
    gray16 = np.asarray(Image.open(out / "odd_gray16.png"))[:, :224].astype(float)
    upright = np.asarray(Image.open(out / f"{GOOD[0]}.png").convert("L"))[:, :224].astype(float)
    assert np.abs(gray16[..., 0] - upright).mean() < 3.0
    # The EXIF-rotated photo's crop is the upright photo's; its transform reaches the stored file.
    from recon.preprocess.align import CropTransform
    upright_t = CropTransform.load(out / f"{GOOD[0]}_transform.json")
    rotated_t = CropTransform.load(out / "odd_exif_transform.json")
    corners = np.array([[0.0, 0.0], [223.0, 0.0], [0.0, 223.0], [111.5, 111.5]])
    on_upright = upright_t.to_photo(corners)
    # The stored file is the upright photo turned counter-clockwise: (u, v) -> (v, w - 1 - u).
    expected = np.stack([on_upright[:, 1], upright_t.w0 - 1 - on_upright[:, 0]], axis=1)
    assert (rotated_t.w0, rotated_t.h0) == (upright_t.w0, upright_t.h0)
    np.testing.assert_allclose(rotated_t.to_stored(corners), expected, atol=0.05)


# ---- output paths checked before any work ---------------------------------------------------

def _commands_with_out(root: Path, synth_root: Path, good_dir: Path, out: Path) -> dict[str, list]:
    return {
        "reconstruct": ["reconstruct", good_dir, "--out", out],
        "subject": ["reconstruct", good_dir, "--subject", "--out", out, *FIT],
        "fit": ["fit", good_dir, "--out", out, *FIT],
        "train": ["train", good_dir, "--out", out, "--epochs", "1", "--max-iters", "1",
                  "--batch-size", "2", "--workers", "0", "--identity", "none", "--no-progress"],
        "synth": ["synth", out, "--subjects", "1", "--images", "1"],
        "evaluate now": ["evaluate", "now", "--dataset", synth_root, "--predictions", root,
                         "--out", out, "--quiet"],
        "evaluate micc": ["evaluate", "micc", "--gt-dir", root, "--predictions", root,
                          "--out", out, "--quiet"],
    }


COMMANDS_WITH_OUT = ["reconstruct", "subject", "fit", "train", "synth", "evaluate now",
                     "evaluate micc"]


@pytest.mark.parametrize("command", COMMANDS_WITH_OUT)
def test_out_that_is_a_file_is_refused_up_front(capsys, synth_root, good_dir, tmp_path, command):
    out = tmp_path / "taken"
    out.write_text("a file, not a folder\n")
    argv = _commands_with_out(tmp_path, synth_root, good_dir, out)[command]
    code, output = run(capsys, *argv)
    assert code == 2, output
    assert f"{out}: the" in output and "is an existing file" in output, output
    assert len(output.strip().splitlines()) == 1, output
    assert_clean(output, tmp_path)
    assert out.read_text() == "a file, not a folder\n"


@pytest.mark.parametrize("command", COMMANDS_WITH_OUT)
def test_out_inside_a_file_is_refused_up_front(capsys, synth_root, good_dir, tmp_path, command):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    out = blocker / "out"
    code, output = run(capsys, *_commands_with_out(tmp_path, synth_root, good_dir, out)[command])
    assert code == 2, output
    assert str(out) in output and f"{blocker} is a file" in output, output
    assert "Traceback" not in output


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    for candidate in (Path("/sys"), Path("/proc")):  # read-only even for root in containers
        if candidate.is_dir() and not os.access(candidate, os.W_OK):
            return candidate
        try:
            import tempfile
            handle, probe = tempfile.mkstemp(dir=candidate)
            os.close(handle)
            os.remove(probe)
        except OSError:
            return candidate
    pytest.skip("no read-only folder available to this (root) user")


@pytest.mark.parametrize("command", COMMANDS_WITH_OUT)
def test_read_only_out_is_refused_up_front(capsys, synth_root, good_dir, tmp_path, command):
    out = _unwritable_folder(tmp_path)
    code, output = run(capsys, *_commands_with_out(tmp_path, synth_root, good_dir, out)[command])
    assert code == 2, output
    assert f"{out}: the" in output and "not writable" in output, output
    assert "Traceback" not in output


def test_full_disk_is_refused_up_front(tmp_path):
    from faceset.errors import UserError, prepare_output_dir
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(UserError, match="free on its disk"):
        prepare_output_dir(tmp_path / "out", min_free_bytes=free + 2 ** 40)
    assert prepare_output_dir(tmp_path / "out", min_free_bytes=1) == tmp_path / "out"


def test_convert_bfm_out_checks(capsys, tmp_path):
    source = tmp_path / "bfm"
    source.mkdir()
    code, output = run(capsys, "convert-bfm", source, "--out", tmp_path)
    assert code == 2 and f"{tmp_path}: the converted model file is an existing folder" in output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, output = run(capsys, "convert-bfm", source, "--out", blocker / "m.mat")
    assert code == 2 and f"{blocker}: the folder of the converted model file is an existing file" \
        in output, output
    code, output = run(capsys, "convert-bfm", tmp_path / "nope")
    assert code == 2 and f"{tmp_path / 'nope'}: no such folder" in output, output


# ---- state files: reported, redone from scratch -----------------------------------------

def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _nan_coefficients(path: Path) -> None:
    import scipy.io
    data = scipy.io.loadmat(path)
    data["exp"][:] = np.nan
    scipy.io.savemat(path, {k: v for k, v in data.items() if not k.startswith("__")})


def _wrong_length_id(path: Path) -> None:
    import scipy.io
    data = scipy.io.loadmat(path)
    data["id"] = data["id"][:, :7]
    scipy.io.savemat(path, {k: v for k, v in data.items() if not k.startswith("__")})


def test_fit_resume_redoes_unusable_mats(capsys, good_dir, tmp_path):
    """A zero-byte .mat, NaN coefficients, an id of the wrong length: each reported, that
    photo fitted from scratch, the others resumed; no NaN in the outputs."""
    _copy_good(good_dir, "third.png")
    out = tmp_path / "out"
    assert run(capsys, "reconstruct", good_dir, "--out", out)[0] == 0
    spoiled = {GOOD[0]: _zero_bytes, GOOD[1]: _nan_coefficients, "third": _wrong_length_id}
    for stem, spoil in spoiled.items():
        spoil(out / f"{stem}.mat")
    code, output = run(capsys, "fit", good_dir, "--out", out, "--resume", *FIT)
    assert code == 0, output
    for stem in spoiled:
        assert any(f"{stem}.mat" in line and "from scratch" in line
                   for line in output.splitlines()), (stem, output)
    assert_clean(output, out)
    assert_good_done(out)
    from recon.io import read_coeffs_mat
    for stem in spoiled:
        assert all(np.isfinite(v).all() for v in read_coeffs_mat(out / f"{stem}.mat").values())


def test_random_bytes_checkpoint_is_one_short_line(capsys, good_dir, tmp_path):
    checkpoint = tmp_path / "epoch_20.pth"
    checkpoint.write_bytes(np.random.default_rng(0).bytes(4096))
    code, output = run(capsys, "reconstruct", good_dir, "--out", tmp_path / "out",
                       "--checkpoint", checkpoint)
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1 and len(output) < 300, output
    assert str(checkpoint) in output and "weights_only" not in output


def test_train_skips_an_unreadable_photo_and_a_corrupt_checkpoint(capsys, good_dir, tmp_path):
    truncated(good_dir)
    shutil.copy(good_dir / "landmarks" / f"{GOOD[0]}.txt", good_dir / "landmarks" / "bad.txt")
    out = tmp_path / "ckpt"

    def train(epochs: int) -> tuple[int, str]:
        return run(capsys, "train", good_dir, "--out", out, "--epochs", epochs, "--max-iters", 1,
                   "--batch-size", 2, "--workers", 0, "--identity", "none", "--no-progress",
                   "--arch", "resnet18")

    code, output = train(1)
    assert code == 0, output
    assert any("bad.png" in line and "cannot read image" in line for line in output.splitlines())
    assert_clean(output, out)
    # reconstruct --arch loads what train --arch wrote
    code, output = run(capsys, "reconstruct", good_dir, "--out", tmp_path / "rec",
                       "--checkpoint", out / "epoch_1.pth", "--arch", "resnet18")
    assert code == 1 and "bad.png" in output, output
    assert_good_done(tmp_path / "rec")
    # a corrupt resume state is reported and training starts again
    (out / "epoch_1.pth").write_bytes(b"\x80\x02 half a pickle")
    (out / "epoch_latest.pth").unlink(missing_ok=True)
    code, output = train(2)
    assert code == 0, output
    assert any("epoch_1.pth" in line and "cannot resume" in line for line in output.splitlines())
    assert "training from scratch" in output
    assert_clean(output, out)


# ---- nothing silent: bad values are refused, failures change the exit code -----------------

@pytest.mark.parametrize("option,value", [("--occluder-probability", "2"),
                                          ("--detail-mm", "-1"), ("--detail-mm", "nan")])
def test_synth_refuses_out_of_range_options(capsys, tmp_path, option, value):
    code, output = run(capsys, "synth", tmp_path / "s", "--subjects", "1", "--images", "1",
                       option, value)
    assert code == 2 and option in output and len(output.strip().splitlines()) == 1, output
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_empty_folder_says_so(capsys, tmp_path):
    (tmp_path / "none").mkdir()
    for argv in (["reconstruct"], ["reconstruct", "--subject"], ["fit"]):
        code, output = run(capsys, argv[0], tmp_path / "none", "--out", tmp_path / "out", *argv[1:])
        assert code == 2 and f"{tmp_path / 'none'}: no photos" in output, output


def test_micc_with_empty_or_corrupt_ground_truth_exits_1(capsys, synth_root, tmp_path):
    gt, predictions = tmp_path / "gt", tmp_path / "pred"
    scan = synth_root / "scans" / "subject_000" / "subject_000.obj"
    gt.mkdir()
    for subject, content in (("good", scan.read_bytes()), ("empty", b""),
                             ("corrupt", b"v 1 2\nf x y z\n")):
        (predictions / subject).mkdir(parents=True)
        shutil.copy(scan, predictions / subject / "mesh.obj")
        (gt / f"{subject}.obj").write_bytes(content)
    out = tmp_path / "out"
    code, output = run(capsys, "evaluate", "micc", "--gt-dir", gt, "--predictions", predictions,
                       "--out", out, "--quiet")
    assert code == 1, output
    assert "1 meshes, 2 missing or failed" in output, output
    for subject in ("empty", "corrupt"):
        assert any(f"{subject}.obj" in line and "failed" in line for line in output.splitlines())
    assert_clean(output, out)
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / "micc_per_mesh.csv").stat().st_mode & 0o777 == 0o666 & ~umask


def test_subject_rerun_keeps_finished_outputs(capsys, good_dir, tmp_path):
    truncated(good_dir)  # a failed photo does not make a finished job look unfinished
    out = tmp_path / "out"
    argv = ["reconstruct", good_dir, "--subject", "--out", out, *FIT]
    assert run(capsys, *argv)[0] == 1  # bad.png failed, the two good photos are fitted
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, output = run(capsys, *argv)
    assert code == 0 and "nothing to do" in output, output
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "subject.obj").unlink()  # an unfinished job in the folder: refuse, do not clobber
    code, output = run(capsys, *argv)
    assert code == 2 and "--overwrite" in output, output
    assert run(capsys, *argv, "--overwrite")[0] == 1
    assert (out / "subject.obj").is_file()
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / "subject.obj").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (out / f"{GOOD[0]}.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_global_options_after_the_command():
    from faceset.cli import build_parser
    parser = build_parser()
    assert parser.parse_args(["reconstruct", "x", "--out", "y", "--threads", "3"]).threads == 3
    assert parser.parse_args(["--threads", "2", "fit", "x", "--out", "y"]).threads == 2
    assert parser.parse_args(["evaluate", "micc", "--gt-dir", "a", "--predictions", "b",
                              "--out", "c", "--threads", "1"]).threads == 1
    assert parser.parse_args(["synth", "o"]).threads is None


def test_internal_error_goes_to_a_log_not_the_screen(capsys, tmp_path):
    from faceset.errors import ERROR_LOG_NAME, run_command

    def broken():
        return {}["a key that is not there"]

    assert run_command("reconstruct", broken, tmp_path) == 2
    err = capsys.readouterr().err
    assert "internal error: KeyError" in err and str(tmp_path / ERROR_LOG_NAME) in err
    assert "Traceback" not in err
    assert "Traceback" in (tmp_path / ERROR_LOG_NAME).read_text()


def test_evaluate_help_has_no_markup(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "``" not in capsys.readouterr().out


def test_ctrl_c_keeps_only_complete_outputs_and_the_rerun_finishes(good_dir, tmp_path):
    """SIGINT to a running ``faceset reconstruct``: the message counts what is done, only
    complete photos stay, no temporary file; the re-run does the rest."""
    import signal
    import subprocess
    import sys
    import time
    for index in range(4):
        _copy_good(good_dir, f"copy_{index}.png")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "faceset", "reconstruct", str(good_dir), "--out", str(out),
               "--batch-size", "1"]
    # the child gets SIGINT's default action: a runner started in the background of a
    # non-interactive shell passes SIGINT on as ignored, and Python then installs no
    # KeyboardInterrupt handler (the run would finish untouched)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(out.glob("*.png")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    finished = {p.stem for p in out.glob("*.png")}
    assert f"interrupted; {len(finished)} of 6 photos done, re-run to resume" in stderr, stderr
    assert 1 <= len(finished) < 6
    assert_clean(stdout + stderr, out)  # every photo complete or absent, no .tmp files
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{6 - len(finished)} reconstructed, {len(finished)} already done, 0 failed" \
        in rerun.stdout
    assert len(list(out.glob("*.png"))) == 6


def test_interrupted_fit_state_is_kept_checked_and_resumed(tmp_path):
    """What Ctrl-C in a subject fit keeps (``fit_interrupted.pt``): read back for the same
    job with the steps left per level; another job's or a corrupt file gives a note."""
    import torch
    from faceset.subject import FitState
    from fitting import FitConfig
    from fitting.fit import FitInterrupted
    from recon.types import Coeffs

    config = FitConfig().with_total_iterations(30)
    initial = Coeffs.zeros(2)
    reached = initial.replace(id=torch.full_like(initial.id, 0.5))
    done = [config.iterations[0], 3] + [0] * (len(config.iterations) - 2)
    stop = FitInterrupted(reached, done, [{"level": 0, "total": 1.0}] * sum(done))
    FitState.interrupted(tmp_path, ["a", "b"], True, config, initial, stop, None)
    notes: dict[str, list[str]] = {}
    state = FitState.load(tmp_path, ["a", "b"], True, config, notes)
    assert state is not None and torch.equal(state.coeffs.id, reached.id)
    assert state.remaining() == (0, config.iterations[1] - 3, *config.iterations[2:])
    assert "continuing the interrupted fit" in notes["fit_interrupted.pt"][0]
    notes = {}
    assert FitState.load(tmp_path, ["a", "c"], True, config, notes) is None
    assert "another photo set" in notes["fit_interrupted.pt"][0]
    (tmp_path / "fit_interrupted.pt").write_bytes(b"PK\x03\x04 cut short")
    notes = {}
    assert FitState.load(tmp_path, ["a", "b"], True, config, notes) is None
    assert "fit_interrupted.pt" in notes["fit_interrupted.pt"][0]
    assert "starts from the beginning" in notes["fit_interrupted.pt"][0]

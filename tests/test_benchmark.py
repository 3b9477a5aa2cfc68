"""``faceset benchmark`` on the official NoW layout: which photos, where, and the errors a
user gets for a bad call (the generated layout runs end to end in test_report.py)."""

import json

import pytest
from PIL import Image

from evaluation.synthetic import face_mesh, write_now_dataset
from faceset.benchmark import (GENERATED_CHALLENGE, BenchmarkOptions, discover_photos,
                               run_benchmark, select)

IMAGES = [("S1", "selfie", "IMG_1.jpg"), ("S1", "multiview_neutral", "IMG_1.jpg"),
          ("S2", "selfie", "IMG_7.jpg")]


@pytest.fixture
def official(tmp_path):
    root = tmp_path / "now"
    write_now_dataset(root, {"S1": face_mesh(30), "S2": face_mesh(30, ripple_mm=0.5)}, IMAGES)
    for subject, challenge, name in IMAGES:
        folder = root / "final_release_version" / "iphone_pictures" / subject / challenge
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32)).save(folder / name)
    return root


def test_official_layout_photos(official, tmp_path):
    photos = discover_photos(official)
    assert [p.entry for p in photos] == [f"{s}/{c}/{n}" for s, c, n in IMAGES]
    assert all(p.path.is_file() and "iphone_pictures" in str(p.path) for p in photos)
    # the same stem in two challenges stays two photos once staged
    assert len({p.staged for p in photos if p.subject == "S1"}) == 2
    assert [p.entry for p in select(photos, 1, 1)] == ["S1/selfie/IMG_1.jpg"]
    (official / "final_release_version" / "iphone_pictures" / "S2" / "selfie" / "IMG_7.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="S2/selfie/IMG_7.jpg"):
        discover_photos(official)


def test_generated_layout_without_a_list(tmp_path):
    write_now_dataset(tmp_path / "gen", {"S1": face_mesh(20)}, [])
    (tmp_path / "gen" / "imagepathsvalidation.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no image list"):
        discover_photos(tmp_path / "gen")
    (tmp_path / "gen" / "S1" / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "gen" / "S1" / "images" / "a.png")
    photos = discover_photos(tmp_path / "gen")
    assert [(p.subject, p.challenge, p.filename) for p in photos] == [("S1", GENERATED_CHALLENGE, "a.png")]
    with pytest.raises(FileNotFoundError, match="no scans/"):
        discover_photos(tmp_path / "gen" / "S1")


def test_mean_face_on_the_official_layout(official, tmp_path):
    out = tmp_path / "out"
    outcomes = run_benchmark(official, ["mean-face"], out, BenchmarkOptions(device="cpu", show_progress=False),
                             log=lambda text: None)
    assert outcomes["mean-face"].failed == {}
    manifest = json.loads((out / "mean-face" / "run.json").read_text())
    assert manifest["protocol"] == "now"
    stats = manifest["methods"]["mean-face"]["statistics"]
    assert set(stats) == {"multiview_neutral", "selfie", "all"} and stats["all"]["images"] == 3
    assert (out / "mean-face" / "predictions" / "S1" / "multiview_neutral" / "IMG_1.obj").is_file()
    assert (out / "report.html").is_file() and (out / "comparison" / "comparison.md").is_file()


def test_bad_calls(official, tmp_path):
    options = BenchmarkOptions(device="cpu", show_progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        run_benchmark(official, ["nope"], tmp_path / "o", options)
    with pytest.raises(ValueError, match="rnet needs --checkpoint"):
        run_benchmark(official, ["rnet"], tmp_path / "o", options)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        run_benchmark(official, ["rnet"], tmp_path / "o",
                      BenchmarkOptions(checkpoint=tmp_path / "missing.pth"))

"""report.html (offline page, 3D viewer in headless Chromium), GLB / PLY export, and the
quick benchmark end to end."""

import base64
import json
import os
import re

import numpy as np
import pytest
import torch

from faceset.report import MeshView, PhotoPanel, error_colors, render_report

# XML namespace names are identifiers that three.js passes to createElementNS, never fetched.
NAMESPACE_IDENTIFIERS = ("http://www.w3.org/1999/xhtml", "http://www.w3.org/2000/svg")


def fetched_urls(page: str) -> list[str]:
    for name in NAMESPACE_IDENTIFIERS:
        page = page.replace(name, "")
    return re.findall(r"https?://[^\s\"'<>)]*", page)


@pytest.fixture(scope="module")
def mean_face():
    from faceset.synth import default_model
    from recon.face_model import FaceModel

    model = FaceModel(default_model())
    coeffs_id = torch.zeros(1, model.coeff_sizes["id"])
    vertices = model.shape(coeffs_id, torch.zeros(1, model.coeff_sizes["exp"]))[0].numpy()
    albedo = model.albedo(torch.zeros(1, model.coeff_sizes["tex"]))[0].numpy()
    return vertices, model.triangles.numpy(), albedo


def mesh_payload(page: str) -> dict:
    text = re.search(r'<script type="application/json" id="mesh-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(text.replace("<\\/", "</"))


def test_page_is_offline_and_carries_the_mesh(mean_face, tmp_path):
    vertices, triangles, albedo = mean_face
    errors = np.linspace(0, 5, len(vertices))
    errors[:10] = np.nan
    page = render_report("t </script> & <b>", MeshView(vertices, triangles, albedo, errors),
                         photos=[PhotoPanel("a.png", b"\x89PNG\r\n\x1a\nxx", "cap")], summary={"k": 1})
    assert fetched_urls(page) == []
    assert "<script src" not in page and 'type="module"' not in page
    assert "t &lt;/script&gt; &amp; &lt;b&gt;" in page  # the title is escaped
    data = mesh_payload(page)
    decoded = np.frombuffer(base64.b64decode(data["positions"]), "<f4").reshape(-1, 3)
    np.testing.assert_array_equal(decoded, vertices.astype(np.float32))
    faces = np.frombuffer(base64.b64decode(data["triangles"]), "<u4").reshape(-1, 3)
    np.testing.assert_array_equal(faces, triangles)
    colours = np.frombuffer(base64.b64decode(data["error_colors"]), "<f4").reshape(-1, 3)
    np.testing.assert_allclose(colours[:10], 0.55)  # no data: grey
    np.testing.assert_allclose(colours[-1], error_colors(np.array([9.0]))[0])  # capped
    assert 'id="show-error"' in page and "data:image/png;base64," in page
    assert 'id="show-error"' not in render_report("t", MeshView(vertices, triangles, albedo))
    with pytest.raises(ValueError, match="errors must be"):
        MeshView(vertices, triangles, albedo, np.zeros(3))
    with pytest.raises(ValueError, match="index outside"):
        MeshView(vertices[:5], triangles)


def test_glb_and_ply_round_trip(mean_face, tmp_path):
    import trimesh

    from faceset.report import export_mesh_formats
    from recon.constants import MM_PER_UNIT

    vertices, triangles, albedo = mean_face
    paths = export_mesh_formats(tmp_path, "m", vertices, triangles, albedo)
    ply = trimesh.load(paths["m.ply"], process=False)
    np.testing.assert_allclose(ply.vertices, vertices, atol=1e-6)
    np.testing.assert_array_equal(ply.faces, triangles)
    np.testing.assert_array_equal(ply.visual.vertex_colors[:, :3], np.round(np.clip(albedo, 0, 1) * 255))
    glb = trimesh.load(paths["m.glb"], process=False, force="mesh")
    np.testing.assert_allclose(glb.vertices, vertices * MM_PER_UNIT / 1000, atol=1e-6)  # metres
    assert len(glb.faces) == len(triangles)


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    """``faceset synth`` (2 subjects x 2 photos) plus an unusable photo, then the quick
    benchmark of every method without a checkpoint."""
    from PIL import Image

    from faceset.cli import main

    root = tmp_path_factory.mktemp("bench")
    assert main(["synth", str(root / "data"), "--subjects", "2", "--images", "2", "--seed", "3"]) == 0
    Image.new("RGB", (200, 200), (128, 128, 128)).save(root / "data" / "subject_001" / "images" / "blank.png")
    out = root / "out"
    threads = torch.get_num_threads()
    try:  # one thread: the fastest on a shared CPU, and what the README's timing used
        code = main(["--threads", "1", "benchmark", str(root / "data"), "--methods", "all", "--out", str(out), "--quick",
                     "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return root, out


def test_quick_benchmark_end_to_end(benchmark_run, capsys):
    from evaluation.compare import compare_runs
    from faceset.benchmark import METHODS

    root, out = benchmark_run
    methods = [m for m in METHODS if m != "rnet"]
    comparison = compare_runs([out / m for m in methods])
    frame = comparison.frame().set_index("method")
    assert list(frame.index) == methods
    assert (frame["all median"] > 0).all()
    # the mean face is the score of doing nothing: the fits beat it on this set
    assert frame.loc["subject", "all median"] < frame.loc["mean-face", "all median"]
    # the blank photo: predicted by the mean face only, counted and named for the others
    assert frame.loc["mean-face", "missing or failed"] == 0 and frame.loc["mean-face", "scored"] == 5
    for method in methods[1:]:
        failures = json.loads((out / method / "failures.json").read_text())
        assert list(failures["failed"]) == ["subject_001/generated/blank.png"], method
        reason = failures["failed"]["subject_001/generated/blank.png"]
        assert "blank.png" in reason and "staging" not in reason
        assert frame.loc[method, "missing or failed"] == 1 and frame.loc[method, "scored"] == 4
    assert (out / "comparison" / "comparison.md").is_file()
    assert (out / "comparison" / "cumulative_errors.png").is_file()
    index = (out / "report.html").read_text()
    assert fetched_urls(index) == [] and "blank.png" in index
    assert 'href="subject/runs/subject_000/report.html"' in index
    report = out / "subject" / "runs" / "subject_000" / "report.html"
    page = report.read_text()
    assert fetched_urls(page) == [] and 'id="show-error"' in page
    for name in ("subject.glb", "subject.ply", "subject.obj"):
        assert (report.parent / name).is_file()


def browser_or_skip():
    from headless_chromium import browser_available

    reason = browser_available()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs the browser test: {reason}")
        pytest.skip(reason)


def test_report_in_headless_chromium(benchmark_run):
    browser_or_skip()
    from headless_chromium import Browser, find_browser

    _, out = benchmark_run
    report = out / "subject" / "runs" / "subject_000" / "report.html"
    with Browser(find_browser()) as browser:
        browser.open(report.resolve().as_uri())
        assert browser.wait_for("window.FACESET_VIEWER_READY === true"), browser.errors()
        box = browser.element_box("#viewer-canvas")
        assert box["width"] > 100 and box["height"] > 100
        before = browser.screenshot(box)
        background = np.array([0xF4, 0xF4, 0xF4])
        drawn = np.abs(before.astype(int) - background).sum(-1) > 30
        assert drawn.mean() > 0.03, "the 3D canvas is blank"
        centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        browser.drag(centre, (centre[0] + 160, centre[1] + 40))
        assert browser.wait_for("true", 0.5)
        after = browser.screenshot(box)
        assert (np.abs(after.astype(int) - before).sum(-1) > 30).mean() > 0.02, "a drag did not rotate the view"
        browser.evaluate("document.getElementById('show-error').click()")
        error_view = browser.screenshot(box)
        assert (np.abs(error_view.astype(int) - after).sum(-1) > 30).mean() > 0.01, "the error map shows nothing"
        browser.evaluate("document.getElementById('show-wireframe').click()")
        wire = browser.screenshot(box)
        assert (np.abs(wire.astype(int) - error_view).sum(-1) > 30).mean() > 0.01
        assert browser.errors() == []
        assert [u for u in browser.requested_urls() if not u.startswith(("file:", "data:", "blob:"))] == []

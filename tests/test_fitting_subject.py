"""The subject job end to end on a tiny synthetic set with one unusable photo.

The embedded model is built at its coarsest resolution (a real model, only smaller) by
replacing the pipeline's model loader, so the whole job runs in seconds."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import faceset.pipeline as pipeline
from faceset.cli import main
from faceset.options import FitFlags
from faceset.subject import SubjectOptions, reconstruct_subject
from faceset.synth import SynthConfig, synthesize
from recon.face_model import FaceModel
from recon.io import read_coeffs_mat, read_obj


@pytest.fixture()
def photo_set(tmp_path, tiny_model, monkeypatch):
    synthesize(tmp_path / "synth", SynthConfig(subjects=1, images=3, seed=2, image_size=(160, 200),
                                               occluder_probability=0.0), tiny_model)
    photos = tmp_path / "synth" / "subject_000" / "images"
    # a photo without a face (and without detection or landmark files)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(photos / "zz_noface.png")
    monkeypatch.setattr(pipeline, "load_face_model",
                        lambda bfm, device: FaceModel(tiny_model).to(device))
    return photos


def test_subject_job_fits_the_rest_and_reports_the_unusable_photo(photo_set, tmp_path):
    out = tmp_path / "out"
    options = SubjectOptions(flags=FitFlags(iters=6), show_progress=False)
    options.reconstruct.device = "cpu"
    result = reconstruct_subject(photo_set, out, options)
    assert list(result.failed) == ["zz_noface.png"]
    assert result.stems == [f"subject_000_{k:02d}" for k in range(3)]
    assert all(torch.equal(result.fitted.id[0], result.fitted.id[k]) for k in range(3))
    torch.testing.assert_close(result.fused.id[0], result.fitted.id[0])
    assert float(result.fused.exp.abs().max()) == 0.0
    report = json.loads((out / "fit_report.json").read_text())
    assert report["failed"].keys() == {"zz_noface.png"} and len(report["history"]) == sum(report["iterations_per_level"])
    mesh = read_obj(out / "subject.obj")
    assert mesh["uvs"] is not None and mesh["colors"] is not None
    assert "mtllib subject.mtl" in (out / "subject.obj").read_text()
    assert Image.open(out / "subject_texture.png").size == (512, 512)
    saved = read_coeffs_mat(out / "subject.mat")
    np.testing.assert_allclose(saved["id"], result.fused.id[0].numpy(), rtol=1e-6)
    for stem in result.stems:
        for suffix in (".obj", ".mat", ".png", "_canonical.obj", "_transform.json"):
            assert (out / f"{stem}{suffix}").is_file()
        per_image = read_coeffs_mat(out / f"{stem}.mat")
        np.testing.assert_allclose(per_image["id"], saved["id"], rtol=1e-6)
    overlays = Image.open(out / "fit_overlays.png")
    assert overlays.size == (672, 24 + 3 * 224)  # a row of column labels, then the photos
    assert Image.open(out / "fit_losses.png").size[0] > 0


def test_fit_command_per_image_and_resume(photo_set, tmp_path):
    out = tmp_path / "fit"
    code = main(["fit", str(photo_set), "--out", str(out), "--iters", "3", "--device", "cpu"])
    assert code == 1  # one photo failed, the rest were written
    first = read_coeffs_mat(out / "subject_000_00.mat")
    assert not np.allclose(first["id"], read_coeffs_mat(out / "subject_000_01.mat")["id"])
    assert (out / "fused.obj").is_file() and (out / "fused.mat").is_file()
    first_report = json.loads((out / "fit_report.json").read_text())
    # --resume starts from the written .mat files: the new start is the old result
    code = main(["fit", str(photo_set), "--out", str(out), "--iters", "3", "--device", "cpu", "--resume"])
    assert code == 1
    report = json.loads((out / "fit_report.json").read_text())
    assert report["failed"].keys() == {"zz_noface.png"}
    np.testing.assert_allclose(report["landmark_rmse_px_before"], first_report["landmark_rmse_px_after"],
                               atol=1e-3)


def test_lpips_without_the_extra_fails_before_fitting(tmp_path):
    import importlib.util

    from faceset.subject import SubjectOptions, refine_folder
    if importlib.util.find_spec("lpips") is not None:
        pytest.skip("lpips is installed here")
    with pytest.raises(ImportError, match="faceset\\[lpips\\]"):
        refine_folder(tmp_path, tmp_path / "out", SubjectOptions(flags=FitFlags(lpips=True)), joint=True)


def test_no_silhouette_and_no_contrast_options_select_the_original_objective():
    from faceset.cli import build_parser
    from faceset.commands.fit_job import FitJob
    parser = build_parser()

    def options_from_args(args):
        return FitJob.from_args(args, joint=args.subject).subject_options()
    default = options_from_args(parser.parse_args(["fit", "photos", "--out", "out"]))
    original = options_from_args(parser.parse_args(["reconstruct", "photos", "--subject", "--out", "out",
                                                    "--no-silhouette", "--no-contrast"]))
    assert default.fit_config().silhouette_weight is not None and default.fit_config().weights.contrast > 0
    assert original.fit_config().silhouette_weight is None and original.fit_config().weights.contrast == 0
    assert options_from_args(parser.parse_args(["fit", "photos", "--out", "out", "--no-contrast"])).fit_config().silhouette_weight


def test_cli_options_reach_the_job_once_converted():
    """Every model flag lands in its ReconstructOptions field; fit flags without --subject
    are refused instead of ignored."""
    from faceset.cli import build_parser
    from faceset.commands.fit_job import FitJob
    from faceset.commands.reconstruct import ReconstructCommand
    from faceset.options import ReconstructOptions
    parser = build_parser()
    args = parser.parse_args(["reconstruct", "photos", "--out", "out", "--subject", "--renderer", "torch",
                              "--landmarks", "68", "--slide-contour", "--no-exif-focal", "--face", "1",
                              "--iters", "30", "--identity", "dlib"])
    job = FitJob.from_args(args, joint=True)
    assert job.model == ReconstructOptions(renderer_backend="torch", landmarks="68", slide_contour=True,
                                           exif_focal=False, face_index=1)
    options = job.subject_options()
    assert (options.flags, options.reconstruct) == (FitFlags(iters=30, identity="dlib"), job.model)
    plain = ReconstructCommand.from_args(parser.parse_args(["reconstruct", "photos", "--out", "out",
                                                            "--renderer-backend", "torch"]))
    assert plain.options == ReconstructOptions(renderer_backend="torch")
    with pytest.raises(ValueError, match="--iters, --no-contrast: option"):
        ReconstructCommand.from_args(parser.parse_args(["reconstruct", "photos", "--out", "out",
                                                        "--iters", "30", "--no-contrast"]))

"""A fit on photos the fitted model did not render (``faceset synth --realism photo``): given
the photos' exact 68 landmarks, the default fit should not end further from them than the
landmark initialiser started (issue 12).

It does today: the fit's final pose / expression refit (``FitConfig.refit_landmarks``)
brings the points back from 3.03 px to 1.87 px here, against the initialiser's 1.34 px (1.45 px
before the per-image fit's prior became 4x the joint fit's, PER_IMAGE_PRIOR_SCALE). The rest is
the identity, which the refit keeps: the fit's prior (and the expression prior 16x the
identity's) is much stronger than the initialiser's against its landmark weight, so the
identity stays nearer the mean face than the points would put it. Weighting the landmarks as
the initialiser does costs accuracy on the out-of-model benchmark, whose detector points are
biased (benchmarks/results/fit_eval_photo.md), and the stronger per-image prior is what keeps
the per-image fit above the mean face on held-out sets and the real photos' landmarks within
0.25 px of the initialiser's. Strict xfail: it reports when this holds."""

import numpy as np
import pytest
import torch

import faceset.pipeline as pipeline
from faceset.photoreal.generate import PhotoConfig, synthesize_photos
from faceset.pipeline import ReconstructOptions, Reconstructor
from faceset.subject import SubjectOptions, prepare_photos
from fitting import FitConfig, FitTargets, fit_images
from recon.crop_camera import with_intrinsics
from recon.face_model import FaceModel


@pytest.fixture(scope="module")
def out_of_model(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("photoreal")
    synthesize_photos(folder, PhotoConfig(subjects=1, images=3, seed=7, image_size=(160, 200), texture_size=128,
                                          occluder_probability=0.0), tiny_model)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(pipeline, "load_face_model", lambda bfm, device: FaceModel(tiny_model).to(device))
    reconstructor = Reconstructor(ReconstructOptions(device="cpu", init="landmarks"))
    monkeypatch.undo()
    photos, failed = prepare_photos(folder / "subject_000" / "images", SubjectOptions())
    assert not failed, failed
    targets = FitTargets(torch.stack([p.crop_tensor() for p in photos]),
                         torch.tensor(np.stack([p.landmarks68 for p in photos]), dtype=torch.float32),
                         intrinsics=reconstructor.intrinsics(photos))
    init = reconstructor.coefficients(photos)
    return reconstructor.face_model, targets, init


def _rmse(face_model, coeffs, targets) -> float:
    with torch.no_grad():
        geometry = with_intrinsics(face_model.compute(coeffs, with_color=False), face_model.camera,
                                   face_model.landmark_ids, targets.intrinsics)
    return float(((geometry.landmarks - targets.landmarks) ** 2).sum(-1).mean().sqrt())


@pytest.mark.xfail(strict=True, reason="issue 12 open: the fitted identity is off the landmarks by 0.5 px (module docstring)")
def test_fit_does_not_leave_the_exact_landmarks(out_of_model):
    face_model, targets, init = out_of_model
    result = fit_images(face_model, targets, init, FitConfig().with_total_iterations(60))
    before, after = _rmse(face_model, init, targets), _rmse(face_model, result.coeffs, targets)
    assert after <= before + 0.05, f"landmark RMSE {before:.2f} -> {after:.2f} px"

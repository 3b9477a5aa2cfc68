"""``reconstruct --subject --aggregate cnet --cnet NAME|FILE``: the subject job fuses its start
identity with a C-Net (freshly trained here by ``faceset train-cnet``) reading the job's
R-Net features; and the options' checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

ARCH = "mobilenet_v3_small"


@pytest.fixture(scope="module")
def person(tmp_path_factory, small_photo_sets):
    """One out-of-model person with three photos (and landmark files)."""
    return small_photo_sets(tmp_path_factory.mktemp("cnet_person"), subjects=1, images=3, seed=21)


@pytest.fixture(scope="module")
def rnet_file(tmp_path_factory, person, spread_rnet):
    """A MobileNet R-Net checkpoint (the original's format) whose identities differ between
    the photos (``spread_rnet``)."""
    net = spread_rnet([person / "subject_000" / "images"], ARCH, seed=3)
    path = tmp_path_factory.mktemp("rnet") / "rnet.pth"
    torch.save({"net_recon": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def cnet_file(tmp_path_factory, person, rnet_file):
    """A C-Net file written by ``faceset train-cnet`` (2 small steps), its output layer then
    redrawn at random: two steps from the zero-initialised layer (the plain mean) leave the
    confidences equal to 1e-4, and this test needs a C-Net that weighs photos unequally
    (a large learning rate instead silences the hidden ReLUs: equal weights again)."""
    from aggregation.cnet import load_cnet, save_cnet
    from faceset.cli import main
    path = tmp_path_factory.mktemp("cnet") / "tiny.pth"
    assert main(["train-cnet", str(person), "--checkpoint", str(rnet_file), "--arch", ARCH,
                 "--out", str(path), "--steps", "2", "--max-photos", "3",
                 "--renderer", "torch", "--no-progress", "--log-every", "1"]) == 0
    cnet, record = load_cnet(path)
    torch.manual_seed(5)
    with torch.no_grad():
        torch.nn.init.normal_(cnet.layers[-1].weight, std=10.0)
    save_cnet(path, cnet, record)
    return path


def crops(folder, stems) -> torch.Tensor:
    """(M, 3, 224, 224): the aligned inputs, the first panel of each written <stem>.png."""
    rows = []
    for stem in stems:
        with Image.open(folder / f"{stem}.png") as image:
            panel = np.asarray(image.convert("RGB"))[:, :224]
        rows.append(torch.from_numpy(panel.astype(np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(rows)


def test_subject_job_starts_from_the_cnet_fusion(tmp_path, person, rnet_file, cnet_file):
    from aggregation import aggregate
    from aggregation.cnet import load_cnet
    from faceset.pipeline import ReconstructOptions
    from faceset.options import FitFlags
    from faceset.subject import SubjectOptions, refine_folder
    from recon.rnet import load_checkpoint
    options = SubjectOptions(
        reconstruct=ReconstructOptions(device="cpu", checkpoint=rnet_file, arch=ARCH, renderer_backend="torch"),
        flags=FitFlags(iters=3, aggregate="cnet", cnet=cnet_file),
        show_progress=False)
    out = tmp_path / "out"
    recon = refine_folder(person / "subject_000" / "images", out, options, joint=True)
    assert len(recon.stems) == 3 and recon.start is not None
    # independently: the R-Net's features of the written crops, the C-Net's weighted mean
    cnet, _ = load_cnet(cnet_file)
    rnet = load_checkpoint(rnet_file, ARCH)
    with torch.no_grad():
        features = rnet.features(crops(out, recon.stems))
    expected = aggregate("cnet", None, recon.initial, features=features, cnet=cnet)
    torch.testing.assert_close(recon.start.id, expected.id, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(recon.start.tex, expected.tex, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(recon.start.weights, expected.weights, rtol=1e-4, atol=1e-5)
    # the photos' identities differ and the trained C-Net weighs them unequally: not the mean
    assert recon.initial.id.std(0).mean() > 0.1
    assert not torch.allclose(recon.start.weights, torch.full_like(recon.start.weights, 1 / 3), atol=1e-4)
    assert (out / "subject.obj").is_file() and (out / "fit_report.json").is_file()


def test_cnet_options_of_the_fit_jobs(tmp_path, person, rnet_file, cnet_file, capsys):
    from faceset.cli import build_parser, main
    from faceset.commands.fit_job import FitJob
    photos = person / "subject_000" / "images"
    base = ["reconstruct", str(photos), "--out", str(tmp_path / "o"), "--subject"]
    args = build_parser().parse_args(base + ["--aggregate", "cnet", "--cnet", str(cnet_file),
                                             "--checkpoint", str(rnet_file), "--arch", ARCH])
    options = FitJob.from_args(args, joint=True).subject_options()
    assert options.aggregation_config().method == "cnet" and options.flags.cnet == str(cnet_file)
    default = FitJob.from_args(build_parser().parse_args(base), joint=True).subject_options()
    assert default.aggregation_config().method == "confidence" and default.flags.cnet is None
    assert main(base + ["--aggregate", "cnet"]) == 2
    assert "--aggregate cnet and --cnet" in capsys.readouterr().err
    assert main(base + ["--cnet", str(cnet_file)]) == 2
    assert main(["reconstruct", str(photos), "--out", str(tmp_path / "p"), "--aggregate", "mean"]) == 2
    assert "--aggregate" in capsys.readouterr().err
    # the C-Net reads R-Net features: the landmark initialiser has none
    assert main(base + ["--aggregate", "cnet", "--cnet", str(cnet_file), "--init", "landmarks",
                        "--iters", "3"]) == 2
    assert "landmark initialiser" in capsys.readouterr().err

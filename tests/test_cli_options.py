"""Every command converts its parsed arguments once into its options dataclass: the
parser's defaults are the dataclass's, and every field has its flag."""

import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from faceset.cli import build_parser
from faceset.commands.benchmark import BenchmarkCommand
from faceset.commands.compare import CompareCommand
from faceset.commands.convert_bfm import ConvertBfmCommand
from faceset.commands.demo import DemoCommand
from faceset.commands.evaluate import IcpEvaluation, NowEvaluation
from faceset.commands.fit_job import FitJob
from faceset.commands.synth import SynthCommand
from faceset.commands.train import TrainCommand
from faceset.commands.train_cnet import TrainCnetCommand
from faceset.options import BenchmarkOptions

# argv with only the required arguments -> the dataclass with only those fields given
MINIMAL = [
    (["synth", "o"], SynthCommand(out="o")),
    (["demo"], DemoCommand()),
    (["convert-bfm", "d"], ConvertBfmCommand(bfm_dir=Path("d"))),
    (["compare", "r1", "r2", "--out", "o"],
     CompareCommand(runs=[Path("r1"), Path("r2")], out=Path("o"))),
    (["evaluate", "now", "--dataset", "d", "--predictions", "p", "--out", "o"],
     NowEvaluation(dataset=Path("d"), predictions=Path("p"), out=Path("o"))),
    (["evaluate", "micc", "--gt-dir", "g", "--predictions", "p", "--out", "o"],
     IcpEvaluation(protocol="micc", gt_dir=Path("g"), predictions=Path("p"), out=Path("o"))),
    (["evaluate", "facewarehouse", "--gt-dir", "g", "--predictions", "p", "--out", "o"],
     IcpEvaluation(protocol="facewarehouse", gt_dir=Path("g"), predictions=Path("p"), out=Path("o"))),
    (["benchmark", "d", "--methods", "fit", "--out", "o"],
     BenchmarkCommand(dataset=Path("d"), methods="fit", out=Path("o"))),
    (["train-cnet", "d", "--checkpoint", "c", "--name", "n"],
     TrainCnetCommand(data_dirs=[Path("d")], checkpoint=Path("c"), name="n")),
]


@pytest.mark.parametrize("argv, expected", MINIMAL, ids=[" ".join(a[:2]) for a, _ in MINIMAL])
def test_parser_defaults_are_the_dataclass_defaults(argv, expected):
    assert type(expected).from_args(build_parser().parse_args(argv)) == expected


def _dests(words) -> set[str]:
    """The ``dest`` of every argument on the way to the (sub)command that ``words`` name."""
    parser, dests = build_parser(), set()
    for word in words:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            break
        dests.add(sub.dest)
        parser = sub.choices[word]
        dests |= {a.dest for a in parser._actions}
    return dests


@pytest.mark.parametrize("argv, expected", MINIMAL, ids=[" ".join(a[:2]) for a, _ in MINIMAL])
def test_every_field_has_a_flag(argv, expected):
    """``from_args`` leaves a field without a flag at its default silently: there is none."""
    words = [w for w in argv if not w.startswith("-")][:2]
    dests = _dests(words)
    nested = {"options"} if isinstance(expected, BenchmarkCommand) else set()
    missing = {f.name for f in fields(expected) if f.init} - dests - nested
    assert not missing
    if isinstance(expected, BenchmarkCommand):   # its options: all but show_progress (--quiet)
        assert {f.name for f in fields(BenchmarkOptions)} - dests == {"show_progress"}


def test_given_flags_reach_their_fields():
    parser = build_parser()
    synth = SynthCommand.from_args(parser.parse_args(
        ["synth", "o", "--subjects", "2", "--images", "5", "--seed", "4", "--realism", "photo",
         "--detail-mm", "0.5", "--occluder-probability", "0", "--model-resolution", "40"]))
    assert synth == SynthCommand(out="o", subjects=2, images=5, seed=4, realism="photo", detail_mm=0.5,
                                 occluder_probability=0.0, model_resolution=40)
    assert synth.generator_options()["occluder_probability"] == 0.0
    bench = BenchmarkCommand.from_args(parser.parse_args(
        ["benchmark", "d", "--methods", "all", "--out", "o", "--iters", "7", "--quick", "--quiet"]))
    assert bench.options == BenchmarkOptions(iterations=7, show_progress=False)
    assert bench.run_options() == BenchmarkOptions(iterations=7, subjects=2, photos=3, show_progress=False)
    assert "rnet" not in bench.method_list()
    micc = IcpEvaluation.from_args(parser.parse_args(
        ["evaluate", "micc", "--gt-dir", "g", "--predictions", "p", "--out", "o", "--forehead-cut", "0"]))
    assert micc.forehead_cut_mm() is None
    assert IcpEvaluation(protocol="micc", gt_dir=Path("g"), predictions=Path("p"),
                         out=Path("o")).forehead_cut_mm() == 65.0


def test_synth_defaults_are_the_generators():
    from faceset.photoreal.generate import PhotoConfig
    from faceset.synth import SynthConfig
    options = SynthCommand(out="o").generator_options()
    assert SynthConfig(**options) == SynthConfig()
    assert PhotoConfig(**options) == PhotoConfig()


def test_train_commands_defaults_are_their_configs():
    from aggregation.cnet_training import CNetTrainConfig
    from recon.training.config import TrainConfig
    parser = build_parser()
    train = TrainCommand.from_args(parser.parse_args(["train", "d", "--out", "o"]))
    assert train == TrainCommand(config=TrainConfig(data_dirs=[Path("d")], out=Path("o")))
    cnet = TrainCnetCommand(data_dirs=[Path("d")], checkpoint=Path("c"))
    assert cnet.train_config(Path("o")) == CNetTrainConfig(data_dirs=[Path("d")], out=Path("o"))


def test_fit_job_defaults():
    args = build_parser().parse_args(["fit", "p", "--out", "o"])
    assert FitJob.from_args(args, joint=False) == FitJob(img_dir=Path("p"), out=Path("o"), joint=False)

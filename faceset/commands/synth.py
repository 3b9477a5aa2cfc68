"""``faceset synth OUT --subjects N --images M [--seed S] [--realism model|photo]``: synthetic
photo sets with truth.

``--realism model`` (default) renders with the fitted model itself (its renderer, SH shading
and prior; ``faceset.synth``); ``--realism photo`` uses the out-of-model generator
(``faceset.photoreal``): a denser surface with shapes outside the basis and prior, its own
rasterizer with shadows, specular, ambient occlusion and painted skin, wide-angle to
telephoto cameras, cluttered backgrounds, occluders, noise and JPEG photos."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

from faceset.commands import CommandOptions
from faceset.options import SyntheticSet

REALISMS = ("model", "photo")


@dataclass(kw_only=True)
class SynthCommand(SyntheticSet, CommandOptions):
    """``faceset synth``'s options, one field per flag: the set (``SyntheticSet``); out: the
    output folder (as typed); occluder_probability: None keeps the generator's own
    (``faceset.synth.SynthConfig`` 0.25, ``faceset.photoreal.generate.PhotoConfig`` 0.3);
    model_resolution: rows of the embedded model grid (None: its default). The other
    defaults are both generators'."""

    out: str
    realism: str = "model"
    detail_mm: float = 2.0
    occluder_probability: Optional[float] = None
    model_resolution: Optional[int] = None

    def validate(self) -> "SynthCommand":
        if self.subjects < 1 or self.images < 1:
            raise ValueError("--subjects and --images must be at least 1")
        if self.occluder_probability is not None and not 0.0 <= self.occluder_probability <= 1.0:
            raise ValueError(f"--occluder-probability is a probability (0 to 1), "
                             f"got {self.occluder_probability}")
        if not 0.0 <= self.detail_mm < float("inf"):
            raise ValueError(f"--detail-mm must be 0 or more, got {self.detail_mm}")
        return self

    def generator_options(self) -> dict:
        """The keyword arguments of the generator's config (SynthConfig or PhotoConfig)."""
        options = {"subjects": self.subjects, "images": self.images, "seed": self.seed,
                   "detail_mm": self.detail_mm, "model_resolution": self.model_resolution}
        if self.occluder_probability is not None:
            options["occluder_probability"] = self.occluder_probability
        return options

    def run(self) -> int:
        from faceset.errors import prepare_output_dir

        self.validate()
        prepare_output_dir(self.out)
        if self.realism == "photo":
            from faceset.photoreal.generate import PhotoConfig, synthesize_photos
            manifest = synthesize_photos(self.out, PhotoConfig(**self.generator_options()))
        else:
            from faceset.synth import SynthConfig, synthesize
            manifest = synthesize(self.out, SynthConfig(**self.generator_options()))
        count = sum(len(s["images"]) for s in manifest["subjects"].values())
        print(f"wrote {len(manifest['subjects'])} subjects, {count} photos to {self.out}")
        return 0


def register(subparsers) -> None:
    defaults = SynthCommand   # its class attributes are the field defaults
    parser = subparsers.add_parser(
        "synth", help="generate synthetic photo sets with ground-truth meshes and landmarks",
        description="Render synthetic photo sets from the embedded face model (plus detail it "
                    "cannot express): photos, 5-point detections, 68 true landmarks, true "
                    "coefficients, and per subject a NoW-layout scan in millimetres.")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--subjects", type=int, default=defaults.subjects,
                        help=f"number of people (default {defaults.subjects})")
    parser.add_argument("--images", type=int, default=defaults.images,
                        help=f"photos per person (default {defaults.images})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help=f"random seed (default {defaults.seed})")
    parser.add_argument("--realism", choices=REALISMS, default=defaults.realism,
                        help="model: render with the fitted model itself (default); photo: the "
                             "out-of-model generator (own renderer, shapes and light outside the "
                             "model, .jpg photos)")
    parser.add_argument("--detail-mm", type=float, default=defaults.detail_mm,
                        help=f"RMS of the unmodellable surface detail in mm (default {defaults.detail_mm:g})")
    parser.add_argument("--occluder-probability", type=float, default=defaults.occluder_probability,
                        help="chance that a photo gets an occluder (default 0.25; 0.3 with "
                             "--realism photo)")
    parser.add_argument("--model-resolution", type=int, default=defaults.model_resolution,
                        help="rows of the embedded model grid (default: its own default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return SynthCommand.from_args(args).run()

"""``faceset synth OUT --subjects N --images M [--seed S] [--realism model|photo]``: synthetic
photo sets with truth.

``--realism model`` (default) renders with the fitted model itself (its renderer, SH shading
and prior; ``faceset.synth``); ``--realism photo`` uses the out-of-model generator
(``faceset.photoreal``): a denser surface with shapes outside the basis and prior, its own
rasterizer with shadows, specular, ambient occlusion and painted skin, wide-angle to
telephoto cameras, cluttered backgrounds, occluders, noise and JPEG photos."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth", help="generate synthetic photo sets with ground-truth meshes and landmarks",
        description="Render synthetic photo sets from the embedded face model (plus detail it "
                    "cannot express): photos, 5-point detections, 68 true landmarks, true "
                    "coefficients, and per subject a NoW-layout scan in millimetres.")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--subjects", type=int, default=3, help="number of people (default 3)")
    parser.add_argument("--images", type=int, default=8, help="photos per person (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--realism", choices=("model", "photo"), default="model",
                        help="model: render with the fitted model itself (default); photo: the "
                             "out-of-model generator (own renderer, shapes and light outside the "
                             "model, .jpg photos)")
    parser.add_argument("--detail-mm", type=float, default=2.0,
                        help="RMS of the unmodellable surface detail in mm (default 2)")
    parser.add_argument("--occluder-probability", type=float, default=None,
                        help="chance that a photo gets an occluder (default 0.25; 0.3 with "
                             "--realism photo)")
    parser.add_argument("--model-resolution", type=int, default=None,
                        help="rows of the embedded model grid (default: its own default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from faceset.synth import SynthConfig, synthesize

    from faceset.errors import prepare_output_dir

    if args.subjects < 1 or args.images < 1:
        raise ValueError("--subjects and --images must be at least 1")
    if args.occluder_probability is not None and not 0.0 <= args.occluder_probability <= 1.0:
        raise ValueError(f"--occluder-probability is a probability (0 to 1), "
                         f"got {args.occluder_probability}")
    if not 0.0 <= args.detail_mm < float("inf"):
        raise ValueError(f"--detail-mm must be 0 or more, got {args.detail_mm}")
    prepare_output_dir(args.out)
    options = {"subjects": args.subjects, "images": args.images, "seed": args.seed,
               "detail_mm": args.detail_mm, "model_resolution": args.model_resolution}
    if args.occluder_probability is not None:
        options["occluder_probability"] = args.occluder_probability
    if args.realism == "photo":
        from faceset.photoreal.generate import PhotoConfig, synthesize_photos
        manifest = synthesize_photos(args.out, PhotoConfig(**options))
    else:
        manifest = synthesize(args.out, SynthConfig(**options))
    count = sum(len(s["images"]) for s in manifest["subjects"].values())
    print(f"wrote {len(manifest['subjects'])} subjects, {count} photos to {args.out}")
    return 0

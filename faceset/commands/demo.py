"""``faceset demo``: the main job on a public-domain photo shipped by scikit-image."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="reconstruct scikit-image's 'astronaut' photo with the embedded model",
        description="Write scikit-image's public-domain 'astronaut' photo (Eileen Collins, NASA) "
                    "to OUT/photos/ and run 'faceset reconstruct' on it with the embedded model: "
                    "no downloads, no licensed files.")
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import skimage.data
    from PIL import Image

    from faceset.errors import prepare_output_dir
    from faceset.pipeline import ReconstructOptions, reconstruct_folder
    prepare_output_dir(args.out)
    photos = args.out / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    photo = photos / "astronaut.png"
    if not photo.exists():
        Image.fromarray(skimage.data.astronaut()).save(photo)
    report = reconstruct_folder(photos, args.out, ReconstructOptions(device=args.device, overwrite=True))
    print(report.summary())
    for suffix in (".png", ".obj", ".mat", "_canonical.obj", "_transform.json"):
        print(f"  {args.out / ('astronaut' + suffix)}")
    return 1 if report.failed else 0

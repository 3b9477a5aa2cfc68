"""``faceset demo``: the main job on a public-domain photo shipped by scikit-image."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from faceset.commands import CommandOptions

OUTPUT_SUFFIXES = (".png", ".obj", ".mat", "_canonical.obj", "_transform.json")


@dataclass
class DemoCommand(CommandOptions):
    """``faceset demo``'s options: out, the output folder; device: cpu, cuda or auto."""

    out: Path = Path("demo_out")
    device: str = "auto"

    def run(self) -> int:
        import skimage.data
        from PIL import Image

        from faceset.errors import prepare_output_dir
        from faceset.pipeline import ReconstructOptions, reconstruct_folder
        prepare_output_dir(self.out)
        photos = self.out / "photos"
        photos.mkdir(parents=True, exist_ok=True)
        photo = photos / "astronaut.png"
        if not photo.exists():
            Image.fromarray(skimage.data.astronaut()).save(photo)
        report = reconstruct_folder(photos, self.out, ReconstructOptions(device=self.device, overwrite=True))
        print(report.summary())
        for suffix in OUTPUT_SUFFIXES:
            print(f"  {self.out / ('astronaut' + suffix)}")
        return 1 if report.failed else 0


def register(subparsers) -> None:
    defaults = DemoCommand()
    parser = subparsers.add_parser(
        "demo", help="reconstruct scikit-image's 'astronaut' photo with the embedded model",
        description="Write scikit-image's public-domain 'astronaut' photo (Eileen Collins, NASA) "
                    "to OUT/photos/ and run 'faceset reconstruct' on it with the embedded model: "
                    "no downloads, no licensed files.")
    parser.add_argument("--out", type=Path, default=defaults.out,
                        help=f"output folder (default {defaults.out})")
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or auto (default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return DemoCommand.from_args(args).run()

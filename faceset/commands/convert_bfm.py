"""``faceset convert-bfm``: BFM09 + Exp_Pca.bin -> the original's BFM_model_front.mat."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from faceset.commands import CommandOptions


@dataclass
class ConvertBfmCommand(CommandOptions):
    """``faceset convert-bfm``'s options: bfm_dir, the BFM09 files' folder; out, the output
    file (None: ``bfm_dir/BFM_model_front.mat``)."""

    bfm_dir: Path
    out: Optional[Path] = None

    def run(self) -> int:
        from faceset.errors import prepare_output_file
        from recon.models.bfm import FRONT_MODEL_FILE, convert_bfm09, load_bfm_front
        if not self.bfm_dir.is_dir():
            raise FileNotFoundError(f"{self.bfm_dir}: no such folder (the BFM09 files' folder)")
        prepare_output_file(self.out or self.bfm_dir / FRONT_MODEL_FILE, "converted model file")
        path = convert_bfm09(self.bfm_dir, self.out)
        model = load_bfm_front(path)
        print(f"wrote {path}: {model.n_vertices} vertices, {model.n_triangles} triangles")
        return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert-bfm", help="convert BFM09 to the original's BFM_model_front.mat",
        description="Read 01_MorphableModel.mat (BFM09), Exp_Pca.bin (Guo et al.) and the "
                    "original repo's helper files (BFM_front_idx.mat, BFM_exp_idx.mat, "
                    "facemodel_info.mat, std_exp.txt) from DIR and write BFM_model_front.mat "
                    "exactly as the original's converter does.")
    parser.add_argument("bfm_dir", type=Path, metavar="DIR")
    parser.add_argument("--out", type=Path, default=ConvertBfmCommand.out,
                        help="output file (default DIR/BFM_model_front.mat)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return ConvertBfmCommand.from_args(args).run()

"""``faceset aggregate RESULTS_DIR --method mean|confidence|cnet --out OUT``: fuse the
per-photo ``.mat`` files of a results folder into one subject (SPEC 9)."""

from __future__ import annotations

import argparse
from pathlib import Path

from recon.constants import RNET_ARCHITECTURES as ARCHES

METHODS = ("mean", "confidence", "cnet")            # aggregation.methods.AGGREGATION_METHODS
NOT_PER_PHOTO = ("subject.mat", "fused.mat")      # what reconstruct --subject / fit write besides
CROP_PANEL = 224                                  # <stem>.png: the aligned input is its first panel


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "aggregate", help="fuse the per-photo .mat files of a results folder into one subject",
        description="Read every per-photo <stem>.mat in RESULTS_DIR (what 'faceset reconstruct' "
                    "and the original's test.py write: id, exp, tex, angle, gamma, trans "
                    "float32 (1, K)) and fuse one identity and albedo: 'mean' (the authors' "
                    "average), 'confidence' (landmark-information weighted; the .mat holds no "
                    "detected landmarks, so each photo's fit-quality factor is 1) or 'cnet' "
                    "(a trained C-Net reading R-Net's features of the aligned input, the first "
                    "224 x 224 panel of <stem>.png; needs --cnet and the R-Net --checkpoint it "
                    "was trained with). Writes OUT/subject.mat (fused id and tex, exp, pose "
                    "and light zero; 'weights': each photo's share per identity coefficient; "
                    "'photos'), OUT/subject.obj (the neutral canonical mesh, albedo colours, "
                    "model units) and OUT/subject_lmk7.npy (its 7 NoW landmarks).")
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR",
                        help="folder of per-photo .mat files")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--method", default="mean", choices=METHODS,
                        help="fusion rule (default mean)")
    parser.add_argument("--cnet", default=None, metavar="NAME|FILE",
                        help="C-Net for --method cnet: a file, or a name saved by 'faceset "
                             "train-cnet' ($FACESET_CACHE/cnet/NAME.pth)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the R-Net checkpoint whose features the C-Net reads")
    parser.add_argument("--arch", default="resnet50", choices=ARCHES,
                        help="that R-Net's backbone (default resnet50)")
    parser.add_argument("--bfm", type=Path, default=None,
                        help="BFM folder or BFM_model_front.mat; default: the embedded model")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.set_defaults(func=run)


def per_photo_files(results: Path) -> list[Path]:
    from faceset.errors import UserError
    if not results.is_dir():
        raise UserError(f"{results}: no such results folder")
    files = sorted(p for p in results.glob("*.mat") if p.name not in NOT_PER_PHOTO)
    if not files:
        raise UserError(f"{results}: no per-photo .mat file to aggregate")
    return files


def read_coefficients(files: list[Path], sizes: dict[str, int], device):
    """(M, ...) Coeffs of the files, each checked against the face model's sizes."""
    import torch
    from recon.io import read_coeffs_mat
    from recon.types import Coeffs
    rows = []
    for path in files:
        data = read_coeffs_mat(path)
        wrong = {g: data[g].size for g in Coeffs.GROUPS if data[g].size != sizes[g]}
        if wrong:
            raise ValueError(f"{path}: coefficient sizes {wrong} do not fit the face model's "
                             f"{ {g: sizes[g] for g in wrong} } (another model? see --bfm)")
        if not all(torch.isfinite(torch.from_numpy(data[g])).all() for g in Coeffs.GROUPS):
            raise ValueError(f"{path}: non-finite coefficients")
        rows.append(Coeffs(**{g: torch.from_numpy(data[g])[None] for g in Coeffs.GROUPS}))
    return Coeffs.cat(rows).map(lambda t: t.to(device))


def aligned_crops(files: list[Path], device):
    """(M, 3, 224, 224) RGB in [0, 1]: the first panel of each ``<stem>.png``."""
    import numpy as np
    import torch
    from PIL import Image
    crops = []
    for path in files:
        png = path.with_suffix(".png")
        try:
            with Image.open(png) as image:
                pixels = np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{png}: cannot read the aligned input for the C-Net ({err})") from None
        if pixels.shape[0] != CROP_PANEL or pixels.shape[1] < CROP_PANEL:
            raise ValueError(f"{png}: {pixels.shape[1]}x{pixels.shape[0]}, not the 224-high "
                             "panels reconstruct writes")
        crops.append(torch.from_numpy(pixels[:, :CROP_PANEL].astype(np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(crops).to(device)


def cnet_inputs(args, files: list[Path], face_model, device):
    """(C-Net, features (M, C)) for --method cnet."""
    import torch
    from aggregation.cnet import check_rnet, load_cnet, resolve_cnet
    from faceset.errors import UserError
    from recon.rnet import load_checkpoint
    if args.cnet is None or args.checkpoint is None:
        raise UserError("--method cnet needs --cnet (the C-Net) and --checkpoint (its R-Net)")
    cnet, record = load_cnet(args.cnet, device)
    rnet = load_checkpoint(args.checkpoint, args.arch, device, sizes=face_model.coeff_sizes).to(device)
    check_rnet(record, rnet, str(resolve_cnet(args.cnet)))
    with torch.no_grad():
        features = rnet.features(aligned_crops(files, device))
    return cnet.to(device), features


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from aggregation.identity import neutral_coeffs
    from aggregation.methods import aggregate
    from faceset.errors import prepare_output_dir
    from recon import constants as C
    from recon.io import write_coeffs_mat, write_npy, write_obj
    from recon.models import load_face_model

    files = per_photo_files(args.results)
    out = prepare_output_dir(args.out)
    device = torch.device(args.device)
    face_model = load_face_model(args.bfm, device)
    coeffs = read_coefficients(files, face_model.coeff_sizes, device)
    cnet, features = cnet_inputs(args, files, face_model, device) if args.method == "cnet" else (None, None)
    fused = aggregate(args.method, face_model, coeffs, features=features, cnet=cnet)
    neutral = neutral_coeffs(fused, face_model.coeff_sizes)
    with torch.no_grad():
        geometry = face_model.compute(neutral, with_color=False)
    stems = [p.stem for p in files]
    write_coeffs_mat(out / "subject.mat", neutral.to_numpy_dict(), None,
                     {"weights": fused.weights.cpu().numpy(), "photos": np.array(stems, dtype=object),
                      "method": args.method})
    vertices = geometry.canonical[0].cpu().numpy()
    write_obj(out / "subject.obj", vertices, face_model.triangles.cpu().numpy(),
              geometry.albedo[0].clamp(0, 1).cpu().numpy(),
              header=f"faceset aggregate ({args.method} of {len(files)} photos): neutral "
                     "canonical shape, albedo colours, model units (dm)")
    lmk7 = vertices[face_model.landmark_ids.cpu().numpy()[list(C.NOW_FROM_IBUG68)]]
    write_npy(out / "subject_lmk7.npy", lmk7)
    print(f"fused {len(files)} photos ({args.method}) from {args.results}: wrote "
          f"{out / 'subject.mat'}, {out / 'subject.obj'}, {out / 'subject_lmk7.npy'}")
    return 0

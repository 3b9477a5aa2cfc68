"""``faceset aggregate RESULTS_DIR --method mean|confidence|cnet --out OUT``: fuse the
per-photo ``.mat`` files of a results folder into one subject (SPEC 9).

A per-photo file that cannot be used (unreadable, malformed, another model's sizes,
non-finite values; for ``cnet`` also an unreadable ``<stem>.png``) is skipped with one line
and listed again at the end; the others are fused (exit 0). Only when none can be used is
nothing written (exit 2). The outputs are computed first and written into a temporary
folder beside OUT, which then becomes OUT (or whose files replace OUT's), so a failed run
leaves no empty or half-written OUT. A re-run whose outputs exist, were made by the same
method from the same files and are newer than every input says so and does nothing
(``--force`` redoes it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recon.constants import RNET_ARCHITECTURES as ARCHES

METHODS = ("mean", "confidence", "cnet")            # aggregation.methods.AGGREGATION_METHODS
NOT_PER_PHOTO = ("subject.mat", "fused.mat")      # what reconstruct --subject / fit write besides
OUTPUT_NAMES = ("subject.mat", "subject.obj", "subject_lmk7.npy")
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
                    "model units) and OUT/subject_lmk7.npy (its 7 NoW landmarks). A .mat that "
                    "cannot be used is skipped with a line and the others are fused; a re-run "
                    "whose outputs are newer than its inputs does nothing unless --force.")
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
    parser.add_argument("--force", action="store_true",
                        help="redo the fusion even when OUT's outputs are newer than every input")
    parser.set_defaults(func=run)


def per_photo_files(results: Path) -> list[Path]:
    from faceset.errors import UserError
    if not results.is_dir():
        raise UserError(f"{results}: no such results folder")
    files = sorted(p for p in results.glob("*.mat") if p.name not in NOT_PER_PHOTO)
    if not files:
        raise UserError(f"{results}: no per-photo .mat file to aggregate")
    return files


def read_coefficients(path: Path, sizes: dict[str, int]):
    """(1, ...) Coeffs of one per-photo file, checked against the face model's sizes;
    ValueError naming the file and the problem."""
    import numpy as np
    import torch
    from recon.io import read_coeffs_mat
    from recon.types import Coeffs
    try:
        data = read_coeffs_mat(path)
    except TypeError as err:  # a group of non-numbers
        raise ValueError(f"{path}: malformed coefficients ({err})") from None
    wrong = {g: data[g].size for g in Coeffs.GROUPS if data[g].size != sizes[g]}
    if wrong:
        raise ValueError(f"{path}: coefficient sizes {wrong} do not fit the face model's "
                         f"{ {g: sizes[g] for g in wrong} } (another model? see --bfm)")
    if not all(np.isfinite(data[g]).all() for g in Coeffs.GROUPS):
        raise ValueError(f"{path}: non-finite coefficients")
    return Coeffs(**{g: torch.from_numpy(data[g])[None] for g in Coeffs.GROUPS})


def aligned_crop(path: Path):
    """(3, 224, 224) RGB in [0, 1]: the first panel of the ``<stem>.png`` beside ``path``."""
    import numpy as np
    import torch
    from PIL import Image
    png = path.with_suffix(".png")
    try:
        with Image.open(png) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{png}: cannot read the aligned input for the C-Net ({err})") from None
    if pixels.shape[0] != CROP_PANEL or pixels.shape[1] < CROP_PANEL:
        raise ValueError(f"{png}: {pixels.shape[1]}x{pixels.shape[0]}, not the 224-high "
                         "panels reconstruct writes")
    return torch.from_numpy(pixels[:, :CROP_PANEL].astype(np.float32) / 255.0).permute(2, 0, 1)


def read_inputs(files: list[Path], sizes: dict[str, int], with_crops: bool,
                failed: dict[str, str]) -> tuple[list[Path], list, list]:
    """The usable files, their (1, ...) Coeffs and (with_crops) aligned crops; a file that
    cannot be used gets one printed line and an entry name -> reason in ``failed``."""
    used, coeffs, crops = [], [], []
    for path in files:
        try:
            row = read_coefficients(path, sizes)
            crop = aligned_crop(path) if with_crops else None
        except (ValueError, OSError) as err:
            failed[path.name] = str(err)
            print(f"skipped {path.name}: {err}", flush=True)
            continue
        used.append(path)
        coeffs.append(row)
        crops.append(crop)
    return used, coeffs, crops


def load_cnet_and_rnet(args, face_model, device):
    """(C-Net, its R-Net) for --method cnet, checked to belong together."""
    from aggregation.cnet import check_rnet, load_cnet, resolve_cnet
    from faceset.errors import UserError
    from recon.rnet import load_checkpoint
    if args.cnet is None or args.checkpoint is None:
        raise UserError("--method cnet needs --cnet (the C-Net) and --checkpoint (its R-Net)")
    cnet, record = load_cnet(args.cnet, device)
    rnet = load_checkpoint(args.checkpoint, args.arch, device, sizes=face_model.coeff_sizes).to(device)
    check_rnet(record, rnet, str(resolve_cnet(args.cnet)))
    return cnet.to(device), rnet


def input_paths(args, files: list[Path]) -> list[Path]:
    """Every file the outputs depend on (for the up-to-date check)."""
    paths = list(files)
    if args.method == "cnet":
        from aggregation.cnet import resolve_cnet
        paths += [f.with_suffix(".png") for f in files] + [resolve_cnet(args.cnet), Path(args.checkpoint)]
    return paths


def up_to_date(out: Path, method: str, files: list[Path], inputs: list[Path]) -> bool:
    """Whether OUT holds this fusion already: every output present, made by ``method`` from
    exactly ``files`` (fused or skipped), and newer than every input that exists."""
    import scipy.io
    outputs = [out / name for name in OUTPUT_NAMES]
    if not all(p.is_file() for p in outputs):
        return False
    try:
        record = scipy.io.loadmat(out / "subject.mat")
        made_by = _strings(record["method"])
        considered = set(_strings(record["photos"])) | set(_strings(record.get("skipped", [])))
    except Exception:  # noqa: BLE001 - an unreadable record is simply not up to date
        return False
    if made_by != [method] or considered != {f.stem for f in files}:
        return False
    newest_input = max((p.stat().st_mtime_ns for p in inputs if p.exists()), default=0)
    return min(p.stat().st_mtime_ns for p in outputs) > newest_input


def _strings(value) -> list[str]:
    """The strings of a scipy.io.loadmat char or cell array."""
    import numpy as np
    value = np.asarray(value)
    if value.dtype != object:
        return [str(v) for v in value.ravel()]
    return [s for item in value.ravel() for s in _strings(item)]


def staging_folder(out: Path) -> Path:
    """A fresh temporary folder beside OUT (in its nearest existing ancestor, so that no
    missing parent is created before the fusion succeeds), checked to be writable."""
    import tempfile
    from faceset.errors import UserError, prepare_output_dir
    if out.exists():
        prepare_output_dir(out)  # a folder, writable, with room: nothing is created in it
    ancestor = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not ancestor.is_dir():
        raise UserError(f"{out}: cannot create the output folder: {ancestor} is a file")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=ancestor))
    except OSError as err:
        raise UserError(f"{out}: cannot create the output folder ({ancestor}: {err.strerror})") from None
    try:
        # mkdtemp's 0700 would survive the rename: give it the mode mkdir would (0777 less umask)
        staging.chmod(0o777 & ~_umask())
        prepare_output_dir(staging)
    except BaseException:
        _remove(staging)
        raise
    return staging


def publish(staging: Path, out: Path) -> None:
    """Make the staged outputs OUT's: rename the folder when OUT does not exist, else move
    each file in (each rename atomic) and drop the staging folder."""
    import os
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)
        return
    for path in staging.iterdir():
        os.replace(path, out / path.name)
    staging.rmdir()


def _umask() -> int:
    import os
    mask = os.umask(0o022)  # the only way to read the umask is to set it; put it back
    os.umask(mask)
    return mask


def _remove(folder: Path) -> None:
    import shutil
    shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    import torch
    from faceset.errors import UserError
    from recon.models import load_face_model

    files = per_photo_files(args.results)
    out = Path(args.out)
    if args.method == "cnet" and (args.cnet is None or args.checkpoint is None):
        raise UserError("--method cnet needs --cnet (the C-Net) and --checkpoint (its R-Net)")
    if not args.force and up_to_date(out, args.method, files, input_paths(args, files)):
        print(f"{out}: the {args.method} fusion of these {len(files)} file(s) is newer than every "
              "input; nothing to do (--force redoes it)")
        return 0
    staging = staging_folder(out)
    try:
        device = torch.device(args.device)
        face_model = load_face_model(args.bfm, device)
        cnet, rnet = load_cnet_and_rnet(args, face_model, device) if args.method == "cnet" else (None, None)
        failed: dict[str, str] = {}
        used, coeffs, crops = read_inputs(files, face_model.coeff_sizes, rnet is not None, failed)
        if not used:
            raise UserError(f"{args.results}: none of the {len(files)} per-photo .mat file(s) could be "
                            f"used ({'; '.join(f'{k}: {v}' for k, v in failed.items())})")
        fused = fuse(args.method, face_model, coeffs, crops, cnet, rnet, device)
        write_outputs(staging, face_model, fused, args.method, [p.stem for p in used],
                      [Path(n).stem for n in failed])
        publish(staging, out)
    except BaseException:
        _remove(staging)
        raise
    print(f"fused {len(used)} of {len(files)} photos ({args.method}) from {args.results}: wrote "
          + ", ".join(str(out / name) for name in OUTPUT_NAMES))
    if failed:
        print(f"  {len(failed)} file(s) skipped:")
        for name, reason in failed.items():
            print(f"  skipped {name}: {reason}")
    return 0


def fuse(method: str, face_model, coeffs: list, crops: list, cnet, rnet, device):
    """The fused AggregatedIdentity of the photos' (1, ...) Coeffs (and crops for cnet)."""
    import torch
    from aggregation.methods import aggregate
    from recon.types import Coeffs
    batch = Coeffs.cat(coeffs).map(lambda t: t.to(device))
    features = None
    if rnet is not None:
        with torch.no_grad():
            features = rnet.features(torch.stack(crops).to(device))
    return aggregate(method, face_model, batch, features=features, cnet=cnet)


def write_outputs(folder: Path, face_model, fused, method: str, stems: list[str],
                  skipped: list[str]) -> None:
    """subject.mat (with the weights, photos, skipped files and method), subject.obj and
    subject_lmk7.npy into ``folder``."""
    import numpy as np
    import torch
    from aggregation.identity import neutral_coeffs
    from recon import constants as C
    from recon.io import write_coeffs_mat, write_npy, write_obj
    neutral = neutral_coeffs(fused, face_model.coeff_sizes)
    with torch.no_grad():
        geometry = face_model.compute(neutral, with_color=False)
    write_coeffs_mat(folder / "subject.mat", neutral.to_numpy_dict(), None,
                     {"weights": fused.weights.cpu().numpy(), "photos": np.array(stems, dtype=object),
                      "skipped": np.array(skipped, dtype=object), "method": method})
    vertices = geometry.canonical[0].cpu().numpy()
    write_obj(folder / "subject.obj", vertices, face_model.triangles.cpu().numpy(),
              geometry.albedo[0].clamp(0, 1).cpu().numpy(),
              header=f"faceset aggregate ({method} of {len(stems)} photos): neutral "
                     "canonical shape, albedo colours, model units (dm)")
    lmk7 = vertices[face_model.landmark_ids.cpu().numpy()[list(C.NOW_FROM_IBUG68)]]
    write_npy(folder / "subject_lmk7.npy", lmk7)

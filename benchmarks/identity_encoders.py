"""Benchmark of the identity encoders: agreement with dlib, identity separation, speed.

    PYTHONPATH=. python3 benchmarks/identity_encoders.py --examples PATH/TO/examples --device cpu \
        [--save-reference ref.npz | --reference ref.npz] [--out table.md]

With dlib installed, the example photos are detected and landmarked with dlib and their
face chips and dlib descriptors computed (``--save-reference`` stores them, so a machine
without dlib, e.g. a GPU box, can run the comparison with ``--reference``). Prints a
markdown section (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from recon.constants import FLIP_PERM_68  # iBUG 68 left-right permutation
from recon.identity.dlib_resnet import DlibFaceResNet, default_dlib_model_path
from recon.identity.encoder import ArcFaceIdentityEncoder, DlibIdentityEncoder
from recon.identity.iresnet import IResNet
from recon.losses import identity_loss
from recon.preprocess.align import PHOTO_SUFFIXES


@dataclass
class Reference:
    """Per photo: dlib's 150 chip, dlib's descriptor, a 224 crop, its 68 landmarks, dlib's
    descriptor of the crop, and the mirrored crop with its landmarks."""

    names: list[str]
    chips: np.ndarray            # (N, 150, 150, 3) uint8
    descriptors: np.ndarray      # (N, 128) float64
    crops: np.ndarray            # (N, 224, 224, 3) uint8
    crop_landmarks: np.ndarray   # (N, 68, 2) float64, integer-valued
    crop_descriptors: np.ndarray  # (N, 128)
    mirrored: np.ndarray         # (N, 224, 224, 3) uint8
    mirrored_landmarks: np.ndarray  # (N, 68, 2)


def face_crop_224(image: np.ndarray, landmarks: np.ndarray, scale_factor: float = 1.0,
                  shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """A 224 x 224 crop of the face by our own similarity (not dlib's chip), and the 68
    landmarks (y-down pixels, float64) moved into it; tests/test_identity_dlib.py uses it too.
    image: (H, W, 3) uint8; scale_factor / shift (px) move the crop off the canonical one."""
    import cv2
    span = landmarks[:, 0].max() - landmarks[:, 0].min()
    scale = 150.0 / span * scale_factor
    centre = landmarks.mean(0)
    matrix = np.array([[scale, 0.0, 111.5 + shift[0] - scale * centre[0]],
                       [0.0, scale, 111.5 + shift[1] - scale * centre[1]]])
    crop = cv2.warpAffine(image, matrix, (224, 224), flags=cv2.INTER_LINEAR)
    return crop, landmarks @ matrix[:, :2].T + matrix[:, 2]


def _crop_224(image: np.ndarray, landmarks: np.ndarray, scale_factor: float = 1.0,
              shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """``face_crop_224`` with the landmarks rounded to whole pixels (as dlib's shapes hold them)."""
    crop, moved = face_crop_224(image, landmarks, scale_factor, shift)
    return crop, np.round(moved)


def build_reference(examples: Path) -> Reference:
    """Detect, landmark and describe every example photo with dlib itself."""
    import dlib
    from PIL import Image
    models = default_dlib_model_path().parent
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
    recognizer = dlib.face_recognition_model_v1(str(default_dlib_model_path()))
    fields: dict[str, list] = {k: [] for k in Reference.__dataclass_fields__}

    def shape_of(points: np.ndarray):
        parts = dlib.points()
        for x, y in points.astype(int):
            parts.append(dlib.point(int(x), int(y)))
        return dlib.full_object_detection(dlib.rectangle(0, 0, 223, 223), parts)

    for path in sorted(p for p in examples.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES):
        image = np.asarray(Image.open(path).convert("RGB"))
        boxes = detector(image, 1)
        if len(boxes) != 1:
            continue
        shape = predictor(image, boxes[0])
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        crop, crop_lm = _crop_224(image, points)
        flipped = np.ascontiguousarray(image[:, ::-1])
        mirrored, mirrored_lm = _crop_224(flipped, points * [-1, 1] + [image.shape[1] - 1, 0],
                                          scale_factor=0.9, shift=(6.0, -4.0))
        fields["names"].append(path.stem)
        fields["chips"].append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        fields["descriptors"].append(np.array(recognizer.compute_face_descriptor(image, shape)))
        fields["crops"].append(crop)
        fields["crop_landmarks"].append(crop_lm)
        fields["crop_descriptors"].append(
            np.array(recognizer.compute_face_descriptor(crop, shape_of(crop_lm))))
        fields["mirrored"].append(mirrored)
        fields["mirrored_landmarks"].append(mirrored_lm[list(FLIP_PERM_68)])
    return Reference(fields.pop("names"), **{k: np.stack(v) for k, v in fields.items()})


def save_reference(reference: Reference, path: Path) -> None:
    arrays = {k: getattr(reference, k) for k in Reference.__dataclass_fields__ if k != "names"}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        np.savez_compressed(handle, names=np.array(reference.names), **arrays)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


def load_reference(path: Path) -> Reference:
    data = np.load(path)
    return Reference(list(data["names"]), **{k: data[k] for k in Reference.__dataclass_fields__
                                             if k != "names"})


def _images(array: np.ndarray, device: str, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).to(device, dtype) / 255.0


def agreement_rows(reference: Reference, device: str, model: Optional[Path]) -> list[str]:
    """Max |ours - dlib| on dlib's chips, and cosine to dlib on the 224 crops."""
    network = DlibFaceResNet.from_dlib_file(model).to(device).eval()
    rows = []
    variants = [(torch.float32, True), (torch.float64, True)]
    if device.startswith("cuda"):  # cuDNN convolutions default to TF32 on Ampere and later
        variants.insert(1, (torch.float32, False))
    for dtype, tf32 in variants:
        previous = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = tf32
        try:
            with torch.no_grad():
                ours = network.to(dtype)(_images(reference.chips, device, dtype)).cpu().double()
        finally:
            torch.backends.cudnn.allow_tf32 = previous
        diff = np.abs(ours.numpy() - reference.descriptors)
        label = str(dtype)[6:] + (", TF32 off" if device.startswith("cuda") and not tf32 else "")
        rows.append(f"| descriptor on dlib's chip, {label} | {len(reference.names)} | "
                    f"max {diff.max():.1e}, mean {diff.mean():.1e} |")
    encoder = DlibIdentityEncoder(network.float())
    with torch.no_grad():
        features = encoder(_images(reference.crops, device),
                           torch.from_numpy(reference.crop_landmarks).float().to(device))
    target = torch.nn.functional.normalize(torch.from_numpy(reference.crop_descriptors), dim=-1)
    cosine = (features.cpu().double() * target).sum(-1)
    rows.append(f"| encoder (grid_sample chip) on 224 crops, cosine to dlib | "
                f"{len(reference.names)} | min {cosine.min():.5f}, mean {cosine.mean():.5f} |")
    return rows


def separation_rows(reference: Reference, device: str, model: Optional[Path]) -> list[str]:
    """1 - cos between a photo and its mirrored re-crop vs between different people."""
    encoder = DlibIdentityEncoder(DlibFaceResNet.from_dlib_file(model).to(device))
    with torch.no_grad():
        first = encoder(_images(reference.crops, device),
                        torch.from_numpy(reference.crop_landmarks).float().to(device))
        second = encoder(_images(reference.mirrored, device),
                         torch.from_numpy(reference.mirrored_landmarks).float().to(device))
    n = first.shape[0]
    distance = identity_loss(first.repeat_interleave(n, 0), second.repeat(n, 1), reduction="none")
    distance = distance.view(n, n).cpu()
    same = distance.diagonal()
    different = distance[~torch.eye(n, dtype=torch.bool)]
    return [f"| same photo, mirrored + re-cropped | {n} | max {same.max():.3f}, "
            f"mean {same.mean():.3f} |",
            f"| different people | {n * (n - 1)} | min {different.min():.3f}, "
            f"mean {different.mean():.3f} |"]


def _time(function: Callable[[], object], device: str, repeats: int = 5) -> float:
    """Best wall time of ``repeats`` calls in ms (one warm-up call; CUDA synchronised).

    The minimum, not the median: on a shared machine the other processes only add time."""
    function()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.min(times))


def speed_rows(device: str, reference: Optional[Reference], model: Optional[Path]) -> list[str]:
    rows = []
    generator = torch.Generator().manual_seed(0)
    dlib_net = DlibFaceResNet.from_dlib_file(model).to(device).eval().requires_grad_(False)
    dlib_encoder = DlibIdentityEncoder(dlib_net)
    torch.manual_seed(0)
    arcface = ArcFaceIdentityEncoder(IResNet()).to(device)
    landmarks = torch.from_numpy(reference.crop_landmarks[:1]).float().to(device) \
        if reference is not None else None
    for batch in (1, 32):
        chips = torch.rand(batch, 3, 150, 150, generator=generator).to(device)
        with torch.no_grad():
            ms = _time(lambda: dlib_net(chips), device)
        rows.append(f"| dlib ResNet forward, 150 chips | {batch} | {ms:.1f} | {ms / batch:.2f} |")
    for name, encoder in (("dlib", dlib_encoder), ("ArcFace r50", arcface)):
        if landmarks is None:
            break
        for batch in (8,):
            images = torch.rand(batch, 3, 224, 224, generator=generator).to(device)
            lm = landmarks.expand(batch, -1, -1)
            with torch.no_grad():
                target = encoder(images.flip(0), lm)

            def step() -> None:
                pixels = images.clone().requires_grad_(True)
                identity_loss(encoder(pixels, lm), target, reduction="none").sum().backward()

            with torch.no_grad():
                ms = _time(lambda: encoder(images, lm), device)
            rows.append(f"| {name} encoder forward (warp + net), 224 crops | {batch} | "
                        f"{ms:.1f} | {ms / batch:.2f} |")
            ms = _time(step, device)
            rows.append(f"| {name} encoder forward + backward to pixels | {batch} | "
                        f"{ms:.1f} | {ms / batch:.2f} |")
    if reference is not None and device == "cpu":
        try:
            import dlib
        except ImportError:
            return rows
        recognizer = dlib.face_recognition_model_v1(str(default_dlib_model_path()))
        chip = np.ascontiguousarray(reference.chips[0])
        ms = _time(lambda: recognizer.compute_face_descriptor(chip), device)
        rows.append(f"| dlib itself (C++), compute_face_descriptor on a chip | 1 | {ms:.1f} | "
                    f"{ms:.2f} |")
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=Path, help="folder of example photos (.jpg, .jpeg, .png)")
    parser.add_argument("--reference", type=Path, help="reference .npz from --save-reference")
    parser.add_argument("--save-reference", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dlib-model", type=Path,
                        help="dlib ResNet .dat (default: the face-recognition-models copy)")
    parser.add_argument("--out", type=Path, help="write the markdown section here too")
    args = parser.parse_args(argv)
    reference = None
    if args.reference is not None:
        reference = load_reference(args.reference)
    elif args.examples is not None:
        reference = build_reference(args.examples)
    if reference is not None and args.save_reference is not None:
        save_reference(reference, args.save_reference)
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") \
        else f"CPU, {torch.get_num_threads()} threads"
    lines = [f"### Identity encoders on {device_name} (torch {torch.__version__})", ""]
    if reference is not None:
        lines += ["| check | photos / pairs | result |", "|---|---|---|"]
        lines += agreement_rows(reference, args.device, args.dlib_model)
        lines += separation_rows(reference, args.device, args.dlib_model)
        lines.append("")
    lines += ["| timing | batch | ms per call (best of 5) | ms per image |", "|---|---|---|---|"]
    lines += speed_rows(args.device, reference, args.dlib_model)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False) as handle:
            handle.write(text)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, args.out)


if __name__ == "__main__":
    main()

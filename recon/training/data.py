"""Training data: photo folders with 68-landmark files, aligned and augmented (SPEC 6.5-6.7).

A photo folder holds ``*.png`` / ``*.jpg`` photos plus, per photo ``<stem>.<ext>``:

* ``landmarks/<stem>.txt``: 68 lines ``x y``, y-down photo pixels (required; what
  ``faceset synth`` writes and ``faceset reconstruct`` reads; the original's data
  preparation wrote the same points y-up);
* ``mask/<stem>.<ext>``: the skin-probability image of the original's data preparation
  (optional; first channel, 0-255). Without it the same posterior is computed with
  ``recon.preprocess.skin`` on every load (nothing is cached) from the aligned 224 crop,
  not from the full photo as the original's preparation does: the posterior is per pixel,
  so the two differ only where the resampling mixes colours (edges; the tests bound the
  difference), and the crop costs a fixed 50k pixels where a 12-megapixel photo would
  take seconds per item.

The 5-point ``detections/<stem>.txt`` are not read: as in the original's dataset the crop is
aligned with the 5 points derived from the 68. Each item is aligned with ``align_face``
to the 224 crop and, in training, augmented (``recon.training.augment``) with a draw that
depends only on (seed, epoch, index), so runs and resumed runs repeat exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from recon.preprocess.align import PHOTO_SUFFIXES, align_face, open_rgb
from recon.preprocess.detections import LANDMARK_FOLDER, landmark_file_for, read_landmark_file
from recon.preprocess.skin import skin_mask_image

from .augment import augment, draw_params
from .supervision import read_truth

MASK_FOLDER = "mask"


def mask_file_for(photo: Path) -> Path:
    """``<folder>/mask/<name>``: the original's skin mask, same file name as the photo."""
    return photo.parent / MASK_FOLDER / photo.name


@dataclass(frozen=True)
class Skipped:
    """A photo left out of training and why."""

    photo: Path
    reason: str


def discover(folders: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """Usable photos of the folders (sorted per folder) and the skipped ones with reasons.

    A photo is usable when its landmark file exists and parses and the photo itself decodes
    (a truncated file is skipped here, not found mid-epoch); a missing folder is an error.
    """
    photos: list[Path] = []
    skipped: list[Skipped] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such photo folder")
        for photo in sorted(p for p in folder.iterdir()
                            if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES):
            reason = _unusable_reason(photo)
            if reason is None:
                photos.append(photo)
            else:
                skipped.append(Skipped(photo, reason))
    return photos, skipped


def _unusable_reason(photo: Path) -> str | None:
    landmarks = landmark_file_for(photo)
    if not landmarks.is_file():
        return f"no {LANDMARK_FOLDER}/{landmarks.name}"
    try:
        read_landmark_file(landmarks)
        open_rgb(photo)
    except ValueError as err:
        return str(err)
    return None


def skipped_message(skipped: Sequence[Skipped], limit: int = 20) -> str:
    """One message listing the skipped photos (the first ``limit``, then a count)."""
    lines = [f"  {item.photo}: {item.reason}" for item in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return (f"skipping {len(skipped)} photo(s) that are unreadable or lack usable 68 "
            "landmarks:\n" + "\n".join(lines))


def _read_mask_file(path: Path, rgb: Image.Image) -> np.ndarray:
    """(H, W) uint8 first channel of a photo's skin-mask file, checked against its size."""
    try:
        with Image.open(path) as image:
            mask = np.asarray(image.convert("RGB"))[:, :, 0]
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read skin mask ({err})") from None
    if mask.shape[::-1] != rgb.size:
        raise ValueError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, its photo "
                         f"{rgb.size[0]}x{rgb.size[1]}")
    return mask


class FaceTrainingSet(torch.utils.data.Dataset):
    """Aligned (and augmented) training items of a list of photos.

    Item: dict with ``image`` (3, 224, 224) float32 RGB in [0, 1]; ``mask`` (1, 224, 224)
    float32 skin attention in [0, 1]; ``landmarks`` (68, 2) float32 y-down crop pixels;
    ``index`` int. Call ``set_epoch`` before each epoch so the augmentation draws change.

    truth_sizes: (V, n_exp) of the face model to add the generator's shape truth
    (``recon.training.supervision``): ``truth_neutral`` (V, 3) float32 dm, ``truth_exp``
    (n_exp,) float32, ``has_truth`` bool (zeros and False for a photo without truth files)
    and ``flip`` bool (the augmentation mirrored the photo).
    """

    def __init__(self, photos: Sequence[Path], augment: bool = True, seed: int = 0,
                 truth_sizes: Optional[tuple[int, int]] = None):
        self.photos = list(photos)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.truth_sizes = truth_sizes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.photos)

    def load_aligned(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The un-augmented crop (224, 224, 3) uint8, mask (224, 224) uint8 and landmarks
        (68, 2) float64 y-down crop pixels of photo ``index``."""
        photo = self.photos[index]
        rgb = open_rgb(photo)
        landmarks = read_landmark_file(landmark_file_for(photo))
        mask_path = mask_file_for(photo)
        mask = _read_mask_file(mask_path, rgb) if mask_path.is_file() else None
        try:
            aligned = align_face(rgb, landmarks, mask=mask)
        except ValueError as err:
            raise ValueError(f"{photo}: cannot align ({err})") from None
        if mask is None:
            return aligned.image, skin_mask_image(aligned.image)[:, :, 0], aligned.landmarks
        return aligned.image, aligned.mask, aligned.landmarks

    def __getitem__(self, index: int) -> dict:
        image, mask, landmarks = self.load_aligned(index)
        flip = False
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            params = draw_params(rng)
            image, mask, landmarks = augment(image, mask, landmarks, params)
            flip = params.flip
        item = {"image": torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1),
                "mask": torch.from_numpy(mask.astype(np.float32) / 255.0)[None],
                "landmarks": torch.from_numpy(landmarks.astype(np.float32)),
                "index": index}
        if self.truth_sizes is not None:
            item.update(self._truth(index, flip))
        return item

    def _truth(self, index: int, flip: bool) -> dict:
        n_vertices, n_exp = self.truth_sizes
        truth = read_truth(self.photos[index], n_vertices, n_exp)
        neutral, exp = truth if truth is not None else (np.zeros((n_vertices, 3), np.float32),
                                                        np.zeros(n_exp, np.float32))
        return {"truth_neutral": torch.from_numpy(neutral), "truth_exp": torch.from_numpy(exp),
                "has_truth": truth is not None, "flip": flip}

"""Label-free C-Net training with R-Net frozen (the paper's recipe, SPEC 9).

Each step draws one person and a set of 2-8 of their photos (``set_size``). The frozen
R-Net's features and coefficients of every photo are computed once, unaugmented. C-Net
turns the set's features into confidences, the set's identity and albedo become the
confidence-weighted means, each photo keeps its own expression, pose and light with the
fused identity and albedo, and the original's hybrid loss (``recon.training.HybridLoss``:
photometric, landmarks, regularisers, optional identity features) is summed over the set.
Optionally (``vertex_weight`` > 0) a supervised term adds the mean squared distance (mm^2)
over the skin vertices between the fused neutral shape and the person's true surface where
the photo generator wrote it (``truth/subject.mat`` ``model_vertices_mm``), translation-free
as R-Net's supervised terms (``recon.training.supervision``).

A person is a photo folder whose photos have ``landmarks/<stem>.txt``; a data folder that
holds none itself contributes its subfolders (``<s>/images`` of a ``faceset synth`` set,
or ``<s>``). The C-Net file (``aggregation.cnet``) is saved every ``save_every`` steps and at
the end with the optimiser state and the step count, so a killed run resumes from it; a
``<file>.log.jsonl`` beside it gets one line per ``log_every`` steps.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from recon.losses import LossWeights
from recon.training.data import FaceTrainingSet, discover
from recon.training.loop import append_record
from recon.training.objective import HybridLoss
from recon.training.supervision import read_truth, vertex_squared_mm
from recon.types import Coeffs

from .cnet import (CNetConfig, ConfidenceNet, check_rnet, fuse, read_cnet_file, rnet_record,
                   save_cnet)

MIN_SET, MAX_SET = 2, 8  # the set sizes of training draws (the 2-8 photos)


@dataclass
class CNetTrainConfig:
    """steps: total optimiser steps (one set each); set_size: (min, max) photos per set;
    lr: Adam's learning rate; identity: "none", "dlib" or "arcface" (the feat term's
    network, ``arcface`` its backbone.pth); vertex_weight: the supervised term's weight per
    mm^2 (0 = label-free only)."""

    data_dirs: list[Path]
    out: Path
    steps: int = 2000
    set_size: tuple[int, int] = (MIN_SET, MAX_SET)
    lr: float = 1e-3
    hidden: int = 256
    seed: int = 0
    identity: str = "none"
    arcface: Optional[Path] = None
    renderer_backend: str = "auto"
    vertex_weight: float = 0.0
    weights: LossWeights = field(default_factory=LossWeights)
    log_every: int = 50
    save_every: int = 200

    def validate(self) -> "CNetTrainConfig":
        low, high = self.set_size
        if not 2 <= low <= high:
            raise ValueError(f"set_size must be (min, max) with 2 <= min <= max, got {self.set_size}")
        for name in ("steps", "log_every", "save_every", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.vertex_weight >= 0:
            raise ValueError(f"lr must be > 0 and vertex_weight >= 0 (got {self.lr}, {self.vertex_weight})")
        return self


@dataclass
class Person:
    """One person's photos as the frozen R-Net sees them: images (n, 3, 224, 224), skin
    (n, 1, 224, 224), landmarks (n, 68, 2) y-down crop px, features (n, C), coefficient
    vectors (n, D); truth (V, 3) dm neutral surface or None."""

    folder: Path
    images: torch.Tensor
    skin: torch.Tensor
    landmarks: torch.Tensor
    features: torch.Tensor
    vectors: torch.Tensor
    truth: Optional[torch.Tensor]


def person_folders(data_dirs: list[Path], minimum: int = MIN_SET) -> list[list[Path]]:
    """The usable photos of each person (see the module docstring); persons with fewer than
    ``minimum`` photos are left out. Raises ValueError when none is left."""
    people = []
    for folder in map(Path, data_dirs):
        photos, _ = discover([folder])
        if photos:
            people.append(photos)
            continue
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            inner = sub / "images" if (sub / "images").is_dir() else sub
            found, _ = discover([inner])
            if found:
                people.append(found)
    people = [p for p in people if len(p) >= minimum]
    if not people:
        raise ValueError(f"no person with at least {minimum} photos with landmarks/<stem>.txt in "
                         + ", ".join(map(str, data_dirs)))
    return people


@torch.no_grad()
def prepare_person(rnet, photos: list[Path], face_model, device: torch.device) -> Person:
    """Align a person's photos (no augmentation) and run the frozen R-Net once."""
    items = [FaceTrainingSet(photos, augment=False)[i] for i in range(len(photos))]
    images = torch.stack([item["image"] for item in items]).to(device)
    features, vectors = rnet.features_and_coefficients(images)
    truth = read_truth(photos[0], face_model.n_vertices, face_model.coeff_sizes["exp"])
    return Person(photos[0].parent, images, torch.stack([i["mask"] for i in items]).to(device),
                  torch.stack([i["landmarks"] for i in items]).to(device), features, vectors,
                  None if truth is None else torch.from_numpy(truth[0]).to(device))


class FixedCoefficients(torch.nn.Module):
    """Stands in for R-Net inside the hybrid loss: returns given coefficient vectors (B, D)."""

    def __init__(self, vectors: torch.Tensor):
        super().__init__()
        self.vectors = vectors

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[0] != self.vectors.shape[0]:
            raise ValueError(f"{images.shape[0]} images for {self.vectors.shape[0]} coefficient rows")
        return self.vectors


class CNetTrainer:
    """C-Net training against a frozen R-Net (``rnet``: a ``recon.rnet.ReconNet`` of the
    face model's sizes)."""

    def __init__(self, config: CNetTrainConfig, rnet, face_model,
                 report: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
                 progress: bool = True):
        from tqdm import tqdm
        self.config = config.validate()
        self.face_model = face_model
        self.device = face_model.mean_shape.device
        self.report = report
        self.rnet = rnet.to(self.device).eval().requires_grad_(False)
        self.rnet_info = rnet_record(self.rnet)
        folders = person_folders(config.data_dirs, config.set_size[0])
        self.people = [prepare_person(self.rnet, photos, face_model, self.device)
                       for photos in tqdm(folders, desc="R-Net features", disable=not progress)]
        if config.vertex_weight > 0 and not any(p.truth is not None for p in self.people):
            report("no person has the generator's shape truth: the supervised term stays zero")
        sizes = face_model.coeff_sizes
        torch.manual_seed(config.seed)
        self.cnet = ConfidenceNet(CNetConfig(self.people[0].features.shape[1], sizes["id"],
                                             sizes["tex"], config.hidden)).to(self.device)
        self.optimizer = torch.optim.Adam(self.cnet.parameters(), lr=config.lr)
        self.steps_done = self._resume()
        self.loss = HybridLoss(face_model, self._renderer(), self._identity_encoder(), config.weights)

    def _renderer(self):
        from recon.render import MeshRenderer
        return MeshRenderer(self.face_model.camera, backend=self.config.renderer_backend)

    def _identity_encoder(self):
        from recon.identity import configured_identity_encoder
        return configured_identity_encoder(self.config.identity, self.config.arcface, self.device)

    def _resume(self) -> int:
        """Steps done by the run saved in ``config.out`` (0 when there is none)."""
        if not Path(self.config.out).is_file():
            return 0
        path, state = read_cnet_file(self.config.out, self.device)
        if "optimizer" not in state:
            raise ValueError(f"{path}: a finished C-Net without training state; choose another output")
        check_rnet(state["rnet"], self.rnet, str(path))
        try:
            self.cnet.load_state_dict(state["net_conf"], strict=True)
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"{path}: does not fit this run's C-Net ({err})") from err
        self.report(f"resuming from {path}: {state['step']} step(s) done")
        return int(state["step"])

    # -- the loss of one set --------------------------------------------------------------
    def draw_set(self, step: int) -> tuple[Person, torch.Tensor]:
        """The person and photo indices of a step (the same for a step, resumed or not)."""
        rng = np.random.default_rng((self.config.seed, step))
        person = self.people[int(rng.integers(len(self.people)))]
        count = len(person.images)
        low, high = self.config.set_size
        size = int(rng.integers(min(low, count), min(high, count) + 1))
        return person, torch.from_numpy(rng.choice(count, size, replace=False)).to(self.device)

    def set_loss(self, person: Person, indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """(0-d loss summed over the set's photos, logged values) with the fused identity."""
        sizes = self.face_model.coeff_sizes
        coeffs = Coeffs.from_vector(person.vectors[indices], sizes)
        conf_id, conf_tex = self.cnet.split(self.cnet(person.features[indices]))
        fused_id, fused_tex = fuse(coeffs.id, conf_id), fuse(coeffs.tex, conf_tex)
        count = len(indices)
        fused = coeffs.replace(id=fused_id.expand(count, -1), tex=fused_tex.expand(count, -1))
        loss = self.loss(FixedCoefficients(fused.to_vector()), person.images[indices],
                         person.skin[indices], person.landmarks[indices])
        total = count * loss.total  # the batch mean times the set size: summed over the set
        values = {k: v * count for k, v in loss.logged().items()}
        if self.config.vertex_weight > 0 and person.truth is not None:
            vertex = self.config.vertex_weight * neutral_error_mm2(self.face_model, fused_id, person.truth)
            total = total + vertex
            values["vertex"] = float(vertex.detach())
        values["all"] = float(total.detach())
        values["photos"] = count
        return total, values

    def step(self, step: int) -> dict[str, float]:
        self.cnet.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, values = self.set_loss(*self.draw_set(step))
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite C-Net loss {values}")
        total.backward()
        self.optimizer.step()
        return values

    @torch.no_grad()
    def evaluate(self, steps: range) -> float:
        """Mean loss of the sets of ``steps`` with the current C-Net (no update)."""
        self.cnet.eval()
        return float(np.mean([self.set_loss(*self.draw_set(s))[0].item() for s in steps]))

    # -- the run --------------------------------------------------------------------------
    def run(self, progress: bool = True) -> list[dict]:
        """Train to ``config.steps`` (from where a resumed run stopped); returns the logged
        windows of this call."""
        from tqdm import tqdm
        config, out = self.config, Path(self.config.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        log_path = out.with_name(out.name + ".log.jsonl")
        windows, window = [], []
        for step in tqdm(range(self.steps_done, config.steps), desc="C-Net", disable=not progress):
            window.append(self.step(step))
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                record = {"step": done, **{k: float(np.mean([w.get(k, 0.0) for w in window]))
                                           for k in window[0]}}
                append_record(log_path, record)
                windows.append(record)
                window = []
            if done % config.save_every == 0 or done == config.steps:
                self.save(done)
        return windows

    def save(self, step: int) -> Path:
        return save_cnet(self.config.out, self.cnet, self.rnet_info, optimizer=self.optimizer.state_dict(),
                         step=step, train_config={k: str(v) for k, v in asdict(self.config).items()})


def neutral_error_mm2(face_model, id_row: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean squared distance (mm^2) over the skin vertices between the neutral shape of
    id_row (K,) and a true surface (V, 3) dm, their mean offset over the skin removed
    (the canonical origin is the generator's choice, see ``recon.training.supervision``), 0-d."""
    zero_exp = torch.zeros(1, face_model.coeff_sizes["exp"], device=id_row.device, dtype=id_row.dtype)
    residual = face_model.shape(id_row[None], zero_exp)[0] - truth
    return vertex_squared_mm(residual, face_model.skin_mask)[face_model.skin_mask].mean()

"""The training loop (SPEC 7): epochs of Adam steps on the hybrid loss, StepLR per epoch,
a JSONL loss log, checkpoints in the original's format, automatic resume.

Files written to ``out`` (rank 0 only): ``train_config.json`` (the run's TrainConfig),
``loss_log.jsonl`` (one JSON object per ``log_every`` iterations: epoch, iteration, lr,
seconds per iteration and the weighted terms averaged over the window, named as the
original logs them), ``epoch_<N>.pth`` and ``epoch_latest.pth``; with validation folders
also ``val_log.jsonl`` (one object per epoch: the terms averaged over the validation
photos) and ``loss_curves.png`` (training windows and validation epochs, redrawn after
every epoch).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, DistributedSampler

from recon.models import load_face_model
from recon.io import figure_png, read_torch_file, write_atomic, write_text_atomic
from recon.rnet import ReconNet

from .checkpoint import (LATEST_NAME, CorruptCheckpoint, checkpoint_state, load_training_state,
                         resume_candidates, resume_path,
                         save_checkpoint)
from .config import TrainConfig
from .data import FaceTrainingSet, discover, skipped_message
from .distributed import ProcessContext, close_process, init_process, wrap_model
from .objective import LOG_NAMES, HybridLoss
from .supervision import SUPERVISED_NAMES, ShapeSupervision, read_truth

LOG_NAME = "loss_log.jsonl"
VAL_LOG_NAME = "val_log.jsonl"
CURVES_NAME = "loss_curves.png"
CONFIG_NAME = "train_config.json"


@dataclass
class TrainResult:
    """What a run did: epochs run now (first..last, empty when already done), iterations,
    the last logged window's losses and the final checkpoint path (None on ranks > 0)."""

    first_epoch: int
    last_epoch: int
    iterations: int
    last_losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Optional[Path] = None


def load_imagenet_backbone(net: ReconNet, path: Path) -> None:
    """Initialise the backbone from a torchvision ResNet file, ``fc`` keys dropped (SPEC 1.2)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing: it is torchvision's ImageNet weights "
                                f"file (resnet50-0676ba61.pth for resnet50)")
    state = read_torch_file(path)
    try:
        net.backbone.load_state_dict({k: v for k, v in state.items()
                                      if not k.startswith(("fc.", "classifier."))})
    except (AttributeError, RuntimeError) as err:
        raise ValueError(f"{path}: not torchvision weights for this backbone ({err})") from err


class LossLog:
    """Averages the logged terms over a window of iterations and appends one JSON line per
    window to ``path`` (append + flush + fsync: a crash loses at most the open window)."""

    def __init__(self, path: Optional[Path]):
        self.path = path
        self.sums: dict[str, float] = {}
        self.count = 0
        self.started = time.perf_counter()
        self.last: dict[str, float] = {}

    def add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def flush(self, **context) -> None:
        if self.count == 0:
            return
        seconds = (time.perf_counter() - self.started) / self.count
        averages = {n: self.sums[n] / self.count for n in (*LOG_NAMES, *SUPERVISED_NAMES)
                    if n in self.sums}
        self.last = averages
        if self.path is not None:
            append_record(self.path, {**context, "seconds_per_iter": seconds, **averages})
        self.sums, self.count, self.started = {}, 0, time.perf_counter()


def append_record(path: Path, record: dict) -> None:
    """One JSON line appended with flush + fsync: a crash loses no finished record."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def loss_curves_png(train_records: list[dict], val_records: list[dict]) -> bytes:
    """PNG bytes: the total loss of the training windows and of each validation pass
    against epochs (log scale). Epochs, not iterations: they survive a resume."""
    from matplotlib.figure import Figure

    epoch_length: dict[int, int] = {}
    for record in train_records:
        epoch_length[record["epoch"]] = max(epoch_length.get(record["epoch"], 1), record["iter"])
    figure = Figure(figsize=(7, 4), dpi=100)
    axis = figure.subplots()
    axis.plot([r["epoch"] - 1 + r["iter"] / epoch_length[r["epoch"]] for r in train_records],
              [r["all"] for r in train_records], label="training (window mean, augmented)",
              linewidth=1.0)
    axis.plot([r["epoch"] for r in val_records], [r["all"] for r in val_records], "o-",
              label="validation (end of epoch)", linewidth=2.0)
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel("weighted total loss")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure_png(figure)


def train(config: TrainConfig, progress: bool = True,
          report: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> TrainResult:
    """Train an R-Net with ``config`` (single process, or one torchrun rank).

    progress: show tqdm bars (rank 0). report: where one-line messages go (skipped photos,
    resume). Raises ValueError / FileNotFoundError with one clear message on bad input.
    """
    config.validate()
    context = init_process(config.device)
    try:
        return Trainer(config, context, report).run(progress)
    finally:
        close_process(context)


class Trainer:
    """One process's share of a training run (see ``train``)."""

    def __init__(self, config: TrainConfig, context: ProcessContext,
                 report: Callable[[str], None]):
        self.config, self.context = config, context
        self.report = report if context.is_main else (lambda text: None)
        self.out = Path(config.out)
        self.dataset = self._dataset()
        self.validation = self._validation_set() if context.is_main else None
        torch.manual_seed(config.seed)  # the backbone's random init repeats for a seed
        self.face_model = load_face_model(config.bfm, context.device)
        self.supervision = self._supervision()
        self.net = self._network()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr, betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.lr_decay_epochs, gamma=config.lr_decay_gamma)
        self.first_epoch = self._resume() + 1
        self.model = wrap_model(self.net, context)
        self.loss = HybridLoss(self.face_model, self._renderer(), self._identity_encoder(),
                               config.weights)

    # -- construction ---------------------------------------------------------------------
    def _dataset(self) -> FaceTrainingSet:
        photos, skipped = discover(self.config.data_dirs)
        if skipped:
            self.report(skipped_message(skipped))
        folders = ", ".join(map(str, self.config.data_dirs))
        if not photos:
            raise ValueError(f"no photo with a landmarks/<stem>.txt file in {folders}")
        share = len(photos) // self.context.world_size
        if share < self.batch_per_process:
            raise ValueError(f"{len(photos)} usable photos in {folders}: fewer than one batch of "
                             f"{self.batch_per_process} per process (lower --batch-size)")
        return FaceTrainingSet(photos, augment=self.config.augment, seed=self.config.seed)

    def _validation_set(self) -> Optional[FaceTrainingSet]:
        if not self.config.val_dirs:
            return None
        photos, skipped = discover(self.config.val_dirs)
        if skipped:
            self.report("validation: " + skipped_message(skipped))
        if not photos:
            folders = ", ".join(map(str, self.config.val_dirs))
            raise ValueError(f"no validation photo with a landmarks/<stem>.txt file in {folders}")
        return FaceTrainingSet(photos, augment=False, seed=self.config.seed)

    @property
    def batch_per_process(self) -> int:
        batch = self.config.batch_size // self.context.world_size
        if batch < 1:
            raise ValueError(f"batch size {self.config.batch_size} is smaller than the "
                             f"{self.context.world_size} processes")
        return batch

    def _supervision(self) -> Optional[ShapeSupervision]:
        """The supervised shape terms when asked for; the data sets then carry the truth."""
        if not self.config.supervised:
            return None
        sizes = (self.face_model.n_vertices, self.face_model.coeff_sizes["exp"])
        for dataset in filter(None, (self.dataset, self.validation)):
            dataset.truth_sizes = sizes
        if not any(read_truth(photo, *sizes) is not None for photo in self.dataset.photos):
            self.report("no training photo has the generator's shape truth (truth/subject.mat "
                        "with model_vertices_mm, as 'faceset synth --realism photo' writes): "
                        "the supervised terms stay zero")
        return ShapeSupervision(self.face_model, self.config.vertex_weight,
                                self.config.landmark3d_weight, self.config.translation_free_supervision)

    def _network(self) -> ReconNet:
        net = ReconNet(self.config.arch, sizes=self.face_model.coeff_sizes)
        if self.config.init is not None:
            load_imagenet_backbone(net, self.config.init)
        return net.to(self.context.device).train()

    def _renderer(self):
        from recon.render import MeshRenderer
        return MeshRenderer(self.face_model.camera, backend=self.config.renderer_backend)

    def _identity_encoder(self):
        from recon.identity import configured_identity_encoder
        return configured_identity_encoder(self.config.identity, self.config.arcface, self.context.device)

    def _resume(self) -> int:
        """Finished epochs of the checkpoint found in ``out`` (0 when starting fresh)."""
        for path in resume_candidates(self.out):
            try:
                state = load_training_state(path, self.net, self.optimizer, self.scheduler)
            except CorruptCheckpoint as err:
                self.report(f"cannot resume from it: {err}")
                continue
            self.report(f"resuming from {path}: {state.finished_epochs} epoch(s) done")
            return state.finished_epochs
        if resume_path(self.out) is not None:
            self.report(f"no readable checkpoint in {self.out}: training from scratch")
        return 0

    def _steps_done(self) -> int:
        """Adam steps taken so far, resumed runs included: the optimiser state of the
        original's checkpoint counts them, so the log's total_iters continue on resume."""
        steps = [state["step"] for state in self.optimizer.state.values() if "step" in state]
        return int(max(steps)) if steps else 0

    def _loader(self, epoch: int) -> DataLoader:
        self.dataset.set_epoch(epoch)
        sampler = DistributedSampler(self.dataset, num_replicas=self.context.world_size,
                                     rank=self.context.rank, shuffle=True, seed=self.config.seed)
        sampler.set_epoch(epoch)
        return DataLoader(self.dataset, batch_size=self.batch_per_process, sampler=sampler,
                          num_workers=self.config.workers, drop_last=True,
                          pin_memory=self.context.device.type == "cuda")

    # -- the run --------------------------------------------------------------------------
    def run(self, progress: bool = True) -> TrainResult:
        config = self.config
        result = TrainResult(first_epoch=self.first_epoch, last_epoch=self.first_epoch - 1,
                             iterations=0)
        if self.first_epoch > config.epochs:
            self.report(f"{self.out}: all {config.epochs} epochs are done already")
            return result
        if self.context.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / CONFIG_NAME, json.dumps(config.to_dict(), indent=2))
        log = LossLog(self.out / LOG_NAME if self.context.is_main else None)
        steps_before = self._steps_done()
        for epoch in range(self.first_epoch, config.epochs + 1):
            result.iterations += self._epoch(epoch, log, progress, steps_before + result.iterations)
            self._validate(epoch, progress)
            self.scheduler.step()  # before saving: sched_00 counts the finished epochs
            result.checkpoint = self._save(epoch)
            result.last_epoch = epoch
        result.last_losses = log.last
        return result

    def _epoch(self, epoch: int, log: LossLog, progress: bool, done_before: int) -> int:
        from tqdm import tqdm

        loader = self._loader(epoch)
        total = len(loader) if self.config.max_iters_per_epoch is None else min(
            len(loader), self.config.max_iters_per_epoch)
        bar = tqdm(total=total, desc=f"epoch {epoch}/{self.config.epochs}",
                   disable=not (progress and self.context.is_main), leave=False)
        lr = self.optimizer.param_groups[0]["lr"]
        iteration = 0
        for batch in loader:
            if iteration == total:
                break
            values = self.step(batch)
            iteration += 1
            log.add(values)
            bar.update(1)
            bar.set_postfix(loss=f"{values['all']:.4f}")
            if iteration % self.config.log_every == 0 or iteration == total:
                log.flush(epoch=epoch, iter=iteration, total_iters=done_before + iteration, lr=lr)
            if (done_before + iteration) % self.config.save_latest_every == 0:
                self._save_latest()
        bar.close()
        return iteration

    def step(self, batch: dict) -> dict[str, float]:
        """One Adam step on a batch from the loader; returns the logged loss values."""
        device = self.context.device
        images, skin, landmarks = (batch[k].to(device, non_blocking=True)
                                   for k in ("image", "mask", "landmarks"))
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, values = self.batch_loss(self.model, batch, images, skin, landmarks)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite training loss {values}")
        total.backward()
        self.optimizer.step()
        return values

    def batch_loss(self, net, batch: dict, images: torch.Tensor, skin: torch.Tensor,
                   landmarks: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The hybrid loss plus, when on, the supervised shape terms: (0-d total, logged values)."""
        loss = self.loss(net, images, skin, landmarks)
        values = loss.logged()
        if self.supervision is None:
            return loss.total, values
        terms = self.supervision(loss.coeffs.id, loss.coeffs.exp, batch)
        total = loss.total + sum(terms.values())
        values.update({name: float(term.detach()) for name, term in terms.items()})
        values["all"] = float(total.detach())
        return total, values

    @torch.no_grad()
    def validate(self, progress: bool = False) -> dict[str, float]:
        """The logged terms averaged over the validation photos (eval mode, no gradient)."""
        from tqdm import tqdm

        loader = DataLoader(self.validation, batch_size=self.batch_per_process, shuffle=False,
                            num_workers=self.config.workers)
        device = self.context.device
        sums: dict[str, float] = {}
        self.net.eval()
        for batch in tqdm(loader, desc="validation", disable=not progress, leave=False):
            images, skin, landmarks = (batch[k].to(device) for k in ("image", "mask", "landmarks"))
            for name, value in self.batch_loss(self.net, batch, images, skin, landmarks)[1].items():
                sums[name] = sums.get(name, 0.0) + value * len(images)
        self.net.train()
        return {name: total / len(self.validation) for name, total in sums.items()}

    def _validate(self, epoch: int, progress: bool) -> None:
        """Main process only (the others go on to the next epoch and wait for it at its
        first gradient exchange): one val_log.jsonl line and fresh loss curves."""
        if self.validation is None:
            return
        record = {"epoch": epoch, "photos": len(self.validation), **self.validate(progress)}
        append_record(self.out / VAL_LOG_NAME, record)
        write_atomic(self.out / CURVES_NAME, loss_curves_png(read_records(self.out / LOG_NAME),
                                                             read_records(self.out / VAL_LOG_NAME)))

    def _save_latest(self) -> None:
        if self.context.is_main:
            state = checkpoint_state(self.net, self.optimizer, self.scheduler)
            save_checkpoint(self.out / LATEST_NAME, state)

    def _save(self, epoch: int) -> Optional[Path]:
        if not self.context.is_main:
            return None
        state = checkpoint_state(self.net, self.optimizer, self.scheduler)
        path = self.out / f"epoch_{epoch}.pth"
        save_checkpoint(path, state)
        save_checkpoint(self.out / LATEST_NAME, state)
        return path

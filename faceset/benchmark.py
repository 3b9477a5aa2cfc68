"""``faceset benchmark``: run reconstruction pipelines on a NoW-layout dataset and score each
with the NoW protocol, one result folder per method (what ``faceset compare`` reads).

Datasets (``evaluation.now`` documents the scan layout, shared by both):

- the official NoW folder: ``imagepathsvalidation.txt`` (or ``--imagepaths``) lists
  ``<subject>/<challenge>/<image>``; the photos are under ``--images``, else
  ``iphone_pictures/`` or ``final_release_version/iphone_pictures/`` of the dataset;
- a generated set (``faceset synth``, same scans and landmarks): without an image list,
  every ``<subject>/images/*.png|jpg`` of a subject with a scan is one photo of the
  challenge ``generated``; ``landmarks/`` and ``detections/`` files beside the photos are
  used as the pipelines use them.

Methods (``METHODS``); every prediction is the neutral, unposed mesh (what NoW scores):

- ``mean-face``: the model's mean shape for every photo (no fitting: the score of doing nothing);
- ``landmarks``: the per-image job with the landmark initialiser (``faceset reconstruct``);
- ``rnet``: the per-image job with an R-Net checkpoint (``--checkpoint``);
- ``fit``: per-image analysis-by-synthesis fitting (``faceset fit``);
- ``subject``: one joint fit per subject (``faceset reconstruct --subject``), which also
  writes each subject's ``report.html`` with the per-vertex error shown on the mesh;
- ``aggregate-mean`` / ``aggregate-confidence``: the initialiser's identities of a subject's
  photos fused by ``aggregation`` (no fitting), one mesh per subject.

Layout under ``--out``: ``<method>/`` is a ``faceset evaluate`` run (``run.json``, tables,
``<method>_computed_distances.npy``, per-image CSV) with ``predictions/`` (NoW layout),
``runs/<subject>/`` (the pipeline's own outputs) and ``failures.json`` (photos the
pipeline could not use, with the reason: counted, named, never dropped silently);
``imagepaths.txt`` (the photos scored); ``comparison/`` (``faceset compare`` of all methods);
``report.html`` (the table, its figures, the failures and links to the subject reports).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from faceset.options import (METHODS, QUICK_ITERATIONS, QUICK_PHOTOS,  # noqa: F401 (re-exported)
                             QUICK_SUBJECTS, BenchmarkOptions)
from recon import constants as C

GENERATED_CHALLENGE = "generated"
IMAGE_ROOTS = ("iphone_pictures", "final_release_version/iphone_pictures", ".")


@dataclass(frozen=True)
class BenchmarkPhoto:
    """One scored photo: its NoW list entry and the file; ``staged`` is its unique name
    in the subject's staging folder (``<challenge>__<stem><ext>``)."""

    subject: str
    challenge: str
    filename: str
    path: Path

    @property
    def stem(self) -> str:
        return Path(self.filename).stem

    @property
    def staged(self) -> str:
        return f"{self.challenge}__{self.stem}{self.path.suffix.lower()}"

    @property
    def entry(self) -> str:
        return f"{self.subject}/{self.challenge}/{self.filename}"


@dataclass
class MethodOutcome:
    """predicted: photos with a prediction; failed: list entry -> reason; seconds: wall time."""

    method: str
    predicted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


# ---- the dataset ---------------------------------------------------------------------------

def discover_photos(dataset: Path, imagepaths: Optional[Path] = None,
                    images: Optional[Path] = None) -> list[BenchmarkPhoto]:
    """The photos to score, from the NoW image list or, without one, the generated layout."""
    from evaluation.now import read_image_list
    from recon.preprocess.align import PHOTO_SUFFIXES

    dataset = Path(dataset)
    if not (dataset / "scans").is_dir():
        raise FileNotFoundError(f"{dataset}: no scans/ folder; not a NoW-layout dataset")
    listing = Path(imagepaths) if imagepaths else dataset / "imagepathsvalidation.txt"
    if imagepaths or listing.is_file():
        roots = [Path(images)] if images else [dataset / r for r in IMAGE_ROOTS]
        photos = []
        for item in read_image_list(listing):
            relative = Path(item.subject) / item.challenge / item.filename
            found = next((root / relative for root in roots if (root / relative).is_file()), None)
            if found is None:
                raise FileNotFoundError(f"{listing}: photo {relative} not found under "
                                        + " or ".join(str(r) for r in roots))
            photos.append(BenchmarkPhoto(item.subject, item.challenge, item.filename, found))
        return photos
    photos = []
    for subject in sorted(p.name for p in (dataset / "scans").iterdir() if p.is_dir()):
        folder = dataset / subject / "images"
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in PHOTO_SUFFIXES) \
            if folder.is_dir() else []
        photos += [BenchmarkPhoto(subject, GENERATED_CHALLENGE, p.name, p) for p in files]
    if not photos:
        raise FileNotFoundError(f"{dataset}: no image list (imagepathsvalidation.txt) and no "
                                "<subject>/images/ photos of a generated set")
    return photos


def select(photos: list[BenchmarkPhoto], subjects: Optional[int], per_subject: Optional[int]) -> list[BenchmarkPhoto]:
    """The first ``subjects`` subjects and the first ``per_subject`` photos of each."""
    names = list(dict.fromkeys(p.subject for p in photos))[:subjects]
    chosen = []
    for name in names:
        chosen += [p for p in photos if p.subject == name][:per_subject]
    return chosen


def stage_subject(photos: list[BenchmarkPhoto], folder: Path) -> dict[str, BenchmarkPhoto]:
    """A flat folder of one subject's photos (links, copies where links fail) with their
    ``landmarks/`` and ``detections/`` files; returns staged stem -> photo."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = {}
    for photo in photos:
        target = folder / photo.staged
        _link(photo.path, target)
        for kind in ("landmarks", "detections"):
            side = photo.path.parent / kind / f"{photo.path.stem}.txt"
            if side.is_file():
                _link(side, folder / kind / f"{Path(photo.staged).stem}.txt")
        staged[Path(photo.staged).stem] = photo
    return staged


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        os.symlink(source.resolve(), target)
    except OSError:  # no symlinks (some Windows setups): copy
        shutil.copyfile(source, target)


# ---- predictions ---------------------------------------------------------------------------

def write_prediction(predictions: Path, photo: BenchmarkPhoto, mesh_file: Path, landmark_file: Path) -> None:
    """Copy a canonical mesh and its 7 landmarks into the NoW prediction layout."""
    folder = predictions / photo.subject / photo.challenge
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mesh_file, folder / f"{photo.stem}.obj")
    shutil.copyfile(landmark_file, folder / f"{photo.stem}.npy")


def write_neutral_prediction(predictions: Path, photos: list[BenchmarkPhoto], face_model,
                             id_row: torch.Tensor) -> None:
    """The neutral mesh of identity ``id_row`` (1, K) as the prediction of every photo."""
    from recon.io import write_npy, write_obj

    zero_exp = torch.zeros(1, face_model.coeff_sizes["exp"], device=id_row.device)
    vertices = face_model.shape(id_row, zero_exp)[0].detach().cpu().numpy()
    landmarks = vertices[face_model.landmark_ids.cpu().numpy()[list(C.NOW_FROM_IBUG68)]]
    triangles = face_model.triangles.cpu().numpy()
    for photo in photos:
        folder = predictions / photo.subject / photo.challenge
        write_obj(folder / f"{photo.stem}.obj", vertices, triangles,
                  header="faceset benchmark: neutral canonical mesh, model units (dm)")
        write_npy(folder / f"{photo.stem}.npy", landmarks)


# ---- the methods ---------------------------------------------------------------------------

class Benchmark:
    """Runs the methods on one set of photos under one output folder."""

    def __init__(self, photos: list[BenchmarkPhoto], out: Path, options: BenchmarkOptions):
        self.photos, self.out, self.options = photos, Path(out), options
        self.subjects = list(dict.fromkeys(p.subject for p in photos))
        self._reconstructor = None

    def subject_photos(self, subject: str) -> list[BenchmarkPhoto]:
        return [p for p in self.photos if p.subject == subject]

    def original_names(self, subject: str, reason: str) -> str:
        """A pipeline message with the staging folder's names put back to the photos'."""
        folder = self.out / "staging" / subject
        for photo in self.subject_photos(subject):
            staged = Path(photo.staged).stem
            reason = reason.replace(str(folder / photo.staged), str(photo.path))
            reason = reason.replace(f"{staged}.txt", f"{photo.path.stem}.txt")
        return reason.replace(str(folder), str(self.subject_photos(subject)[0].path.parent))

    def staging(self, subject: str) -> tuple[Path, dict[str, BenchmarkPhoto]]:
        folder = self.out / "staging" / subject
        return folder, stage_subject(self.subject_photos(subject), folder)

    def reconstruct_options(self, checkpoint: Optional[Path] = None):
        from faceset.pipeline import ReconstructOptions

        # without a checkpoint every method starts from the landmark initialiser (never the
        # shipped R-Net): the methods' names say which start they measure
        return ReconstructOptions(checkpoint=checkpoint, init="auto" if checkpoint else "landmarks",
                                  bfm=self.options.bfm, device=self.options.device,
                                  renderer_backend=self.options.renderer_backend, overwrite=True)

    def reconstructor(self):
        """The landmark-initialiser reconstructor, built once (model, renderer)."""
        from faceset.pipeline import Reconstructor

        if self._reconstructor is None:
            self._reconstructor = Reconstructor(self.reconstruct_options())
        return self._reconstructor

    def run(self, method: str) -> MethodOutcome:
        """Run one method over every subject; writes ``<out>/<method>/predictions``."""
        runner: dict[str, Callable] = {
            "mean-face": self._mean_face, "landmarks": self._per_image, "rnet": self._per_image,
            "fit": self._fit, "subject": self._fit, "aggregate-mean": self._aggregate,
            "aggregate-confidence": self._aggregate}
        outcome = MethodOutcome(method)
        folder = self.out / method
        if folder.exists():
            shutil.rmtree(folder)  # a method's folder holds one run, never a mix of two
        started = time.perf_counter()
        for subject in self.subjects:
            try:
                failed = runner[method](method, subject, folder / "predictions", folder / "runs" / subject)
            except (ValueError, RuntimeError, OSError) as err:  # the whole subject failed
                failed = {p.entry: f"{type(err).__name__}: {err}" for p in self.subject_photos(subject)}
            outcome.failed.update({k: self.original_names(subject, v) for k, v in failed.items()})
        outcome.seconds = time.perf_counter() - started
        outcome.predicted = [p.entry for p in self.photos if p.entry not in outcome.failed]
        return outcome

    def _mean_face(self, method, subject, predictions, run_dir) -> dict[str, str]:
        face_model = self.reconstructor().face_model
        zero = torch.zeros(1, face_model.coeff_sizes["id"], device=self.reconstructor().device)
        write_neutral_prediction(predictions, self.subject_photos(subject), face_model, zero)
        return {}

    def _per_image(self, method, subject, predictions, run_dir) -> dict[str, str]:
        from faceset.pipeline import reconstruct_folder

        checkpoint = self.options.checkpoint if method == "rnet" else None
        staging, staged = self.staging(subject)
        report = reconstruct_folder(staging, run_dir, self.reconstruct_options(checkpoint),
                                    show_progress=False)
        return self._collect(staged, report.failed, predictions, run_dir)

    def _fit(self, method, subject, predictions, run_dir) -> dict[str, str]:
        from faceset.options import FitFlags
        from faceset.subject import SubjectOptions, refine_folder

        staging, staged = self.staging(subject)
        options = SubjectOptions(reconstruct=self.reconstruct_options(),
                                 flags=FitFlags(iters=self.options.iterations), show_progress=False)
        result = refine_folder(staging, run_dir, options, joint=method == "subject")
        return self._collect(staged, result.failed, predictions, run_dir)

    def _aggregate(self, method, subject, predictions, run_dir) -> dict[str, str]:
        from aggregation import AggregationConfig, aggregate_identity
        from faceset.subject import SubjectOptions, prepare_photos
        from recon.types import Coeffs

        staging, staged = self.staging(subject)
        reconstructor = self.reconstructor()
        prepared, failed = prepare_photos(staging, SubjectOptions(reconstruct=self.reconstruct_options()))
        failures = {staged[Path(name).stem].entry: reason for name, reason in failed.items()}
        if not prepared:
            raise ValueError(f"no usable photo of {subject}")
        coeffs = Coeffs.cat([reconstructor.coefficients([p]) for p in prepared])
        landmarks = torch.tensor(np.stack([p.landmarks68 for p in prepared]), dtype=torch.float32,
                                 device=reconstructor.device)
        fused = aggregate_identity(reconstructor.face_model, coeffs, landmarks,
                                   AggregationConfig(method.split("-", 1)[1]))
        used = [staged[p.stem] for p in prepared]
        write_neutral_prediction(predictions, used, reconstructor.face_model, fused.id)
        return failures

    @staticmethod
    def _collect(staged: dict[str, BenchmarkPhoto], failed: dict[str, str], predictions: Path,
                 run_dir: Path) -> dict[str, str]:
        """Move each photo's canonical mesh into the NoW layout; photos without one fail."""
        failures = {}
        for stem, photo in staged.items():
            name = next((n for n in failed if Path(n).stem == stem), None)
            mesh, landmarks = run_dir / f"{stem}_canonical.obj", run_dir / f"{stem}_canonical_lmk7.npy"
            if name is not None:
                failures[photo.entry] = failed[name]
            elif not (mesh.is_file() and landmarks.is_file()):
                failures[photo.entry] = "the pipeline wrote no canonical mesh"
            else:
                write_prediction(predictions, photo, mesh, landmarks)
        return failures


# ---- scoring -------------------------------------------------------------------------------

def write_image_list(photos: list[BenchmarkPhoto], path: Path) -> Path:
    from recon.io import write_atomic

    write_atomic(path, "".join(p.entry + "\n" for p in photos).encode())
    return path


def score_method(dataset: Path, imagepaths: Path, method_dir: Path, method: str, quiet: bool) -> int:
    """``faceset evaluate now`` on the method's predictions, into the method's folder."""
    from faceset.commands.evaluate import NowEvaluation

    evaluation = NowEvaluation(dataset=Path(dataset), predictions=method_dir / "predictions",
                               imagepaths=imagepaths, out=method_dir, method=method, quiet=quiet)
    evaluation.predictions.mkdir(parents=True, exist_ok=True)
    return evaluation.run()


def subject_error_reports(dataset: Path, method_dir: Path, subjects: list[str]) -> list[Path]:
    """Rewrite each subject's ``report.html`` with the per-vertex error of its mesh (the
    NoW alignment to the subject's scan); returns the reports written."""
    from evaluation.meshio import TriangleMesh, read_mesh
    from evaluation.now import NowDataset, prediction_vertex_errors
    from faceset.report import write_folder_report

    data = NowDataset(dataset)
    written = []
    for subject in subjects:
        run_dir = method_dir / "runs" / subject
        mesh_file = run_dir / "subject.obj"
        if not mesh_file.is_file():
            continue
        # every photo's canonical mesh of a joint fit has the shared identity: any photo's
        # 7 landmarks are those of subject.obj
        lmk7 = next(iter(sorted(run_dir.glob("*_canonical_lmk7.npy"))), None)
        if lmk7 is None:
            continue
        scan, scan_landmarks = data.scan(subject)
        mesh = read_mesh(mesh_file)
        vertices_mm = mesh.vertices * C.MM_PER_UNIT
        errors = prediction_vertex_errors(scan, scan_landmarks, TriangleMesh(vertices_mm, mesh.faces),
                                          np.load(lmk7) * C.MM_PER_UNIT)
        written.append(write_folder_report(
            run_dir, "subject", errors=errors, title=f"faceset benchmark: {subject} (joint subject fit)",
            notes="Error map: distance from each vertex of the subject mesh to the ground-truth "
                  "scan after the NoW alignment (landmarks, then scale and rigid refinement); grey "
                  "outside the NoW crop."))
    return written


def run_benchmark(dataset: Path, methods: list[str], out: Path, options: BenchmarkOptions,
                  imagepaths: Optional[Path] = None, images: Optional[Path] = None,
                  log: Callable[[str], None] = print) -> dict[str, MethodOutcome]:
    """Every method, scored; then ``faceset compare`` of them in ``<out>/comparison``."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose among {', '.join(METHODS)}")
    if "rnet" in methods and options.checkpoint is None:
        raise ValueError("method rnet needs --checkpoint (the R-Net weights, e.g. epoch_20.pth)")
    if options.checkpoint is not None and not Path(options.checkpoint).is_file():
        raise FileNotFoundError(f"{options.checkpoint}: R-Net checkpoint not found")
    out = Path(out)
    photos = select(discover_photos(dataset, imagepaths, images), options.subjects, options.photos)
    out.mkdir(parents=True, exist_ok=True)
    listing = write_image_list(photos, out / "imagepaths.txt")
    log(f"benchmark: {len(photos)} photos of {len(set(p.subject for p in photos))} subject(s), "
        f"methods {', '.join(methods)}")
    from evaluation.compare import compare_runs
    from faceset.report import write_benchmark_report
    from recon.io import write_atomic

    bench = Benchmark(photos, out, options)
    outcomes, subject_reports = {}, []
    for method in methods:
        outcome = bench.run(method)
        method_dir = out / method
        write_atomic(method_dir / "failures.json", json.dumps(
            {"method": method, "photos": len(photos), "predicted": len(outcome.predicted),
             "seconds": round(outcome.seconds, 2), "failed": outcome.failed}, indent=1).encode())
        score_method(dataset, listing, method_dir, method, quiet=not options.show_progress)
        if method == "subject":
            subject_reports = subject_error_reports(dataset, method_dir, bench.subjects)
        log(f"{method}: {len(outcome.predicted)} of {len(photos)} photos predicted in {outcome.seconds:.1f} s"
            + (f"; FAILED on {len(outcome.failed)}: " + ", ".join(
                f"{k} ({v})" for k, v in list(outcome.failed.items())[:10])
               + (" ..." if len(outcome.failed) > 10 else "") if outcome.failed else ""))
        outcomes[method] = outcome
    comparison = compare_runs([out / m for m in methods])
    comparison.write(out / "comparison")
    write_benchmark_report(out, comparison, subject_reports, {m: o.failed for m, o in outcomes.items()},
                           title=f"faceset benchmark on {Path(dataset).resolve().name}")
    log(comparison.to_markdown())
    shutil.rmtree(out / "staging", ignore_errors=True)
    return outcomes

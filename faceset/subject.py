"""The main job: reconstruct one person from a photo collection, and ``faceset fit``.

``reconstruct_subject``: prepare every photo (detection file or dlib, the 224 crop, 68
landmarks), initialise (R-Net: the checkpoint or the shipped one, else the landmark fit +
SH lighting), aggregate one identity (``aggregation``: mean, confidence, or a C-Net
reading that R-Net's features), fit it jointly with per-image expression, pose
and light (``fitting.fit_subject``), and write:

- per photo, everything ``faceset reconstruct`` writes (``<stem>.obj/.mat/.png``,
  ``<stem>_canonical.obj``, ``<stem>_transform.json``) from the fitted coefficients
  (``faceset.pipeline.write_photo_outputs`` of each photo's ``Reconstruction``);
- (``faceset.subject_export``) ``subject.obj``: the neutral canonical mesh with albedo vertex colours (and, when the
  model has UVs, ``vt`` lines, ``subject.mtl`` and the baked albedo ``subject_texture.png``);
- ``subject.mat``: the fused coefficients (id, tex; exp, pose and light zero) as the
  original's ``.mat`` keys;
- ``subject.glb`` (metres, textured) and ``subject.ply`` (model units, vertex colours);
- (``faceset.fit_report``) ``fit_report.json``, ``fit_losses.png`` (loss curves) and
  ``fit_overlays.png`` (per photo: crop | start | fitted);
- ``report.html``: a static page (no server, no network) with each photo's crop, overlay
  and landmarks, the loss curves and the mesh in an interactive 3D viewer (``faceset.report``).

A photo that cannot be used (no face, unreadable) is reported and the rest are fitted.
``refine_folder(..., joint=False)`` is the per-image variant of ``faceset fit``; it writes
the per-photo files and, instead of ``subject.*``, ``fused.obj`` / ``fused.mat`` (+ texture
and material): the identity of all fitted photos fused afterwards (``aggregation``).

A folder that already holds finished outputs is left alone unless ``overwrite`` (or
``resume``, which refines them in place); with ``resume`` a ``<stem>.mat`` that cannot
be read or holds unusable coefficients (NaN, wrong sizes) is reported and that photo
starts from scratch. Ctrl-C stops cleanly (``faceset.errors.Interrupted``): no output is
written, the coefficients reached are kept in ``fit_interrupted.pt`` (``FitState``) and the
re-run continues the fit from there (removing the file once the outputs are written).
The command-line side (options from the parsed arguments, the printed summary) is
``faceset.commands.fit_job``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from aggregation import AggregatedIdentity, AggregationConfig, aggregate
from faceset.errors import Interrupted
from faceset.fit_report import REPORT_NAME, import_lpips, write_report
from faceset.options import FitFlags
from faceset.pipeline import (PhotoPreparer, PreparedPhoto, ReconstructOptions, Reconstructor,
                              output_paths, per_photo, require_photos, write_photo_outputs)
from faceset.subject_export import write_subject_mesh
from fitting import FitConfig, FitResult, FitTargets, fit_images, fit_subject
from fitting.fit import FitInterrupted
from recon.identity import configured_identity_encoder
from recon.io import read_coeffs_mat, read_torch_file, write_atomic, write_coeffs_mat
from recon.types import Coeffs

@dataclass
class SubjectOptions:
    """reconstruct: model, checkpoint, device, renderer (as ``faceset reconstruct``);
    flags: what the user chose of the fit (``faceset.options.FitFlags``: steps, identity
    term, dropped terms, LPIPS, the identity fusion's method and C-Net; as ``faceset fit``);
    fit: the fitting configuration the flags adjust (``fit_config``); the identity is fused
    by ``flags.aggregate`` ("mean", "confidence" or "cnet", ``aggregation_config``; the C-Net
    of "cnet" is ``flags.cnet`` and must belong to the job's R-Net); resume: start from
    ``<out>/<stem>.mat`` where present (``faceset fit`` refines)."""

    reconstruct: ReconstructOptions = field(default_factory=ReconstructOptions)
    flags: FitFlags = field(default_factory=FitFlags)
    fit: FitConfig = field(default_factory=FitConfig)
    resume: bool = False
    show_progress: bool = True

    def fit_config(self) -> FitConfig:
        """``fit`` with the renderer, the progress bar and the flags applied."""
        config = replace(self.fit, renderer_backend=self.reconstruct.renderer_backend,
                         show_progress=self.show_progress)
        if self.flags.no_silhouette:
            config = replace(config, silhouette_weight=None)
        if self.flags.no_contrast:
            config = replace(config, weights=replace(config.weights, contrast=0.0))
        return config if self.flags.iters is None else config.with_total_iterations(self.flags.iters)

    def aggregation_config(self) -> AggregationConfig:
        """How the identity is fused: the method of ``flags.aggregate``."""
        return AggregationConfig(method=self.flags.aggregate)


@dataclass
class SubjectReconstruction:
    """stems: the photos used, in order; failed: photo name -> reason; initial / fitted:
    (M, ...) per-image coefficients before / after fitting; fused: (1, ...) neutral
    coefficients of the person (id, tex); fit: the FitResult; outputs: file paths;
    start: the joint fit's fused start identity (None per image or when resumed)."""

    stems: list[str]
    failed: dict[str, str]
    initial: Coeffs
    fitted: Coeffs
    fused: Coeffs
    fit: FitResult
    outputs: dict[str, Path] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    start: Optional[AggregatedIdentity] = None


def prepare_photos(photo_dir: Path, options: SubjectOptions) -> tuple[list[PreparedPhoto], dict[str, str]]:
    """Aligned crops and 68 crop landmarks of every photo; failures are collected.

    A ``landmarks/<stem>.txt`` file next to the photo (68 lines ``x y``, y-down photo
    pixels, e.g. from ``faceset synth`` or another detector) replaces dlib's landmarks.
    """
    preparer = PhotoPreparer(options.reconstruct.face_index, options.reconstruct.detector)
    prepared, failed = [], {}
    for path in require_photos(Path(photo_dir)):
        try:
            prepared.append(preparer.prepare(path))
        except (ValueError, OSError) as err:
            failed[path.name] = str(err)
    return prepared, failed


def finished_outputs(out_dir: Path, photo_dir: Path, joint: bool) -> tuple[list[Path], bool]:
    """The output files of this job that already exist in ``out_dir``, and whether the
    job is complete there (its report and every photo's files present)."""
    name = "subject" if joint else "fused"
    photos = require_photos(photo_dir)
    expected = [p for photo in photos for p in output_paths(out_dir, photo.stem)]
    expected += [out_dir / f"{name}.obj", out_dir / f"{name}.mat", out_dir / REPORT_NAME]
    present = [p for p in expected if p.exists()]
    return present, _report_covers(out_dir, name, photos)


def _report_covers(out_dir: Path, name: str, photos: list[Path]) -> bool:
    """Whether ``out_dir``'s fit report is of these photos (fitted or failed ones) and the
    files it lists as written all exist."""
    try:
        report = json.loads((out_dir / REPORT_NAME).read_text())
        fitted, failed = list(report["photos"]), set(report["failed"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if set(fitted) | {Path(n).stem for n in failed} != {p.stem for p in photos}:
        return False
    needed = [p for stem in fitted for p in output_paths(out_dir, stem)]
    needed += [out_dir / f"{name}.obj", out_dir / f"{name}.mat"]
    return all(p.exists() for p in needed)


def _initial_coeffs(reconstructor: Reconstructor, photos: list[PreparedPhoto], out_dir: Path,
                    resume: bool, notes: Optional[dict[str, list[str]]] = None) -> Coeffs:
    """R-Net / landmark-fit coefficients, or the existing ``<out>/<stem>.mat`` when resuming.

    notes: photo name -> lines; a ``.mat`` that cannot be used adds one and is not used."""
    batch = reconstructor.options.batch_size
    parts = [reconstructor.coefficients(photos[i:i + batch]) for i in range(0, len(photos), batch)]
    coeffs = Coeffs.cat(parts)
    if not resume:
        return coeffs
    sizes = reconstructor.face_model.coeff_sizes
    for index, photo in enumerate(photos):
        previous = out_dir / f"{photo.stem}.mat"
        if not previous.is_file():
            continue
        try:
            values = resumable_coeffs(previous, sizes)
        except ValueError as err:
            if notes is not None:
                notes.setdefault(photo.path.name, []).append(f"{err}; fitted from scratch")
            continue
        previous_coeffs = Coeffs.from_numpy_dict(values, coeffs.id.dtype, coeffs.id.device)
        for g in Coeffs.GROUPS:
            getattr(coeffs, g)[index] = getattr(previous_coeffs, g)[0]
    return coeffs


def resumable_coeffs(path: Path, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """The coefficient groups of a ``<stem>.mat`` to resume from, checked: readable, every
    group of this face model's size, all finite. Raises ValueError naming the file."""
    values = read_coeffs_mat(path)
    wrong = [f"{g} has {values[g].size} values, the model {sizes[g]}"
             for g in Coeffs.GROUPS if values[g].size != sizes[g]]
    if wrong:
        raise ValueError(f"{path}: coefficients of another face model ({'; '.join(wrong)})")
    bad = [g for g in Coeffs.GROUPS if not np.isfinite(values[g]).all()]
    if bad:
        raise ValueError(f"{path}: non-finite coefficients in {', '.join(bad)}")
    return values


def _targets(photos: list[PreparedPhoto], reconstructor: Reconstructor) -> FitTargets:
    images = torch.stack([p.crop_tensor() for p in photos]).to(reconstructor.device)
    landmarks, landmark_set = reconstructor.landmarks(photos)
    return FitTargets(images, landmarks, landmark_set=landmark_set, intrinsics=reconstructor.intrinsics(photos))


def refine_folder(photo_dir: str | Path, out_dir: str | Path, options: SubjectOptions,
                  joint: bool) -> SubjectReconstruction:
    """Prepare, initialise, (aggregate,) fit and write; see the module docstring.

    joint: True fits one shared identity and albedo (the subject job); False fits every
    photo independently (``faceset fit`` without ``--subject``).
    """
    if options.flags.lpips:
        import_lpips()  # fail before fitting, not after
    try:
        return _refine_folder(Path(photo_dir), Path(out_dir), options, joint)
    except KeyboardInterrupt:
        raise Interrupted(0, 1, "subject fits" if joint else "fit jobs") from None


def _refine_folder(photo_dir: Path, out_dir: Path, options: SubjectOptions,
                   joint: bool) -> SubjectReconstruction:
    if not (options.reconstruct.overwrite or options.resume):
        present, complete = finished_outputs(out_dir, photo_dir, joint)
        if complete:
            raise AlreadyDone(f"{out_dir} already holds this finished fit ({REPORT_NAME}); "
                              "nothing to do (--overwrite redoes it)")
        if present:
            raise ValueError(f"{out_dir}: would overwrite {len(present)} finished output "
                             f"file(s) (e.g. {present[0].name}); pass --overwrite"
                             + ("" if joint else ", or --resume to refine them"))
    photos, failed = prepare_photos(photo_dir, options)
    if not photos:
        raise ValueError(f"{photo_dir}: no usable photo ({len(failed)} failed: "
                         + "; ".join(f"{k}: {v}" for k, v in failed.items()) + ")")
    notes = {p.path.name: list(p.notes) for p in photos if p.notes}
    out_dir.mkdir(parents=True, exist_ok=True)
    reconstructor = Reconstructor(options.reconstruct)
    face_model = reconstructor.face_model
    cnet = _load_cnet(options, reconstructor)
    initial = _initial_coeffs(reconstructor, photos, out_dir, options.resume, notes)
    targets = _targets(photos, reconstructor)
    config = options.fit_config()
    encoder = configured_identity_encoder(options.flags.identity, options.flags.arcface,
                                          reconstructor.device)
    state = FitState.load(out_dir, [p.stem for p in photos], joint, config, notes)
    start = fused_start = None
    if state is not None:
        device = reconstructor.device
        initial, start = (c.map(lambda t: t.to(device)) for c in (state.initial, state.coeffs))
        config = replace(config, iterations=state.remaining())
    elif joint:
        fused_start = _fuse(options, reconstructor, cnet, photos, initial, targets)
        start = initial.replace(id=fused_start.id.expand_as(initial.id).clone(),
                                tex=fused_start.tex.expand_as(initial.tex).clone())
    try:
        result = (fit_subject if joint else fit_images)(
            face_model, targets, initial if start is None else start, config, encoder)
    except FitInterrupted as stop:
        saved = FitState.interrupted(out_dir, [p.stem for p in photos], joint,
                                     options.fit_config(), initial, stop, state)
        raise Interrupted(0, 1, "subject fits" if joint else "fit jobs",
                          f"the fit stopped after {sum(saved.done)} of "
                          f"{sum(saved.schedule)} steps, kept in {saved.path(out_dir)}") from None
    if state is not None:
        state.extend(result)
    person = result.coeffs[0]   # joint: every photo holds the shared identity and albedo
    if not joint:
        identity = _fuse(options, reconstructor, cnet, photos, result.coeffs, targets)
        person = person.replace(id=identity.id, tex=identity.tex)
    fused = person.neutral()
    recon = SubjectReconstruction(stems=[p.stem for p in photos], failed=failed, initial=initial,
                                  fitted=result.coeffs, fused=fused, fit=result, notes=notes,
                                  start=fused_start)
    write_outputs(out_dir, recon, photos, reconstructor, targets, joint, lpips=options.flags.lpips)
    FitState.path(out_dir).unlink(missing_ok=True)
    return recon


def _load_cnet(options: SubjectOptions, reconstructor: Reconstructor):
    """The C-Net of ``options.flags.cnet`` for the "cnet" method (checked against the job's
    R-Net, before any fitting), else None."""
    if options.flags.aggregate != "cnet":
        return None
    from aggregation.cnet import check_rnet, load_cnet, resolve_cnet
    if options.flags.cnet is None:
        raise ValueError("--aggregate cnet needs --cnet NAME|FILE (a C-Net from 'faceset train-cnet')")
    if reconstructor.rnet is None:
        raise ValueError("--aggregate cnet reads R-Net features, but this job starts from the landmark "
                         "initialiser: give the R-Net the C-Net was trained with (--checkpoint)")
    cnet, record = load_cnet(options.flags.cnet, reconstructor.device)
    check_rnet(record, reconstructor.rnet, str(resolve_cnet(options.flags.cnet)))
    return cnet.to(reconstructor.device)


def _fuse(options: SubjectOptions, reconstructor: Reconstructor, cnet, photos: list[PreparedPhoto],
          coeffs: Coeffs, targets: FitTargets) -> AggregatedIdentity:
    """One identity and albedo of ``coeffs`` (M, ...) by ``options.flags.aggregate``;
    the C-Net weighs the photos by the job's R-Net features of their crops."""
    features = reconstructor.features(photos) if cnet is not None else None
    config = options.aggregation_config()
    return aggregate(config.method, reconstructor.face_model, coeffs,
                     target_landmarks=targets.landmarks, features=features, cnet=cnet,
                     config=config, landmark_set=targets.landmark_set)


@dataclass
class FitState:
    """A fit stopped by Ctrl-C, kept in ``OUT/fit_interrupted.pt`` so the re-run continues
    from the coefficients it reached (the optimiser's moments restart) instead of from the
    start. schedule: steps per pyramid level of the whole fit; done: steps run per level."""

    stems: list[str]
    joint: bool
    schedule: list[int]
    done: list[int]
    initial: Coeffs
    coeffs: Coeffs
    history: list[dict]

    FILE_NAME = "fit_interrupted.pt"
    FORMAT = "faceset.fit_state/1"

    @staticmethod
    def path(out_dir: Path) -> Path:
        return Path(out_dir) / FitState.FILE_NAME

    def remaining(self) -> tuple[int, ...]:
        """Steps per level still to run: none for the levels before the one interrupted."""
        current = max([i for i, d in enumerate(self.done) if d > 0], default=0)
        steps = [0 if i < current else s - self.done[i] if i == current else s
                 for i, s in enumerate(self.schedule)]
        if sum(steps) == 0:
            steps[-1] = 1
        return tuple(max(s, 0) for s in steps)

    def extend(self, result: FitResult) -> None:
        """Make a resumed fit's result describe the whole fit (history, steps per level)."""
        result.history[:0] = self.history
        result.iterations = [a + b for a, b in zip(self.done, result.iterations)]

    @classmethod
    def interrupted(cls, out_dir: Path, stems: list[str], joint: bool, config: FitConfig,
                    initial: Coeffs, stop: FitInterrupted, before: Optional["FitState"]) -> "FitState":
        done = stop.iterations if before is None else [a + b for a, b in zip(before.done, stop.iterations)]
        state = cls(stems=stems, joint=joint, schedule=list(config.iterations), done=done,
                    initial=initial, coeffs=stop.coeffs,
                    history=(before.history if before else []) + stop.history)
        buffer = io.BytesIO()
        torch.save({"format": cls.FORMAT, "stems": stems, "joint": joint, "schedule": state.schedule,
                    "done": done, "history": state.history,
                    "initial": {g: getattr(initial, g).cpu() for g in Coeffs.GROUPS},
                    "coeffs": {g: getattr(stop.coeffs, g).cpu().contiguous() for g in Coeffs.GROUPS}},
                   buffer)
        write_atomic(cls.path(out_dir), buffer.getvalue())
        return state

    @classmethod
    def load(cls, out_dir: Path, stems: list[str], joint: bool, config: FitConfig,
             notes: dict[str, list[str]]) -> Optional["FitState"]:
        """The kept state when it belongs to this job, else None with a note saying why."""
        path = cls.path(out_dir)
        if not path.is_file():
            return None
        try:
            data = read_torch_file(path)
            if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
                raise ValueError(f"{path}: not a faceset fit state")
            state = cls(stems=list(data["stems"]), joint=bool(data["joint"]),
                        schedule=[int(s) for s in data["schedule"]],
                        done=[int(d) for d in data["done"]], history=list(data["history"]),
                        initial=Coeffs(**data["initial"]), coeffs=Coeffs(**data["coeffs"]))
        except (ValueError, KeyError, TypeError) as err:
            notes.setdefault(path.name, []).append(f"{err}; the fit starts from the beginning")
            return None
        if (state.stems, state.joint, state.schedule) != (stems, joint, list(config.iterations)):
            notes.setdefault(path.name, []).append(
                "kept from another photo set or schedule; the fit starts from the beginning")
            return None
        notes.setdefault(path.name, []).append(
            f"continuing the interrupted fit from step {sum(state.done)} of {sum(state.schedule)}")
        return state


class AlreadyDone(Exception):
    """The output folder holds this job's finished outputs (not an error: exit 0)."""


def reconstruct_subject(photo_dir: str | Path, out_dir: str | Path,
                        options: Optional[SubjectOptions] = None) -> SubjectReconstruction:
    """The main job on a folder of photos of one person (see the module docstring)."""
    return refine_folder(photo_dir, out_dir, options or SubjectOptions(), joint=True)


# ---- outputs --------------------------------------------------------------------------

@torch.no_grad()
def write_outputs(out_dir: Path, recon: SubjectReconstruction, photos: list[PreparedPhoto],
                  reconstructor: Reconstructor, targets: FitTargets, joint: bool,
                  lpips: bool = False) -> None:
    """Every photo's files, the fused mesh and ``.mat``, the fit report and report.html."""
    face_model = reconstructor.face_model
    fitted = recon.fitted
    _check_finite(recon)
    geometry = reconstructor.geometry(fitted, photos)
    canonical = face_model.compute(fitted.neutral())
    render = reconstructor.render(geometry)
    # The report last: its presence marks the job finished (``finished_outputs``).
    (out_dir / REPORT_NAME).unlink(missing_ok=True)
    for reconstruction in per_photo(photos, fitted, geometry, canonical, render):
        write_photo_outputs(out_dir, reconstruction, face_model)
    name = "subject" if joint else "fused"
    recon.outputs.update(write_subject_mesh(out_dir, name, recon.fused, face_model))
    write_coeffs_mat(out_dir / f"{name}.mat", recon.fused.to_numpy_dict())
    recon.outputs[f"{name}.mat"] = out_dir / f"{name}.mat"
    recon.outputs.update(write_report(out_dir, recon, photos, reconstructor, targets, geometry,
                                      render, lpips))
    from faceset.report import write_folder_report
    recon.outputs["report.html"] = write_folder_report(out_dir, name)


def _check_finite(recon: SubjectReconstruction) -> None:
    groups = [getattr(recon.fitted, g) for g in Coeffs.GROUPS]
    bad = [stem for i, stem in enumerate(recon.stems)
           if not all(torch.isfinite(t[min(i, len(t) - 1)]).all() for t in groups)]
    if bad:
        raise ValueError(f"the fit diverged (non-finite coefficients) for {', '.join(bad)}; "
                         "nothing was written")



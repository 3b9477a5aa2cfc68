"""The main job: reconstruct one person from a photo collection, and ``faceset fit``.

``reconstruct_subject``: prepare every photo (detection file or dlib, the 224 crop, 68
landmarks), initialise (R-Net with a checkpoint, else the landmark fit + SH lighting),
aggregate one identity (``aggregation``), fit it jointly with per-image expression, pose
and light (``fitting.fit_subject``), and write:

- per photo, everything ``faceset reconstruct`` writes (``<stem>.obj/.mat/.png``,
  ``<stem>_canonical.obj``, ``<stem>_transform.json``) from the fitted coefficients;
- ``subject.obj``: the neutral canonical mesh with albedo vertex colours (and, when the
  model has UVs, ``vt`` lines, ``subject.mtl`` and the baked albedo ``subject_texture.png``);
- ``subject.mat``: the fused coefficients (id, tex; exp, pose and light zero) as the
  original's ``.mat`` keys;
- ``subject.glb`` (metres, textured) and ``subject.ply`` (model units, vertex colours);
- ``fit_report.json``, ``fit_losses.png`` (loss curves) and ``fit_overlays.png`` (per
  photo: crop | start | fitted);
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
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from aggregation import AggregationConfig, aggregate_identity, neutral_coeffs
from faceset.pipeline import (PhotoPreparer, PreparedPhoto, ReconstructOptions, Reconstructor,
                              neutral_coeffs as canonical_coeffs, output_paths, require_photos,
                              write_photo_outputs)
from faceset.errors import Interrupted
from fitting import FitConfig, FitResult, FitTargets, fit_images, fit_subject
from fitting.fit import FitInterrupted
from recon.io import (figure_png, obj_text, read_coeffs_mat, read_torch_file, write_atomic,
                      write_coeffs_mat, write_png)
from recon.landmark_set import LandmarkSet
from recon.types import Coeffs

TEXTURE_SIZE = 512
REPORT_NAME = "fit_report.json"   # written last: its presence marks a finished fit
LANDMARK_RMSE_NOTE = ("the fit matches the photo's pixels as well as the 68 landmarks, so the "
                      "landmark RMSE may rise while the face fits the photo better; the "
                      "detector's landmarks are themselves a few pixels off")
OVERLAY_COLUMNS = ("photo crop", "start", "fitted")


@dataclass
class SubjectOptions:
    """reconstruct: model, checkpoint, device, renderer (as ``faceset reconstruct``);
    iterations: total fitting steps over the pyramid (None: FitConfig's default schedule);
    fit: the fitting configuration; aggregation: how the identity is fused;
    identity_encoder: "none", "dlib" or "arcface" (adds the SPEC 5 identity term);
    identity_weights: the ArcFace backbone.pth (default $FACESET_ARCFACE);
    lpips: add LPIPS (render over photo vs photo) before / after to the fit report;
    resume: start from ``<out>/<stem>.mat`` where present (``faceset fit`` refines)."""

    reconstruct: ReconstructOptions = field(default_factory=ReconstructOptions)
    iterations: Optional[int] = None
    fit: FitConfig = field(default_factory=FitConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    identity_encoder: str = "none"
    identity_weights: Optional[Path] = None
    lpips: bool = False
    resume: bool = False
    show_progress: bool = True


@dataclass
class SubjectReconstruction:
    """stems: the photos used, in order; failed: photo name -> reason; initial / fitted:
    (M, ...) per-image coefficients before / after fitting; fused: (1, ...) neutral
    coefficients of the person (id, tex); fit: the FitResult; outputs: file paths."""

    stems: list[str]
    failed: dict[str, str]
    initial: Coeffs
    fitted: Coeffs
    fused: Coeffs
    fit: FitResult
    outputs: dict[str, Path] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)


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
        for g in Coeffs.GROUPS:
            getattr(coeffs, g)[index] = torch.from_numpy(values[g]).to(getattr(coeffs, g))
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


def _fit_config(options: SubjectOptions) -> FitConfig:
    config = replace(options.fit, renderer_backend=options.reconstruct.backend,
                     show_progress=options.show_progress)
    return config if options.iterations is None else config.with_total_iterations(options.iterations)


def _encoder(options: SubjectOptions, device: torch.device):
    if options.identity_encoder == "none":
        return None
    from recon.identity import load_identity_encoder
    weights = options.identity_weights if options.identity_encoder == "arcface" else None
    return load_identity_encoder(options.identity_encoder, weights=weights, device=device)


def refine_folder(photo_dir: str | Path, out_dir: str | Path, options: SubjectOptions,
                  joint: bool) -> SubjectReconstruction:
    """Prepare, initialise, (aggregate,) fit and write; see the module docstring.

    joint: True fits one shared identity and albedo (the subject job); False fits every
    photo independently (``faceset fit`` without ``--subject``).
    """
    if options.lpips:
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
    initial = _initial_coeffs(reconstructor, photos, out_dir, options.resume, notes)
    targets = _targets(photos, reconstructor)
    config = _fit_config(options)
    encoder = _encoder(options, reconstructor.device)
    state = FitState.load(out_dir, [p.stem for p in photos], joint, config, notes)
    start = None
    if state is not None:
        device = reconstructor.device
        initial, start = (c.map(lambda t: t.to(device)) for c in (state.initial, state.coeffs))
        config = replace(config, iterations=state.remaining())
    elif joint:
        fused_start = aggregate_identity(face_model, initial, targets.landmarks, options.aggregation,
                                         landmark_set=targets.landmark_set)
        start = initial.replace(id=fused_start.id.expand_as(initial.id).clone(),
                                tex=fused_start.tex.expand_as(initial.tex).clone())
    try:
        result = (fit_subject if joint else fit_images)(
            face_model, targets, initial if start is None else start, config, encoder)
    except FitInterrupted as stop:
        saved = FitState.interrupted(out_dir, [p.stem for p in photos], joint,
                                     _fit_config(options), initial, stop, state)
        raise Interrupted(0, 1, "subject fits" if joint else "fit jobs",
                          f"the fit stopped after {sum(saved.done)} of "
                          f"{sum(saved.schedule)} steps, kept in {saved.path(out_dir)}") from None
    if state is not None:
        state.extend(result)
    if joint:
        fused = neutral_coeffs_from(result.coeffs[0], face_model.coeff_sizes)
    else:
        fused = neutral_coeffs(aggregate_identity(face_model, result.coeffs, targets.landmarks,
                                                  options.aggregation, landmark_set=targets.landmark_set),
                               face_model.coeff_sizes)
    recon = SubjectReconstruction(stems=[p.stem for p in photos], failed=failed, initial=initial,
                                  fitted=result.coeffs, fused=fused, fit=result, notes=notes)
    write_outputs(out_dir, recon, photos, reconstructor, joint, lpips=options.lpips)
    FitState.path(out_dir).unlink(missing_ok=True)
    return recon


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
                        initial=Coeffs(**{g: data["initial"][g] for g in Coeffs.GROUPS}),
                        coeffs=Coeffs(**{g: data["coeffs"][g] for g in Coeffs.GROUPS}))
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


def neutral_coeffs_from(coeffs: Coeffs, sizes: dict[str, int]) -> Coeffs:
    """(1, ...) coefficients with this id and tex; exp, pose and lighting zero."""
    zero = Coeffs.zeros(1, sizes, device=coeffs.id.device, dtype=coeffs.id.dtype)
    return zero.replace(id=coeffs.id[:1].clone(), tex=coeffs.tex[:1].clone())


def reconstruct_subject(photo_dir: str | Path, out_dir: str | Path,
                        options: Optional[SubjectOptions] = None) -> SubjectReconstruction:
    """The main job on a folder of photos of one person (see the module docstring)."""
    return refine_folder(photo_dir, out_dir, options or SubjectOptions(), joint=True)


# ---- outputs --------------------------------------------------------------------------

@torch.no_grad()
def write_outputs(out_dir: Path, recon: SubjectReconstruction, photos: list[PreparedPhoto],
                  reconstructor: Reconstructor, joint: bool, lpips: bool = False) -> None:
    face_model = reconstructor.face_model
    fitted = recon.fitted
    _check_finite(recon)
    geometry = reconstructor.geometry(fitted, photos)
    canonical = face_model.compute(canonical_coeffs(fitted))
    render = reconstructor.render(geometry)
    from recon.render import RenderOutput
    # The report last: its presence marks the job finished (``finished_outputs``).
    (out_dir / REPORT_NAME).unlink(missing_ok=True)
    for i, photo in enumerate(photos):
        one = RenderOutput(mask=render.mask[i:i + 1], image=render.image[i:i + 1],
                           depth=render.depth[i:i + 1], rast=render.rast[i:i + 1])
        write_photo_outputs(out_dir, photo, fitted[i], geometry[i], canonical[i], one, face_model)
    name = "subject" if joint else "fused"
    recon.outputs.update(write_subject_mesh(out_dir, name, recon.fused, face_model))
    write_coeffs_mat(out_dir / f"{name}.mat", recon.fused.to_numpy_dict())
    recon.outputs[f"{name}.mat"] = out_dir / f"{name}.mat"
    recon.outputs.update(write_report(out_dir, recon, photos, reconstructor, render, lpips))
    from faceset.report import write_folder_report
    recon.outputs["report.html"] = write_folder_report(out_dir, name)


def _check_finite(recon: SubjectReconstruction) -> None:
    groups = [getattr(recon.fitted, g) for g in Coeffs.GROUPS]
    bad = [stem for i, stem in enumerate(recon.stems)
           if not all(torch.isfinite(t[min(i, len(t) - 1)]).all() for t in groups)]
    if bad:
        raise ValueError(f"the fit diverged (non-finite coefficients) for {', '.join(bad)}; "
                         "nothing was written")


def write_subject_mesh(out_dir: Path, name: str, fused: Coeffs, face_model) -> dict[str, Path]:
    """``<name>.obj`` (neutral canonical, albedo colours) + UV texture and material."""
    geometry = face_model.compute(fused)
    vertices = geometry.canonical[0].cpu().numpy()
    albedo = geometry.albedo[0].cpu().numpy()
    triangles = face_model.triangles.cpu().numpy()
    uvs = None if face_model.uvs is None else face_model.uvs.cpu().numpy()
    outputs = {}
    texture = None if uvs is None else bake_texture(face_model, geometry.albedo[0], TEXTURE_SIZE)
    text = obj_text(vertices, triangles, albedo, uvs,
                    header="faceset subject: neutral canonical shape, albedo colours, model units (dm)")
    if uvs is not None:
        write_png(out_dir / f"{name}_texture.png", texture)
        mtl = f"newmtl albedo\nKd 1 1 1\nmap_Kd {name}_texture.png\n"
        write_atomic(out_dir / f"{name}.mtl", mtl.encode())
        header, body = text.split("\n", 1)
        text = f"{header}\nmtllib {name}.mtl\nusemtl albedo\n{body}"
        outputs[f"{name}_texture.png"] = out_dir / f"{name}_texture.png"
        outputs[f"{name}.mtl"] = out_dir / f"{name}.mtl"
    write_atomic(out_dir / f"{name}.obj", text.encode())
    outputs[f"{name}.obj"] = out_dir / f"{name}.obj"
    from faceset.report import export_mesh_formats
    outputs.update(export_mesh_formats(out_dir, name, vertices, triangles, albedo, uvs, texture))
    return outputs


def bake_texture(face_model, albedo: torch.Tensor, size: int) -> np.ndarray:
    """Rasterize the mesh in UV space: (size, size, 3) uint8 albedo image, row 0 = v 1.

    albedo: (N, 3) in [0, 1]. Texels no triangle covers take the nearest covered texel's
    colour (a few dilation passes), so bilinear lookups at seams do not pick up black.
    """
    from recon.render import interpolate, rasterize
    uvs = face_model.uvs.to(albedo.device, albedo.dtype)
    clip = torch.stack([2 * uvs[:, 0] - 1, 1 - 2 * uvs[:, 1], torch.zeros_like(uvs[:, 0]),
                        torch.ones_like(uvs[:, 0])], dim=-1)[None]
    rast = rasterize(clip, face_model.triangles, (size, size), backend="torch")
    image = interpolate(albedo[None], rast, face_model.triangles, backend="torch")[0]
    covered = rast[0, ..., 3] > 0
    image = _dilate(image, covered, passes=4)
    return (image.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def _dilate(image: torch.Tensor, covered: torch.Tensor, passes: int) -> torch.Tensor:
    import torch.nn.functional as F
    values = image.permute(2, 0, 1)[None] * covered[None, None]
    weight = covered[None, None].to(image.dtype)
    for _ in range(passes):
        summed = F.avg_pool2d(values, 3, 1, 1) * 9
        count = F.avg_pool2d(weight, 3, 1, 1) * 9
        fill = (weight == 0) & (count > 0)
        values = torch.where(fill, summed / count.clamp(min=1e-9), values)
        weight = torch.where(fill, torch.ones_like(weight), weight)
    return values[0].permute(1, 2, 0)


def _landmark_rmse(face_model, geometry, landmarks: torch.Tensor,
                   landmark_set: Optional[LandmarkSet] = None) -> list[float]:
    """Per photo: RMS pixel distance between the model's points and the targets; with a
    landmark set, over the set's points that carry weight (weighted as the fit weights them)."""
    if landmark_set is None:
        return ((geometry.landmarks - landmarks) ** 2).sum(-1).mean(-1).sqrt().cpu().tolist()
    predicted = face_model.camera.project(landmark_set.points(geometry.camera))
    weights = landmark_set.weights.to(landmarks)
    squared = ((predicted - landmarks) ** 2).sum(-1)
    return ((squared * weights).sum(-1) / weights.sum()).sqrt().cpu().tolist()


def write_report(out_dir: Path, recon: SubjectReconstruction, photos: list[PreparedPhoto],
                 reconstructor: Reconstructor, fitted_render, lpips: bool = False) -> dict[str, Path]:
    """fit_report.json, fit_losses.png and fit_overlays.png (LPIPS in the report if asked)."""
    face_model = reconstructor.face_model
    landmarks, landmark_set = reconstructor.landmarks(photos)
    initial = reconstructor.geometry(recon.initial, photos)
    report = {
        "photos": recon.stems, "failed": recon.failed, "seconds": recon.fit.seconds,
        "iterations_per_level": recon.fit.iterations,
        "landmarks": "ibug68" if landmark_set is None else landmark_set.name,
        "landmark_rmse_px_before": _landmark_rmse(face_model, initial, landmarks, landmark_set),
        "landmark_rmse_px_after": _landmark_rmse(face_model, reconstructor.geometry(recon.fitted, photos),
                                                 landmarks, landmark_set),
        "landmark_rmse_note": LANDMARK_RMSE_NOTE,
        "notes": recon.notes,
        "final_loss": None if recon.fit.final_loss is None else recon.fit.final_loss.cpu().tolist(),
        "history": recon.fit.history,
    }
    paths = {REPORT_NAME: out_dir / REPORT_NAME,
             "fit_losses.png": out_dir / "fit_losses.png",
             "fit_overlays.png": out_dir / "fit_overlays.png"}
    initial_render = reconstructor.render(initial)
    if lpips:
        report["lpips_before"] = perceptual_distances(photos, initial_render, reconstructor.device)
        report["lpips_after"] = perceptual_distances(photos, fitted_render, reconstructor.device)
    write_atomic(paths["fit_losses.png"], loss_plot_png(recon.fit.history))
    write_png(paths["fit_overlays.png"], overlay_grid(photos, initial_render, fitted_render))
    write_atomic(paths[REPORT_NAME], json.dumps(report, indent=1).encode())
    return paths


def import_lpips():
    try:
        import lpips
    except ImportError as err:
        raise ImportError("--lpips needs the 'lpips' extra: pip install \"faceset[lpips]\"") from err
    return lpips


@torch.no_grad()
def perceptual_distances(photos: list[PreparedPhoto], render, device: torch.device) -> list[float]:
    """LPIPS (AlexNet) between each crop with the render pasted over it and the crop itself.

    Needs the ``lpips`` extra, which fetches torchvision's AlexNet weights at first use.
    """
    metric = import_lpips().LPIPS(net="alex", verbose=False).to(device).eval()
    target = torch.stack([p.crop_tensor() for p in photos]).to(device)
    overlay = render.image * render.mask + target * (1 - render.mask)
    return metric(overlay * 2 - 1, target * 2 - 1).flatten().cpu().tolist()


def loss_plot_png(history: list[dict]) -> bytes:
    """PNG bytes of the weighted loss terms per step (log scale), levels marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    axis = figure.subplots()
    steps = np.arange(len(history))
    names = [k for k in history[0] if k not in ("level", "scale")] if history else []
    for name in names:
        axis.plot(steps, [max(h.get(name, np.nan), 1e-8) for h in history], label=name,
                  linewidth=2.0 if name == "total" else 1.0)
    for step in range(1, len(history)):
        if history[step]["level"] != history[step - 1]["level"]:
            axis.axvline(step, color="grey", linestyle=":", linewidth=0.8)
    axis.set_yscale("log")
    axis.set_xlabel("step (dotted: next pyramid level)")
    axis.set_ylabel("weighted loss (mean per image)")
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    return figure_png(figure)


def overlay_grid(photos: list[PreparedPhoto], before, after) -> np.ndarray:
    """(L + M*224, 672, 3) uint8: a label row (``OVERLAY_COLUMNS``), then per photo
    crop | start overlay | fitted overlay."""
    rows = []
    for i, photo in enumerate(photos):
        crop = photo.crop_tensor()
        panels = [crop]
        for render in (before, after):
            mask = render.mask[i].cpu()
            panels.append(render.image[i].cpu() * mask + crop * (1 - mask))
        rows.append(torch.cat(panels, dim=2))
    grid = torch.cat(rows, dim=1).clamp(0, 1)
    pixels = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return np.concatenate([column_labels(OVERLAY_COLUMNS, photos[0].crop.shape[1]), pixels])


def column_labels(labels: tuple[str, ...], width: int, height: int = 24) -> np.ndarray:
    """(height, len(labels) * width, 3) uint8: each label centred over its column, black
    on white, in PIL's built-in font."""
    from PIL import Image, ImageDraw
    strip = Image.new("RGB", (width * len(labels), height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for index, label in enumerate(labels):
        left, top, right, bottom = draw.textbbox((0, 0), label)
        draw.text((index * width + (width - right + left) / 2, (height - bottom + top) / 2 - top),
                  label, fill=(0, 0, 0))
    return np.asarray(strip)


# ---- CLI glue -------------------------------------------------------------------------

def options_from_args(args) -> SubjectOptions:
    """SubjectOptions from the parsed ``reconstruct --subject`` / ``fit`` arguments."""
    from faceset.commands.reconstruct import options_from_args as reconstruct_options
    fit = FitConfig()
    if getattr(args, "no_silhouette", False):
        fit = replace(fit, silhouette_weight=None)
    if getattr(args, "no_contrast", False):
        fit = replace(fit, weights=replace(fit.weights, contrast=0.0))
    return SubjectOptions(reconstruct=reconstruct_options(args), iterations=getattr(args, "iters", None),
                          fit=fit, identity_encoder=getattr(args, "identity", "none"),
                          identity_weights=getattr(args, "arcface", None),
                          lpips=getattr(args, "lpips", False),
                          resume=getattr(args, "resume", False))


def run_subject_command(args) -> int:
    """``faceset reconstruct PHOTO_DIR --subject --out OUT``."""
    return _run(args, joint=True)


def _run(args, joint: bool) -> int:
    try:
        result = refine_folder(args.img_dir, args.out, options_from_args(args), joint=joint)
    except AlreadyDone as done:
        print(done)
        return 0
    report = json.loads((Path(args.out) / REPORT_NAME).read_text())
    before = np.mean(report["landmark_rmse_px_before"])
    after = np.mean(report["landmark_rmse_px_after"])
    print(f"fitted {len(result.stems)} photo(s) in {result.fit.seconds:.1f} s "
          f"({'one shared identity' if joint else 'per image'}); landmark RMSE {before:.2f} -> {after:.2f} px")
    if after > before:
        print(f"  (landmark RMSE rose: {LANDMARK_RMSE_NOTE})")
    for name, lines in result.notes.items():
        for line in lines:
            print(f"  note: {name}: {line}")
    for name, reason in result.failed.items():
        print(f"  skipped {name}: {reason}")
    print(f"outputs in {args.out}")
    return 1 if result.failed else 0

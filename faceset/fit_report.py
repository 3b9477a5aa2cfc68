"""The report of a fit job: ``fit_report.json`` (landmark RMSE before / after, losses, notes,
optionally LPIPS), ``fit_losses.png`` (loss curves) and ``fit_overlays.png`` (per photo:
crop | start | fitted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from faceset.pipeline import PreparedPhoto, Reconstructor
from fitting import FitTargets
from recon.io import figure_png, write_atomic, write_png
from recon.landmark_set import LandmarkSet
from recon.render import RenderOutput
from recon.types import FaceGeometry

if TYPE_CHECKING:
    from faceset.subject import SubjectReconstruction

REPORT_NAME = "fit_report.json"   # written last: its presence marks a finished fit
LANDMARK_RMSE_NOTE = ("the fit matches the photo's pixels as well as the 68 landmarks, so the "
                      "landmark RMSE may rise while the face fits the photo better; the "
                      "detector's landmarks are themselves a few pixels off")
OVERLAY_COLUMNS = ("photo crop", "start", "fitted")


def landmark_rmse(face_model, geometry, landmarks: torch.Tensor,
                   landmark_set: Optional[LandmarkSet] = None) -> list[float]:
    """Per photo: RMS pixel distance between the model's points and the targets; with a
    landmark set, over the set's points that carry weight (weighted as the fit weights them)."""
    if landmark_set is None:
        return ((geometry.landmarks - landmarks) ** 2).sum(-1).mean(-1).sqrt().cpu().tolist()
    predicted = face_model.camera.project(landmark_set.points(geometry.camera))
    weights = landmark_set.weights.to(landmarks)
    squared = ((predicted - landmarks) ** 2).sum(-1)
    return ((squared * weights).sum(-1) / weights.sum()).sqrt().cpu().tolist()


def write_report(out_dir: Path, recon: "SubjectReconstruction", photos: list[PreparedPhoto],
                 reconstructor: Reconstructor, targets: FitTargets, fitted_geometry: FaceGeometry,
                 fitted_render: RenderOutput, lpips: bool = False) -> dict[str, Path]:
    """fit_report.json, fit_losses.png and fit_overlays.png (LPIPS in the report if asked).

    targets: what the photos were fitted to; fitted_geometry / fitted_render: of
    ``recon.fitted`` through the photos' cameras (as written per photo)."""
    face_model = reconstructor.face_model
    landmarks, landmark_set = targets.landmarks, targets.landmark_set
    initial = reconstructor.geometry(recon.initial, photos)
    report = {
        "photos": recon.stems, "failed": recon.failed, "seconds": recon.fit.seconds,
        "iterations_per_level": recon.fit.iterations,
        "landmarks": "ibug68" if landmark_set is None else landmark_set.name,
        "landmark_rmse_px_before": landmark_rmse(face_model, initial, landmarks, landmark_set),
        "landmark_rmse_px_after": landmark_rmse(face_model, fitted_geometry, landmarks, landmark_set),
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
def perceptual_distances(photos: list[PreparedPhoto], render: RenderOutput, device: torch.device) -> list[float]:
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


def overlay_grid(photos: list[PreparedPhoto], before: RenderOutput, after: RenderOutput) -> np.ndarray:
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

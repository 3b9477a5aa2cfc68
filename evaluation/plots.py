"""Figures of the NoW paper: a per-vertex error heat map of the cropped scan, and the
cumulative error curve (percentage of vertices with error below x mm). Figures are built
with matplotlib's object API (no pyplot, no global backend switch); every PNG is written
atomically."""

from __future__ import annotations

import io
import os

import numpy as np

from evaluation.meshio import TriangleMesh, atomic_write_bytes

CURVE_RANGE_MM = 8.0  # the NoW plots span 0-8 mm


def cumulative_error_curve(errors: np.ndarray, max_mm: float = CURVE_RANGE_MM,
                           samples: int = 801) -> tuple[np.ndarray, np.ndarray]:
    """Exact empirical curve: for x in [0, max_mm], the percentage of errors <= x.

    Args:
        errors: (N,) float, mm (all vertices of all images pooled).
    Returns:
        x: (samples,) mm; percent: (samples,) in [0, 100].
    """
    errors = np.sort(np.asarray(errors, dtype=np.float64).ravel())
    x = np.linspace(0.0, max_mm, samples)
    if errors.size == 0:
        return x, np.zeros_like(x)
    return x, 100.0 * np.searchsorted(errors, x, side="right") / errors.size


def _save(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def plot_cumulative_errors(curves: dict[str, np.ndarray], path: str | os.PathLike,
                           max_mm: float = CURVE_RANGE_MM) -> None:
    """One curve per method: ``curves`` maps a label to its pooled (N,) errors in mm."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4))
    axes = figure.add_subplot()
    for label, errors in curves.items():
        x, percent = cumulative_error_curve(errors, max_mm)
        axes.plot(x, percent, label=label)
    axes.set_xlim(0, max_mm)
    axes.set_ylim(0, 100)
    axes.set_xlabel("Error [mm]")
    axes.set_ylabel("Percentage of vertices")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    atomic_write_bytes(path, _save(figure))


def _view_frame(vertices: np.ndarray) -> np.ndarray:
    """An orthonormal frame (rows: right, up, towards the viewer) looking at the face.

    The view axis is the direction of least spread of the cropped scan (a face crop is a
    shallow cap), signed so that the nose side (farthest from the mean) faces the viewer.
    """
    centred = vertices - vertices.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    right, up, view = axes[0], axes[1], axes[2]
    if np.max(centred @ view) < -np.min(centred @ view):
        view = -view
    if np.cross(right, up) @ view < 0:
        right = -right
    if abs(up[1]) < abs(right[1]):  # keep the scan's y-up upright where it has one
        right, up = -up, right
    if up[1] < 0:
        right, up = -right, -up
    return np.stack([right, up, view])


def plot_error_heatmap(scan: TriangleMesh, errors: np.ndarray, path: str | os.PathLike,
                       max_mm: float = 4.0, title: str = "") -> None:
    """Per-vertex error heat map of the cropped scan, seen from the front.

    Args:
        scan: the cropped scan (mm); errors: (V,) mm per scan vertex; max_mm: colour cap.
    Triangles are painted back to front, each with the mean error of its corners.
    """
    from matplotlib.figure import Figure

    errors = np.asarray(errors, dtype=np.float64)
    if errors.shape != (len(scan.vertices),):
        raise ValueError(f"heat map needs one error per scan vertex: {errors.shape} vs "
                         f"{len(scan.vertices)} vertices")
    projected = (scan.vertices - scan.vertices.mean(axis=0)) @ _view_frame(scan.vertices).T
    figure = Figure(figsize=(4.5, 5))
    axes = figure.add_subplot()
    if len(scan.faces):
        order = np.argsort(projected[scan.faces, 2].mean(axis=1))
        faces = scan.faces[order]
        image = axes.tripcolor(projected[:, 0], projected[:, 1], faces,
                               facecolors=errors[faces].mean(axis=1), cmap="jet",
                               vmin=0.0, vmax=max_mm)
    else:
        image = axes.scatter(projected[:, 0], projected[:, 1], c=errors, s=1, cmap="jet",
                             vmin=0.0, vmax=max_mm)
    axes.set_aspect("equal")
    axes.axis("off")
    figure.colorbar(image, ax=axes, label="error [mm]", shrink=0.8)
    if title:
        axes.set_title(title, fontsize=9)
    atomic_write_bytes(path, _save(figure))


def plot_challenge_bars(statistics: dict[str, dict], path: str | os.PathLike, title: str = "") -> None:
    """One challenge: per method, bars of the median and the mean (std as a whisker).

    ``statistics`` maps a method label to its {median, mean, std} in mm (a missing median,
    as in MICC's per-mesh RMSE, draws the mean alone).
    """
    from matplotlib.figure import Figure

    labels = list(statistics)
    has_median = any(np.isfinite(s.get("median", np.nan)) for s in statistics.values())
    kinds = ["median", "mean"] if has_median else ["mean"]
    width = 0.8 / len(kinds)
    positions = np.arange(len(labels))
    figure = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(labels)), 3.6))
    axes = figure.add_subplot()
    for k, kind in enumerate(kinds):
        values = [statistics[m].get(kind, np.nan) for m in labels]
        errors = [statistics[m].get("std", np.nan) for m in labels] if kind == "mean" else None
        axes.bar(positions + (k - (len(kinds) - 1) / 2) * width, values, width, yerr=errors,
                 capsize=3 if errors else 0, label=kind + (" (whisker: std)" if errors else ""))
    axes.set_xticks(positions, labels, rotation=25, ha="right", fontsize=8)
    axes.set_ylabel("Error [mm]")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title, fontsize=9)
    atomic_write_bytes(path, _save(figure))

"""``report.html``: one static page per run that opens from disk, with no server and no network.

The page shows, per photo, the crop, the fitted overlay and the landmarks (the
``<stem>.png`` strip of the run), the loss curves, failed photos, and the subject mesh in
an interactive three.js viewer (rotate, zoom, pan; texture, shading, wireframe toggles;
the per-vertex error as a colour map when the ground truth is known). Everything is
inlined: images as base64 data URLs, the mesh as base64 arrays, three.js (vendored under
``vendor/three``, see its README) and the viewer script as classic ``<script>`` blocks,
because Chromium refuses ES modules from ``file://``.

``write_folder_report(out_dir)`` builds the page from a run's output folder (what
``reconstruct --subject`` writes); ``write_report`` takes the pieces directly.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from faceset.report.export import export_mesh_formats

__all__ = ["MeshView", "PhotoPanel", "render_report", "write_report", "write_folder_report",
           "error_colors", "export_mesh_formats", "ERROR_CAP_MM"]

PACKAGE_DIR = Path(__file__).resolve().parent
THREE_BUNDLE = PACKAGE_DIR / "vendor" / "three" / "three-bundle.min.js"
VIEWER_SCRIPT = PACKAGE_DIR / "viewer.js"
ERROR_CAP_MM = 4.0          # the colour map saturates here (the NoW heat maps' default)
ERROR_COLORMAP = "jet"      # as the NoW paper's heat maps
NO_DATA_GREY = 0.55         # vertices without an error (outside the scored region)
PHOTO_JPEG_QUALITY = 88     # the per-photo strips are embedded as JPEG to keep the page small


@dataclass
class MeshView:
    """What the 3D viewer shows. vertices (N, 3) float, y up, +z towards the viewer, any
    unit (``unit`` names it); triangles (F, 3) int, 0-based; colors (N, 3) float in [0, 1]
    (albedo) or None (grey); errors (N,) mm per vertex or None, NaN where unknown."""

    vertices: np.ndarray
    triangles: np.ndarray
    colors: Optional[np.ndarray] = None
    errors: Optional[np.ndarray] = None
    unit: str = "model units"
    error_cap_mm: float = ERROR_CAP_MM

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float32)
        self.triangles = np.asarray(self.triangles, dtype=np.int64)
        count = len(self.vertices)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3 or count == 0:
            raise ValueError(f"mesh vertices must be (N, 3), got {self.vertices.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            raise ValueError(f"mesh triangles must be (F, 3), got {self.triangles.shape}")
        if len(self.triangles) and (self.triangles.min() < 0 or self.triangles.max() >= count):
            raise ValueError(f"mesh triangles index outside the {count} vertices")
        for name, expected in (("colors", (count, 3)), ("errors", (count,))):
            value = getattr(self, name)
            if value is not None and np.shape(value) != expected:
                raise ValueError(f"mesh {name} must be {expected}, got {np.shape(value)}")


@dataclass
class PhotoPanel:
    """One photo's row: ``image`` is PNG/JPEG bytes (e.g. the crop | overlay | landmarks
    strip); ``caption`` a line of text under it."""

    name: str
    image: bytes
    caption: str = ""


def error_colors(errors: np.ndarray, cap_mm: float = ERROR_CAP_MM) -> np.ndarray:
    """(N,) mm -> (N, 3) float32 RGB in [0, 1] on ``ERROR_COLORMAP`` over [0, cap_mm];
    NaN errors are grey."""
    from matplotlib import colormaps

    errors = np.asarray(errors, dtype=np.float64)
    known = np.isfinite(errors)
    colours = np.full((len(errors), 3), NO_DATA_GREY, dtype=np.float32)
    colours[known] = colormaps[ERROR_COLORMAP](np.clip(errors[known] / cap_mm, 0, 1))[:, :3]
    return colours


def _legend_gradient() -> str:
    from matplotlib import colormaps

    stops = [colormaps[ERROR_COLORMAP](t)[:3] for t in np.linspace(0, 1, 9)]
    return ", ".join("rgb({},{},{})".format(*(int(round(255 * c)) for c in rgb)) for rgb in stops)


def _b64(array: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
                            .tobytes()).decode("ascii")


def _data_url(image: bytes) -> str:
    kind = "png" if image[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(image).decode("ascii")


def _script_safe(text: str) -> str:
    """Text that cannot close the <script> element it is inlined in."""
    return text.replace("</", "<\\/")


def _mesh_json(mesh: MeshView) -> str:
    colours = mesh.colors if mesh.colors is not None else np.full(mesh.vertices.shape, 0.75)
    data = {"positions": _b64(mesh.vertices.reshape(-1), np.float32),
            "triangles": _b64(mesh.triangles.reshape(-1), np.uint32),
            "colors": _b64(np.clip(colours, 0, 1).reshape(-1), np.float32), "unit": mesh.unit}
    if mesh.errors is not None:
        data["error_colors"] = _b64(error_colors(mesh.errors, mesh.error_cap_mm).reshape(-1),
                                    np.float32)
    return _script_safe(json.dumps(data))


def _summary_rows(summary: dict) -> str:
    return "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in summary.items())


def _error_block(mesh: MeshView) -> str:
    if mesh.errors is None:
        return ""
    known = np.asarray(mesh.errors, dtype=np.float64)
    known = known[np.isfinite(known)]
    stats = (f"median {np.median(known):.2f} mm, mean {np.mean(known):.2f} mm over "
             f"{known.size} vertices" if known.size else "no vertex in the scored region")
    return (f'<label><input type="checkbox" id="show-error"> error map</label>'
            f'<div id="error-legend" hidden><span>0 mm</span><span class="bar" style="background:'
            f'linear-gradient(to right, {_legend_gradient()})"></span>'
            f'<span>&ge; {mesh.error_cap_mm:g} mm</span> <span class="note">({stats}; grey: '
            f'outside the scored region)</span></div>')


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1100px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table.summary th { text-align: left; padding-right: 1em; font-weight: 600; }
#viewer { width: 100%; height: 480px; border: 1px solid #ccc; position: relative; }
#viewer canvas { display: block; }
.controls label { margin-right: 1.2em; }
#error-legend { display: inline-flex; align-items: center; gap: 0.4em; }
#error-legend[hidden] { display: none; }
#error-legend .bar { display: inline-block; width: 160px; height: 12px; }
.note { color: #666; font-size: 0.9em; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
.failed { color: #a00; }
"""


def render_report(title: str, mesh: MeshView, photos: list[PhotoPanel] = (),
                  loss_curves: Optional[bytes] = None, summary: Optional[dict] = None,
                  failed: Optional[dict[str, str]] = None, notes: str = "") -> str:
    """The whole page as text (see the module docstring); ``failed`` maps a photo name to
    why it was not used; ``notes`` is plain text shown under the title."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if notes:
        parts.append(f"<p class=\"note\">{html.escape(notes)}</p>")
    if summary:
        parts.append(f"<table class=\"summary\">{_summary_rows(summary)}</table>")
    if failed:
        items = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in failed.items())
        parts.append(f"<h2 class=\"failed\">Photos not used ({len(failed)})</h2><ul class=\"failed\">"
                     f"{items}</ul>")
    parts += ["<h2>Subject mesh</h2>",
              '<div class="controls"><label><input type="checkbox" id="show-texture" checked> '
              'texture</label><label><input type="checkbox" id="show-shading" checked> shading'
              '</label><label><input type="checkbox" id="show-wireframe"> wireframe</label>'
              f"{_error_block(mesh)}</div>",
              '<div id="viewer"></div><p id="viewer-status" class="note">Loading the 3D view...</p>']
    if loss_curves:
        parts.append(f'<h2>Loss curves</h2><figure><img alt="loss curves" '
                     f'src="{_data_url(loss_curves)}"></figure>')
    if photos:
        parts.append(f"<h2>Photos ({len(photos)})</h2>")
        for photo in photos:
            caption = html.escape(photo.name + (f": {photo.caption}" if photo.caption else ""))
            parts.append(f'<figure><img alt="{html.escape(photo.name)}" '
                         f'src="{_data_url(photo.image)}"><figcaption>{caption}</figcaption></figure>')
    parts += [f'<script type="application/json" id="mesh-data">{_mesh_json(mesh)}</script>',
              f"<script>{_script_safe(THREE_BUNDLE.read_text(encoding='utf-8'))}</script>",
              f"<script>{_script_safe(VIEWER_SCRIPT.read_text(encoding='utf-8'))}</script>",
              "</body></html>\n"]
    return "\n".join(parts)


def write_report(path: str | Path, title: str, mesh: MeshView, **pieces) -> Path:
    """Write ``render_report(title, mesh, **pieces)`` atomically to ``path``; returns it."""
    from recon.io import write_atomic

    path = Path(path)
    write_atomic(path, render_report(title, mesh, **pieces).encode("utf-8"))
    return path


def jpeg_bytes(image_file: Path) -> bytes:
    """A photo strip re-encoded as JPEG (a third of the PNG's size for the same view)."""
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(image_file) as image:
        image.convert("RGB").save(buffer, format="JPEG", quality=PHOTO_JPEG_QUALITY)
    return buffer.getvalue()


def write_folder_report(out_dir: str | Path, name: str = "subject",
                        errors: Optional[np.ndarray] = None, title: Optional[str] = None,
                        notes: str = "") -> Path:
    """``<out_dir>/report.html`` from a subject run's folder: ``<name>.obj`` (the mesh,
    with albedo colours), ``fit_report.json`` (photos, failures, landmark RMSE, time),
    ``fit_losses.png`` and each photo's ``<stem>.png`` strip. ``errors``: (N,) mm per
    vertex of ``<name>.obj`` (NaN where unknown) when the ground truth is known."""
    from evaluation.meshio import read_mesh

    out_dir = Path(out_dir)
    mesh_file = out_dir / f"{name}.obj"
    if not mesh_file.is_file():
        raise FileNotFoundError(f"{mesh_file}: no subject mesh to show in the report")
    obj = read_mesh(mesh_file)
    report_file = out_dir / "fit_report.json"
    fit = json.loads(report_file.read_text()) if report_file.is_file() else {}
    stems = fit.get("photos", [])
    before = fit.get("landmark_rmse_px_before", [None] * len(stems))
    after = fit.get("landmark_rmse_px_after", [None] * len(stems))
    photos = []
    for stem, rmse0, rmse1 in zip(stems, before, after):
        strip = out_dir / f"{stem}.png"
        if strip.is_file():
            caption = "crop | fitted overlay | overlay with landmarks (blue: alignment points, red: fitted 68)"
            if rmse0 is not None and rmse1 is not None:
                caption += f"; landmark RMSE {rmse0:.2f} -> {rmse1:.2f} px"
            photos.append(PhotoPanel(stem, jpeg_bytes(strip), caption))
    summary = {"photos used": len(stems), "photos not used": len(fit.get("failed", {}))}
    if fit.get("seconds") is not None:
        summary["fitting time"] = f"{fit['seconds']:.1f} s"
    if stems and before and after:
        summary["mean landmark RMSE"] = f"{np.mean(before):.2f} -> {np.mean(after):.2f} px (224 crop)"
    summary["mesh"] = f"{mesh_file.name}: {len(obj.vertices)} vertices, {len(obj.faces)} triangles"
    losses = out_dir / "fit_losses.png"
    mesh = MeshView(obj.vertices, obj.faces, obj.colors, errors,
                    unit="model units (dm)")
    return write_report(out_dir / "report.html", title or f"faceset report: {out_dir.name}", mesh,
                        photos=photos, loss_curves=losses.read_bytes() if losses.is_file() else None,
                        summary=summary, failed=fit.get("failed") or None, notes=notes)


def write_benchmark_report(out_dir: str | Path, comparison, subject_reports: list[Path],
                           failures: dict[str, dict[str, str]], title: str = "faceset benchmark") -> Path:
    """``<out_dir>/report.html``: the comparison table, its figures, the photos each method
    could not use, and links to the subjects' own reports (relative, so the folder can move).

    comparison: an ``evaluation.compare.Comparison``; failures: method -> {photo: reason}.
    """
    from recon.io import write_atomic

    out_dir = Path(out_dir)
    frame = comparison.frame()
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
             f"</title><style>{STYLE} table.results td, table.results th {{ padding: 2px 8px; "
             "text-align: right; } table.results td:first-child { text-align: left; }</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<p class=\"note\">{html.escape(comparison.caption())}</p>",
             frame.drop(columns=["kind"]).to_html(index=False, na_rep="-", float_format="{:.3f}".format,
                                                  classes="results", border=0, escape=True)]
    for name in ["cumulative_errors.png"] + [f"bars_{c}.png" for c in comparison.challenges()]:
        figure = out_dir / "comparison" / name
        if figure.is_file():
            parts.append(f'<figure><img alt="{name}" src="{_data_url(figure.read_bytes())}"></figure>')
    for method, failed in failures.items():
        if failed:
            items = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in failed.items())
            parts.append(f"<h2 class=\"failed\">{html.escape(method)}: {len(failed)} photo(s) without a "
                         f"prediction</h2><ul class=\"failed\">{items}</ul>")
    if subject_reports:
        links = "".join(f'<li><a href="{html.escape(p.relative_to(out_dir).as_posix())}">'
                        f"{html.escape(p.parent.name)}</a></li>" for p in subject_reports)
        parts.append(f"<h2>Subject reports (joint fit, 3D viewer, error map)</h2><ul>{links}</ul>")
    parts.append("</body></html>\n")
    path = out_dir / "report.html"
    write_atomic(path, "\n".join(parts).encode("utf-8"))
    return path

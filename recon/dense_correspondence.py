"""Where mediapipe's 478 face-mesh points lie on a morphable model: the "mediapipe478" set.

The correspondence is data of the model, measured with the model's own renders: the mean
face (mean shape, mean albedo, a few SH lights, a grey background) is rendered by
``recon.render`` in a grid of poses (yaw -40..40, pitch -20..20 degrees) at 448 pixels,
mediapipe runs on each render, and the rasterizer says which surface point lies under each
detected point (the canonical, unposed position interpolated through the covering
triangle's barycentrics, bilinear between pixel centres). Per point, over the views where
it lands on the face, away from occlusion edges and on a surface that faces the camera,
the coordinate-wise median of those canonical points is snapped to the nearest surface
point (triangle + barycentrics); views more than 3 median distances away are outliers
(a detection that slipped over a silhouette onto the surface behind it). Its weight says
how consistent the views were: with RMS scatter s of the inliers around their median and
inlier fraction f, f / (1 + (s / 2 mm)^2); points seen in fewer than 3 views get 0. The face-oval points (``FACEMESH_FACE_OVAL``) are flagged as contour: they
mark the outline, which slides over the surface with the pose, so they are measured in the
near-frontal views only.

Storage: ``mediapipe_landmark_set(face_model)`` returns the set shipped in
``recon/models/data`` when the model matches it (the embedded default model), else the one
cached in ``$FACESET_CACHE`` (default ``~/.cache/faceset``), else builds and caches it (a
few seconds on a CPU; needs mediapipe). Files are keyed by a hash of the vertex count and
the triangles, and hold the model's mean shape (float16) to check that it has not changed.
Rebuild the shipped file with ``python -m recon.dense_correspondence``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree

from .face_model import FaceModel
from .io import write_atomic
from .landmark_set import LandmarkSet
from .render import MeshRenderer
from .render.projection import clip_space, ndc_to_pixel
from .types import Camera, Coeffs

SET_NAME = "mediapipe478"
BUILD_SIZE = 448                  # render side, pixels: the face spans ~200 px, where mediapipe is at ease
FRAMING = 0.75                    # focal relative to the 224 crop's, scaled to the render size
BUILD_YAWS = (-40, -30, -20, -10, 0, 10, 20, 30, 40)      # degrees
BUILD_PITCHES = (-20, -10, 0, 10, 20)                       # degrees
FACING_MIN_COS = 0.5              # a view counts when the surface faces the camera this much (60 deg)
CONTOUR_MAX_YAW = 10.0            # degrees: outline points are measured near frontal only
NEIGHBOUR_MAX_GAP_MM = 4.0        # the 4 pixels around a point further apart: an occlusion edge
SPREAD_SCALE_MM = 2.0             # RMS scatter that halves a point's weight
MIN_VIEWS = 3                     # fewer valid views: weight 0
OUTLIER_MIN_MM = 2.0              # a view closer than this to the median is never an outlier
MM_PER_UNIT = 100.0               # model units are decimetres
SHAPE_TOLERANCE = 2e-3            # dm: mean shapes closer than this (max abs) share a set
BACKGROUND_GREY = 0.4
# SH lights (the 9 coefficients added to every colour channel): ambient plus light from
# above-front, from the left, from the right; the views cycle through them.
LIGHTS = (
    {2: 0.25, 1: -0.15},
    {2: 0.2, 3: 0.2},
    {2: 0.2, 3: -0.2},
)
DATA_DIR = Path(__file__).parent / "models" / "data"


def render_camera(size: int, framing: float = FRAMING) -> Camera:
    """The pinhole of the correspondence renders: the original's camera scaled to ``size``
    pixels, its focal times ``framing`` (the face spans about 45% of the image)."""
    focal = 1015.0 * size / 224.0 * framing
    return Camera(focal_x=focal, focal_y=focal, center_x=size / 2.0, center_y=size / 2.0,
                  width=size, height=size)


def pose_grid(yaws: Sequence[float] = BUILD_YAWS, pitches: Sequence[float] = BUILD_PITCHES) -> np.ndarray:
    """(V, 2) float64 (pitch, yaw) degrees, every combination."""
    return np.array([(p, y) for p in pitches for y in yaws], dtype=np.float64)


def mean_face_coeffs(face_model: FaceModel, poses_deg: np.ndarray, light_offset: int = 0) -> Coeffs:
    """Coefficients of the mean face in the given (V, 2) (pitch, yaw) degree poses, lights cycled."""
    count = len(poses_deg)
    coeffs = Coeffs.zeros(count, face_model.coeff_sizes)
    coeffs.angle[:, :2] = torch.from_numpy(np.radians(poses_deg)).float()
    light = coeffs.gamma.view(count, 3, 9)
    for view in range(count):
        for index, value in LIGHTS[(view + light_offset) % len(LIGHTS)].items():
            light[view, :, index] += value
    return coeffs


def render_mean_face(face_model: FaceModel, poses_deg: np.ndarray, size: int,
                     light_offset: int = 0):
    """Render the mean face in (V, 2) (pitch, yaw) degree poses on a grey background.

    Returns (images (V, size, size, 3) uint8 RGB, RenderOutput, FaceGeometry, camera); the
    images' pixel centres are at integers, as the rasterizer samples them.
    """
    camera = render_camera(size)
    if camera.distance != face_model.camera.distance:
        raise ValueError("the render camera must stand where the model's camera does")
    with torch.no_grad():
        # Camera-space vertices depend on the camera's distance only, shared with the render camera.
        geometry = face_model.compute(mean_face_coeffs(face_model, poses_deg, light_offset))
        renderer = MeshRenderer(camera, backend="torch")
        background = torch.full((len(poses_deg), 3, size, size), BACKGROUND_GREY)
        out = renderer.render(geometry, face_model.triangles, background=background)
    images = (out.image.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    return images, out, geometry, camera


def render_pixels(camera_points: torch.Tensor, camera: Camera) -> torch.Tensor:
    """(B, P, 3) camera-space points -> (B, P, 2) pixels of the render (x, y down, centres at
    integers), through the rasterizer's own projection (not ``Camera.project``, which sits
    half a pixel away, SPEC 12 D2)."""
    clip = clip_space(camera_points, camera)
    ndc = clip[..., :2] / clip[..., 3:4]
    return torch.stack([ndc_to_pixel(ndc[..., 0], camera.width), ndc_to_pixel(ndc[..., 1], camera.height)], -1)


def _bilinear(image: np.ndarray, covered: np.ndarray, xy: np.ndarray):
    """Sample an (H, W, C) image at (P, 2) pixel positions; also whether all 4 neighbours are
    covered and how far apart (max over the 4) their values' first 3 channels are."""
    height, width = covered.shape
    x0 = np.floor(xy[:, 0]).astype(int)
    y0 = np.floor(xy[:, 1]).astype(int)
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < width) & (y0 + 1 < height)
    x0, y0 = np.clip(x0, 0, width - 2), np.clip(y0, 0, height - 2)
    fx, fy = (xy[:, 0] - x0)[:, None], (xy[:, 1] - y0)[:, None]
    corners = [image[y0, x0], image[y0, x0 + 1], image[y0 + 1, x0], image[y0 + 1, x0 + 1]]
    value = (corners[0] * (1 - fx) * (1 - fy) + corners[1] * fx * (1 - fy)
             + corners[2] * (1 - fx) * fy + corners[3] * fx * fy)
    all_covered = inside & covered[y0, x0] & covered[y0, x0 + 1] & covered[y0 + 1, x0] & covered[y0 + 1, x0 + 1]
    stacked = np.stack([c[:, :3] for c in corners])
    gap = np.linalg.norm(stacked - stacked.mean(0), axis=-1).max(0) * 2.0
    return value, all_covered, gap


def measure_views(face_model: FaceModel, poses_deg: np.ndarray, detector, size: int = BUILD_SIZE,
                  progress: bool = True, batch: int = 8):
    """Detect on the mean face's renders and read the surface under every detected point.

    Returns (canonical (V, 478, 3) float64 model units, NaN where not measured; facing
    (V, 478) float64 cosine between the surface normal and the view axis; found (V,) bool).
    """
    from tqdm import tqdm

    from .preprocess.mediapipe_detect import MEDIAPIPE_POINT_COUNT

    views = len(poses_deg)
    canonical = np.full((views, MEDIAPIPE_POINT_COUNT, 3), np.nan)
    facing = np.zeros((views, MEDIAPIPE_POINT_COUNT))
    found = np.zeros(views, dtype=bool)
    starts = range(0, views, batch)
    for start in tqdm(starts, desc="mediapipe on the model's renders", disable=not progress):
        chunk = poses_deg[start:start + batch]
        images, out, geometry, _ = render_mean_face(face_model, chunk, size, light_offset=start)
        attributes = torch.cat([geometry.canonical, geometry.normals], -1)
        with torch.no_grad():
            values = MeshRenderer(render_camera(size), backend="torch").rasterizer(attributes.device) \
                .interpolate(attributes, out.rast, face_model.triangles).numpy().astype(np.float64)
        covered = (out.rast[..., 3] > 0).numpy()
        for k, image in enumerate(images):
            faces = detector.dense_landmarks(image)
            if not faces:
                continue
            found[start + k] = True
            value, ok, gap = _bilinear(values[k], covered[k], faces[0])
            ok &= gap * MM_PER_UNIT < NEIGHBOUR_MAX_GAP_MM
            normal = value[:, 3:] / np.linalg.norm(value[:, 3:], axis=1, keepdims=True).clip(1e-9)
            canonical[start + k, ok] = value[ok, :3]
            facing[start + k] = np.where(ok, normal[:, 2], 0.0)
    return canonical, facing, found


def aggregate_views(canonical: np.ndarray, facing: np.ndarray, poses_deg: np.ndarray,
                    contour: np.ndarray):
    """Median canonical point per landmark over its valid views, and its weight.

    canonical (V, P, 3), facing (V, P) from ``measure_views``; poses_deg (V, 2) (pitch, yaw);
    contour (P,) bool. Returns (points (P, 3) model units, NaN where never valid;
    weights (P,) in [0, 1]; spread (P,) RMS scatter in mm; views (P,) valid view count).
    """
    valid = np.isfinite(canonical[..., 0]) & (facing >= FACING_MIN_COS)
    near_frontal = np.abs(poses_deg[:, 1]) <= CONTOUR_MAX_YAW
    valid &= np.where(contour[None, :], near_frontal[:, None], True)
    count = valid.sum(0)
    points = np.full(canonical.shape[1:], np.nan)
    spread = np.full(canonical.shape[1], np.nan)
    inlier_fraction = np.zeros(canonical.shape[1])
    for index in np.flatnonzero(count):
        points[index], spread[index], inlier_fraction[index] = _robust_centre(canonical[valid[:, index], index])
    weights = np.where(count >= MIN_VIEWS,
                       inlier_fraction / (1.0 + (np.nan_to_num(spread) / SPREAD_SCALE_MM) ** 2), 0.0)
    return points, weights, spread, count


def _robust_centre(seen: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(n, 3) canonical points of one landmark -> (median of the inliers, their RMS distance
    from it in mm, inlier fraction). Outliers (a detection that slipped past a silhouette
    onto the surface behind it) lie beyond 3 median distances (and beyond ``OUTLIER_MIN_MM``)."""
    centre = np.median(seen, axis=0)
    distance = np.linalg.norm(seen - centre, axis=1) * MM_PER_UNIT
    inliers = distance <= max(3.0 * np.median(distance), OUTLIER_MIN_MM)
    centre = np.median(seen[inliers], axis=0)
    distance = np.linalg.norm(seen[inliers] - centre, axis=1) * MM_PER_UNIT
    return centre, float(np.sqrt((distance ** 2).mean())), float(inliers.mean())


def closest_surface_points(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray,
                           point_buf: np.ndarray, candidates: int = 12):
    """Nearest surface point of a triangle mesh to each query point.

    points (P, 3), vertices (N, 3) float, same units; triangles (F, 3) int; point_buf
    (N, K) incident triangles per vertex, padded with F. The search looks at the triangles
    around the ``candidates`` nearest vertices (exact for points near the surface, which
    is the use here). Returns (triangle (P,) int64, barycentrics (P, 3) float64 rows summing
    to 1, distance (P,) float64).
    """
    points = np.asarray(points, dtype=np.float64)
    vertices = np.asarray(vertices, dtype=np.float64)
    _, nearest = cKDTree(vertices).query(points, k=min(candidates, len(vertices)))
    faces = np.asarray(point_buf)[nearest].reshape(len(points), -1)          # (P, C)
    faces = np.where(faces < len(triangles), faces, np.asarray(point_buf)[nearest[:, :1], 0])
    corners = vertices[np.asarray(triangles)[faces]]                        # (P, C, 3, 3)
    bary, distance = _closest_on_triangles(points[:, None, :], corners)
    best = distance.argmin(1)
    rows = np.arange(len(points))
    return faces[rows, best].astype(np.int64), bary[rows, best], distance[rows, best]


def _closest_on_triangles(p: np.ndarray, corners: np.ndarray):
    """Closest points of triangles (..., 3, 3) to p (..., 3): (barycentrics (..., 3), distance (...)).

    The in-plane projection when it falls inside the triangle, else the nearest of the
    three edges' clamped projections."""
    a, b, c = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]
    e0, e1, w = b - a, c - a, p - a
    d00, d01, d11 = (e0 * e0).sum(-1), (e0 * e1).sum(-1), (e1 * e1).sum(-1)
    d20, d21 = (w * e0).sum(-1), (w * e1).sum(-1)
    denominator = np.where(np.abs(d00 * d11 - d01 ** 2) > 1e-30, d00 * d11 - d01 ** 2, 1e-30)
    v = (d11 * d20 - d01 * d21) / denominator
    t = (d00 * d21 - d01 * d20) / denominator
    candidates = [np.stack([1 - v - t, v, t], -1)]
    inside = (v >= 0) & (t >= 0) & (v + t <= 1)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        start, end = corners[..., i, :], corners[..., j, :]
        edge = end - start
        s = ((p - start) * edge).sum(-1) / np.maximum((edge * edge).sum(-1), 1e-30)
        s = np.clip(s, 0.0, 1.0)
        weights = np.zeros(s.shape + (3,))
        weights[..., i], weights[..., j] = 1 - s, s
        candidates.append(weights)
    stacked = np.stack(candidates)                                  # (4, ..., 3)
    located = (stacked[..., None] * corners[None]).sum(-2)          # (4, ..., 3)
    distance = np.linalg.norm(located - p[None], axis=-1)
    distance[0] = np.where(inside, distance[0], np.inf)
    choice = distance.argmin(0)[None]
    return np.take_along_axis(stacked, choice[..., None], 0)[0], np.take_along_axis(distance, choice, 0)[0]


def build_mediapipe_landmark_set(face_model: FaceModel, detector=None, poses_deg: Optional[np.ndarray] = None,
                                 size: int = BUILD_SIZE, progress: bool = True) -> LandmarkSet:
    """Measure the "mediapipe478" set of ``face_model`` from its own renders (module docstring).

    face_model: any FaceModel (CPU); detector: a ``MediaPipeDetector`` (default: a new one);
    poses_deg: (V, 2) (pitch, yaw) degrees, default ``pose_grid()``; size: render side, px.
    """
    from .preprocess.mediapipe_detect import MediaPipeConfig, MediaPipeDetector, face_oval_ids

    poses_deg = pose_grid() if poses_deg is None else np.asarray(poses_deg, dtype=np.float64)
    own = detector is None
    detector = MediaPipeDetector(MediaPipeConfig(max_faces=1)) if own else detector
    try:
        canonical, facing, found = measure_views(face_model, poses_deg, detector, size, progress)
    finally:
        if own:
            detector.close()
    if found.sum() < MIN_VIEWS:
        raise RuntimeError(f"{face_model.name}: mediapipe found the mean face in only {found.sum()} of "
                           f"{len(found)} renders; cannot measure its landmark correspondence")
    contour = np.zeros(canonical.shape[1], dtype=bool)
    contour[face_oval_ids()] = True
    points, weights, _, _ = aggregate_views(canonical, facing, poses_deg, contour)
    mean_shape = face_model.mean_shape.view(-1, 3).cpu().numpy()
    triangles = face_model.triangles.cpu().numpy()
    measured = np.isfinite(points[:, 0])
    # Points never measured sit at the mean shape's centroid (weight 0), snapped like the rest.
    triangle, bary, _ = closest_surface_points(np.where(measured[:, None], points, mean_shape.mean(0)),
                                               mean_shape, triangles, face_model.point_buf.cpu().numpy())
    return LandmarkSet(name=SET_NAME, vertex_ids=torch.from_numpy(triangles[triangle]).long(),
                       barycentrics=torch.from_numpy(bary).float(),
                       weights=torch.from_numpy(np.where(measured, weights, 0.0)).float(),
                       contour=torch.from_numpy(contour))


def reprojection_errors(face_model: FaceModel, landmark_set: LandmarkSet, poses_deg: np.ndarray,
                        detector, size: int = 224) -> np.ndarray:
    """How far mediapipe's points on the mean face's renders lie from the set's surface points.

    poses_deg (V, 2) (pitch, yaw) degrees; size: render side, px. Returns (V, P) float64
    pixel distances, NaN where mediapipe found no face or the set's point is hidden (facing
    away, or behind other surface) in that view.
    """
    images, out, geometry, camera = render_mean_face(face_model, np.asarray(poses_deg, dtype=np.float64), size)
    with torch.no_grad():
        projected = render_pixels(landmark_set.points(geometry.camera), camera).numpy()
        depth = landmark_set.points(geometry.camera)[..., 2].numpy()
        normal = landmark_set.points(geometry.normals).numpy()
    errors = np.full(projected.shape[:2], np.nan)
    for view, image in enumerate(images):
        faces = detector.dense_landmarks(image)
        if not faces:
            continue
        column = np.clip(np.round(projected[view, :, 0]).astype(int), 0, size - 1)
        row = np.clip(np.round(projected[view, :, 1]).astype(int), 0, size - 1)
        surface_depth = out.depth[view, 0].numpy()[row, column]
        visible = (out.mask[view, 0].numpy()[row, column] > 0) & (np.abs(surface_depth - depth[view]) < 0.03)
        visible &= normal[view, :, 2] >= FACING_MIN_COS * np.linalg.norm(normal[view], axis=1)
        distance = np.linalg.norm(faces[0] - projected[view], axis=1)
        errors[view] = np.where(visible, distance, np.nan)
    return errors


# ----------------------------------------------------------------------------- storage

def model_key(face_model: FaceModel) -> str:
    """16 hex digits naming a model's topology: a hash of its vertex count and triangles."""
    digest = hashlib.sha256()
    digest.update(str(face_model.n_vertices).encode())
    digest.update(np.ascontiguousarray(face_model.triangles.cpu().numpy(), dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    """``$FACESET_CACHE``, default ``~/.cache/faceset``."""
    return Path(os.environ.get("FACESET_CACHE") or Path.home() / ".cache" / "faceset")


def save_for_model(landmark_set: LandmarkSet, face_model: FaceModel, path: Path) -> None:
    """Write the set (``LandmarkSet.load`` reads it) with the model's key and mean shape."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, name=np.array(landmark_set.name),
                        vertex_ids=landmark_set.vertex_ids.cpu().numpy(),
                        barycentrics=landmark_set.barycentrics.cpu().numpy(),
                        weights=landmark_set.weights.cpu().numpy(), contour=landmark_set.contour.cpu().numpy(),
                        model_key=np.array(model_key(face_model)), model_name=np.array(face_model.name),
                        mean_shape=face_model.mean_shape.view(-1, 3).cpu().numpy().astype(np.float16))
    write_atomic(path, buffer.getvalue())


def load_for_model(path: Path, face_model: FaceModel) -> Optional[LandmarkSet]:
    """The set in ``path`` if it was made for this model (same key, mean shape within
    ``SHAPE_TOLERANCE``), else None."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if "model_key" not in data or str(data["model_key"]) != model_key(face_model):
            return None
        stored = data["mean_shape"].astype(np.float64)
    current = face_model.mean_shape.view(-1, 3).cpu().numpy()
    if stored.shape != current.shape or np.abs(stored - current).max() > SHAPE_TOLERANCE:
        return None
    return LandmarkSet.load(path)


def shipped_path(face_model: FaceModel) -> Path:
    return DATA_DIR / f"{SET_NAME}-{model_key(face_model)}.npz"


def cached_path(face_model: FaceModel) -> Path:
    return cache_dir() / f"{SET_NAME}-{model_key(face_model)}.npz"


def mediapipe_landmark_set(face_model: FaceModel, progress: bool = True) -> LandmarkSet:
    """The "mediapipe478" set of ``face_model``: shipped, cached, or built and cached."""
    for path in (shipped_path(face_model), cached_path(face_model)):
        found = load_for_model(path, face_model)
        if found is not None:
            return found
    landmark_set = build_mediapipe_landmark_set(face_model, progress=progress)
    save_for_model(landmark_set, face_model, cached_path(face_model))
    return landmark_set


def main(argv: Optional[list[str]] = None) -> None:
    """Rebuild the shipped set of the embedded model (or write a BFM's into the cache)."""
    parser = argparse.ArgumentParser(prog="python -m recon.dense_correspondence", description=main.__doc__)
    parser.add_argument("--bfm", help="BFM folder or BFM_model_front.mat (default: the embedded model)")
    parser.add_argument("--out", type=Path, help="output .npz (default: the shipped file for the "
                                                  "embedded model, the cache for a BFM)")
    args = parser.parse_args(argv)
    from .models import load_model
    face_model = FaceModel(load_model(args.bfm))
    out = args.out or (cached_path(face_model) if args.bfm else shipped_path(face_model))
    landmark_set = build_mediapipe_landmark_set(face_model)
    save_for_model(landmark_set, face_model, out)
    weights = landmark_set.weights
    print(f"{out}: {landmark_set.count} points, {int((weights > 0).sum())} with weight > 0, "
          f"{int((weights > 0.5).sum())} above 0.5, {int(landmark_set.contour.sum())} contour")


if __name__ == "__main__":
    main()

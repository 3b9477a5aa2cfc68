"""Synthetic photo sets with ground truth: the data every fitting measurement uses.

Per subject: an identity and an albedo drawn from the model's prior, plus a smooth random
displacement along the normals (``detail_mm`` RMS over the face) that the model cannot
express, so no fit is exact. Per image: an expression, a pose (yaw up to +-60 degrees,
pitch +-30, roll +-10), coloured SH lighting, a random background, an optional occluder,
a random image size and face scale. Everything comes from one seeded generator, so a
seed gives the same files. This is ``--realism model``: a fit scored on these photos
inverts its own renderer; ``faceset.photoreal`` (``--realism photo``) writes the same
layout with ``.jpg`` photos from shapes, skin, light and cameras outside the model.

Layout written under OUT (``<s>`` a subject, ``<i>`` an image stem ``<s>_<k>``)::

    <s>/images/<i>.png                  the photos (8-bit RGB)
    <s>/images/detections/<i>.txt       5 points, the original's format (y-down pixels)
    <s>/images/landmarks/<i>.txt        the 68 true landmarks (x y per line, y-down pixels)
    <s>/truth/<i>.mat                   true coefficients (+ camera, occluder box)
    <s>/truth/subject.mat               true id, tex and the detail displacement (dm)
    scans/<s>/<s>.obj                   neutral ground-truth mesh in millimetres (NoW layout)
    scans_lmks_onlypp/<s>/<s>_picked_points.pp   its 7 NoW landmarks (MeshLab format)
    synth.json                          the configuration and the list of files
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from faceset.options import SyntheticSet
from recon import constants as C
from recon.constants import NOW_FROM_IBUG68
from recon.face_model import FaceModel, rotation_matrix, shade, vertex_normals
from recon.io import write_atomic, write_coeffs_mat, write_mat, write_obj, write_png
from recon.morphable import MorphableModel
from recon.preprocess.detections import write_detections
from recon.standard_landmarks import five_point_template
from recon.types import Camera, Coeffs, FaceGeometry

SUPERSAMPLE = 2  # render at 2x and area-average: antialiased edges like a camera's


@dataclass
class SynthConfig(SyntheticSet):
    """The set (``SyntheticSet``) and the ranges of the random draws (angles in degrees,
    sizes in pixels, detail in mm)."""

    image_size: tuple[int, int] = (256, 448)      # width and height drawn independently
    face_fraction: tuple[float, float] = (0.35, 0.6)  # face width / shorter image side
    yaw_deg: float = 60.0
    pitch_deg: float = 30.0
    roll_deg: float = 10.0
    id_scale: float = 0.7      # the embedded model's faces turn lumpy towards 1 sigma
    tex_scale: float = 0.7
    exp_scale: float = 0.5
    detail_mm: float = 2.0
    occluder_probability: float = 0.25
    noise_sigma: float = 0.01                     # per-pixel Gaussian noise, [0, 1] units
    model_resolution: Optional[int] = None        # embedded model rows (None = its default)


@dataclass
class SyntheticImage:
    """One generated photo: image (H, W, 3) uint8; landmarks68 / five (K, 2) y-down px;
    coeffs (1, ...) true coefficients; camera; occluder box (x0, y0, x1, y1) or None."""

    stem: str
    image: np.ndarray
    landmarks68: np.ndarray
    five: np.ndarray
    coeffs: Coeffs
    camera: Camera
    occluder: Optional[tuple[int, int, int, int]]


def default_model(resolution: Optional[int] = None) -> MorphableModel:
    """The embedded procedural model (the synthetic sets' ground-truth generator)."""
    from recon.models.procedural import build_embedded_model
    return build_embedded_model() if resolution is None else build_embedded_model(resolution=resolution)


def detail_displacement(face_model: FaceModel, rng: np.random.Generator, rms_mm: float) -> torch.Tensor:
    """A smooth random displacement along the neutral mean-shape normals, (N, 3) in dm.

    A sum of 32 Gaussian bumps (widths 0.1-0.3 dm, random signs) centred on random
    vertices, scaled so its RMS over the skin vertices is ``rms_mm`` millimetres.
    """
    mean = face_model.mean_shape.view(1, -1, 3)
    normals = vertex_normals(mean, face_model.triangles, face_model.point_buf)[0]
    points = mean[0].double().numpy()
    centres = points[rng.integers(0, len(points), 32)]
    widths = rng.uniform(0.1, 0.3, 32)
    heights = rng.normal(size=32)
    dist2 = ((points[:, None] - centres[None]) ** 2).sum(-1)
    field = (heights * np.exp(-dist2 / (2 * widths ** 2))).sum(1)
    skin = face_model.skin_mask.numpy()
    field *= (rms_mm / C.MM_PER_UNIT) / max(np.sqrt((field[skin] ** 2).mean()), 1e-12)
    return torch.tensor(field, dtype=torch.float32)[:, None] * normals


def render_geometry(face_model: FaceModel, coeffs: Coeffs, camera: Camera,
                    displacement: Optional[torch.Tensor] = None) -> FaceGeometry:
    """FaceGeometry of ``coeffs`` with an optional extra canonical displacement (N, 3) dm,
    projected with ``camera`` (landmarks in that camera's y-down pixels)."""
    canonical = face_model.shape(coeffs.id, coeffs.exp)
    if displacement is not None:
        canonical = canonical + displacement
    rotation = rotation_matrix(coeffs.angle)
    world = canonical @ rotation.transpose(1, 2) + coeffs.trans[:, None]
    cam_points = camera.to_camera_space(world)
    normals = vertex_normals(canonical, face_model.triangles, face_model.point_buf) @ rotation.transpose(1, 2)
    albedo = face_model.albedo(coeffs.tex)
    return FaceGeometry(canonical=canonical, world=world, camera=cam_points, normals=normals,
                        albedo=albedo, color=shade(albedo, normals, coeffs.gamma),
                        landmarks=camera.project(cam_points[:, face_model.landmark_ids]))


def random_lighting(rng: np.random.Generator) -> np.ndarray:
    """(27,) coloured SH: a tinted ambient term, a directional first band, weak second band."""
    ambient = rng.uniform(-0.15, 0.25) + rng.normal(0.0, 0.06, 3)
    direction = rng.normal(size=3)
    direction[2] = abs(direction[2]) + 0.5  # mostly from the camera side
    direction /= np.linalg.norm(direction)
    strength = rng.uniform(0.1, 0.35) * rng.uniform(0.85, 1.15, 3)
    gamma = np.zeros((3, 9))
    gamma[:, 0] = ambient
    # band-1 basis is (-y, z, -x) (SPEC 3.10), so irradiance grows with n . direction when
    # the coefficients are (-d_y, d_z, -d_x)
    gamma[:, 1:4] = strength[:, None] * np.array([-direction[1], direction[2], -direction[0]])
    gamma[:, 4:] = rng.normal(0.0, 0.03, (3, 5))
    return gamma.reshape(-1)


def random_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float: a two-colour gradient plus low-frequency blobs."""
    a, b = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    t = np.clip(0.5 + (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)), 0, 1)[..., None]
    image = a * (1 - t) + b * t
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r ** 2))[..., None]
        image = image * (1 - 0.5 * blob) + 0.5 * blob * rng.uniform(0, 1, 3)
    return image


def _random_coeffs(face_model: FaceModel, rng: np.random.Generator, config: SynthConfig,
                   id_c: np.ndarray, tex_c: np.ndarray) -> Coeffs:
    sizes = face_model.coeff_sizes
    angles = np.deg2rad([rng.uniform(-config.pitch_deg, config.pitch_deg),
                         rng.uniform(-config.yaw_deg, config.yaw_deg),
                         rng.uniform(-config.roll_deg, config.roll_deg)])
    values = {"id": id_c, "tex": tex_c, "exp": rng.normal(0, config.exp_scale, sizes["exp"]),
              "angle": angles, "gamma": random_lighting(rng),
              "trans": np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), rng.uniform(-0.3, 0.3)])}
    return Coeffs.from_numpy_dict(values)


def _random_camera(rng: np.random.Generator, config: SynthConfig) -> Camera:
    width, height = (int(rng.integers(config.image_size[0], config.image_size[1] + 1)) for _ in range(2))
    face_px = rng.uniform(*config.face_fraction) * min(width, height)
    focal = face_px * C.CAMERA_DISTANCE / 1.5  # a face is about 1.5 dm wide
    return Camera(focal_x=focal, focal_y=focal, center_x=width / 2 + rng.uniform(-0.1, 0.1) * width,
                  center_y=height / 2 + rng.uniform(-0.1, 0.1) * height, width=width, height=height)


def _add_occluder(rng: np.random.Generator, image: np.ndarray, landmarks: np.ndarray):
    """Paint a textured rectangle over part of the face; returns its box (x0, y0, x1, y1)."""
    height, width = image.shape[:2]
    lo, hi = landmarks.min(0), landmarks.max(0)
    size = (hi - lo) * rng.uniform(0.3, 0.5, 2)
    centre = lo + (hi - lo) * rng.uniform(0.2, 0.8, 2)
    x0, y0 = np.maximum(centre - size / 2, 0).astype(int)
    x1, y1 = np.minimum(centre + size / 2, [width - 1, height - 1]).astype(int)
    yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    stripes = 0.5 + 0.5 * np.sin((xx + yy) * rng.uniform(0.1, 0.5))[..., None]
    image[y0:y1 + 1, x0:x1 + 1] = rng.uniform(0, 1, 3) * (0.6 + 0.4 * stripes)
    return int(x0), int(y0), int(x1), int(y1)


def synthesize_image(face_model: FaceModel, rng: np.random.Generator, config: SynthConfig,
                     id_c: np.ndarray, tex_c: np.ndarray, displacement: torch.Tensor, stem: str,
                     renderer_backend: str = "auto") -> SyntheticImage:
    """Draw one photo of a subject (see the module docstring); landmarks stay inside."""
    from fitting.fit import downsample
    from recon.render import MeshRenderer

    for _ in range(50):
        coeffs = _random_coeffs(face_model, rng, config, id_c, tex_c)
        camera = _random_camera(rng, config)
        geometry = render_geometry(face_model, coeffs, camera, displacement)
        lm = geometry.landmarks[0].numpy()
        inside = (lm > 4).all() and (lm[:, 0] < camera.width - 5).all() and (lm[:, 1] < camera.height - 5).all()
        if inside:
            break
    else:
        raise RuntimeError("could not place the face inside the image in 50 draws")
    with torch.no_grad():
        rendered = MeshRenderer(camera.scaled(SUPERSAMPLE), backend=renderer_backend).render(
            geometry, face_model.triangles)
        size = (camera.height, camera.width)
        face = downsample(rendered.image, size)[0].permute(1, 2, 0).numpy()
        cover = downsample(rendered.mask, size)[0, 0].numpy()[..., None]
    image = face + (1 - cover) * random_background(rng, camera.height, camera.width)
    occluder = _add_occluder(rng, image, lm) if rng.random() < config.occluder_probability else None
    image = image + rng.normal(0, config.noise_sigma, image.shape)
    pixels = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return SyntheticImage(stem=stem, image=pixels, landmarks68=lm.astype(np.float64),
                          five=five_point_template(lm.astype(np.float64)), coeffs=coeffs,
                          camera=camera, occluder=occluder)


def scan_vertices_mm(face_model: FaceModel, id_c: torch.Tensor, displacement: torch.Tensor) -> np.ndarray:
    """The subject's neutral canonical shape plus detail, (N, 3) float64 millimetres."""
    neutral = face_model.shape(id_c, torch.zeros(1, face_model.coeff_sizes["exp"]))[0] + displacement
    return neutral.double().numpy() * C.MM_PER_UNIT


def write_landmarks(path: Path, points: np.ndarray) -> None:
    """68 (or any K) points, ``x y`` per line with full float precision (y-down pixels)."""
    write_atomic(path, "".join(f"{x!r} {y!r}\n" for x, y in points.tolist()).encode())


def write_scan(out: Path, subject: str, vertices_mm: np.ndarray, triangles: np.ndarray,
               landmark_ids: np.ndarray) -> tuple[Path, Path]:
    """The NoW-layout scan OBJ (mm) and its 7-landmark ``.pp``; returns both paths."""
    from evaluation.meshio import NOW_LANDMARK_NAMES, write_pp
    scan = out / "scans" / subject / f"{subject}.obj"
    write_obj(scan, vertices_mm, triangles, header=f"faceset synth ground truth {subject}, mm")
    pp = out / "scans_lmks_onlypp" / subject / f"{subject}_picked_points.pp"
    write_pp(pp, vertices_mm[landmark_ids[list(NOW_FROM_IBUG68)]], list(NOW_LANDMARK_NAMES),
             mesh_name=scan.name)
    return scan, pp


def _write_image(out: Path, subject: str, item: SyntheticImage) -> dict:
    base = out / subject
    photo = base / "images" / f"{item.stem}.png"
    write_png(photo, item.image)
    write_detections(base / "images" / "detections" / f"{item.stem}.txt", item.five)
    write_landmarks(base / "images" / "landmarks" / f"{item.stem}.txt", item.landmarks68)
    cam = item.camera
    extra = {"intrinsics": cam.intrinsics().numpy(), "image_size": np.array([cam.width, cam.height]),
             "occluder": np.array(item.occluder if item.occluder else [-1, -1, -1, -1])}
    write_coeffs_mat(base / "truth" / f"{item.stem}.mat", item.coeffs.to_numpy_dict(), None, extra)
    return {"photo": str(photo.relative_to(out)), "occluded": item.occluder is not None}


def synthesize(out: str | Path, config: SynthConfig, model: Optional[MorphableModel] = None,
               renderer_backend: str = "auto") -> dict:
    """Generate ``config.subjects`` subjects of ``config.images`` photos under ``out``.

    model: the ground-truth morphable model (default: the embedded one). Returns the
    manifest also written to ``out/synth.json``.
    """
    out = Path(out)
    face_model = FaceModel(model or default_model(config.model_resolution))
    rng = np.random.default_rng(config.seed)
    sizes = face_model.coeff_sizes
    manifest = {"config": asdict(config), "model": face_model.name, "subjects": {}}
    for s in range(config.subjects):
        subject = f"subject_{s:03d}"
        id_c = rng.normal(0, config.id_scale, sizes["id"])
        tex_c = rng.normal(0, config.tex_scale, sizes["tex"])
        displacement = detail_displacement(face_model, rng, config.detail_mm)
        images = [_write_image(out, subject, synthesize_image(
            face_model, rng, config, id_c, tex_c, displacement, f"{subject}_{k:02d}", renderer_backend))
            for k in range(config.images)]
        vertices = scan_vertices_mm(face_model, torch.tensor(id_c, dtype=torch.float32)[None], displacement)
        scan, pp = write_scan(out, subject, vertices, face_model.triangles.numpy(),
                              face_model.landmark_ids.numpy())
        truth = {"id": id_c[None], "tex": tex_c[None], "displacement": displacement.numpy()}
        write_mat(out / subject / "truth" / "subject.mat", truth)
        manifest["subjects"][subject] = {"images": images, "scan": str(scan.relative_to(out)),
                                         "landmarks": str(pp.relative_to(out))}
    write_atomic(out / "synth.json", json.dumps(manifest, indent=1).encode())
    return manifest



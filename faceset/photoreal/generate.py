"""``faceset synth --realism photo``: photo sets the fitted model cannot reproduce.

Per subject: a dense surface (the model mesh subdivided once) with an identity that has some
coefficients beyond 2 SD, large smooth deformations the basis cannot express and fine bumps
(``faceset.photoreal.mesh``); a painted skin texture with a base tone from light to dark,
freckles, moles, stubble, brow strokes, lips, eyes (``skin``); per-vertex ambient occlusion;
a head shell with hair behind the face mask. Per photo: an expression, a camera (wide-angle
selfie at 30-60 cm, ordinary, or telephoto at 1.5-3 m), yaw up to 55 degrees, pitch and roll
up to 20, 1-3 coloured lights with shadow maps plus a coloured ambient, Blinn-Phong specular
and wrap-around diffuse (``render``), a cluttered defocused background, sometimes an occluder
(hand, phone, hair strands, glasses), lens blur, vignetting, sensor noise and JPEG
compression. Rendered with its own numpy rasterizer at ``supersample``x and box-filtered.

The output layout is ``faceset.synth``'s with ``.jpg`` photos; see that module's docstring
and ``write_photo`` / ``write_subject`` here for the truth fields.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from evaluation.distance import vertex_normals
from faceset.options import SyntheticSet
from recon import constants as C
from recon.preprocess.photo import EXIF_FOCAL_35MM, EXIF_SUB_IFD, FULL_FRAME_DIAGONAL_MM
from recon.io import write_atomic, write_coeffs_mat, write_mat
from recon.preprocess.detections import write_detections
from recon.standard_landmarks import five_point_template

from .mesh import HAIR, NECK, TORSO, DenseMesh, deformation_fields, draw_deformation, draw_identity, ellipsoid, fine_detail
from .render import Light, ShadowMap, rasterize, shade
from .scene import PinholeCamera, add_occluder, background, draw_camera, draw_lights, draw_pose, rotation
from .skin import Atlas, SkinTexture, paint_skin

DISPLAY_GAMMA = 2.2


@dataclass
class PhotoConfig(SyntheticSet):
    """The set (``SyntheticSet``) and the ranges of the random draws (angles in degrees,
    sizes in pixels, lengths in mm)."""

    image_size: tuple[int, int] = (256, 448)   # width and height drawn independently
    yaw_deg: float = 55.0
    pitch_deg: float = 20.0
    roll_deg: float = 20.0
    id_scale: float = 0.7
    beyond_2sd: int = 3            # identity coefficients pushed to 2.1-2.8 SD per subject
    tex_scale: float = 0.7
    exp_scale: float = 0.35        # expression SD per photo ("moderate")
    deformation_scale: float = 1.0  # multiplies the out-of-basis deformations' amplitudes
    detail_mm: float = 2.0         # RMS of the fine random bumps
    occluder_probability: float = 0.3
    male_probability: float = 0.5  # male-ish subjects may get stubble
    noise_sigma: float = 0.02      # upper end of the per-photo sensor noise, [0, 1] units
    jpeg_quality: tuple[int, int] = (60, 95)
    exif_probability: float = 0.75  # photos whose EXIF keeps the focal length (phones write it)
    supersample: int = 2
    texture_size: int = 512
    model_resolution: Optional[int] = None
    realism: str = field(default="photo", init=False)

    def validate(self) -> "PhotoConfig":
        """Raise one ValueError that names every bad option."""
        problems = []
        for name in ("subjects", "images", "supersample"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("occluder_probability", "male_probability", "exif_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be a probability in [0, 1] (got {value})")
        for name in ("yaw_deg", "pitch_deg", "roll_deg", "id_scale", "tex_scale", "exp_scale",
                     "deformation_scale", "detail_mm", "noise_sigma", "beyond_2sd"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be non-negative (got {getattr(self, name)})")
        lo, hi = self.image_size
        if not 32 <= lo <= hi:
            problems.append(f"image_size must be (min, max) with 32 <= min <= max (got {self.image_size})")
        q_lo, q_hi = self.jpeg_quality
        if not 1 <= q_lo <= q_hi <= 100:
            problems.append(f"jpeg_quality must be (min, max) within 1..100 (got {self.jpeg_quality})")
        if self.texture_size < 64:
            problems.append(f"texture_size must be >= 64 (got {self.texture_size})")
        if problems:
            raise ValueError("photo synth config: " + "; ".join(problems))
        return self


@dataclass
class Subject:
    """One person: coefficients, the neutral dense surface (V, 3) dm, texture, per-vertex
    ambient occlusion (V,), hair colour (display RGB), deformation amplitudes (mm)."""

    name: str
    id_coeffs: np.ndarray
    tex_coeffs: np.ndarray
    neutral: np.ndarray
    texture: SkinTexture
    occlusion: np.ndarray
    hair: np.ndarray
    male: bool
    amplitudes: dict


@dataclass
class Photo:
    """One photo: jpeg bytes, landmarks68 (68, 2) y-down px, camera, angles (3,) rad,
    trans (3,) dm, exp (n_exp,), occluder kind (or None) and box."""

    stem: str
    jpeg: bytes
    landmarks68: np.ndarray
    camera: PinholeCamera
    angles: np.ndarray
    trans: np.ndarray
    exp: np.ndarray
    occluder: Optional[str]
    occluder_box: tuple[int, int, int, int]
    lights: list
    ambient: np.ndarray


class PhotoGenerator:
    """Holds the model, its dense mesh, the UV atlas and the head shell; draws subjects and
    photos from a caller's generator."""

    def __init__(self, face_model, config: PhotoConfig):
        self.model = face_model
        self.config = config.validate()
        self.mesh = DenseMesh.of(face_model)
        self.fields = deformation_fields(self.mesh)
        self.atlas = Atlas.of(self.mesh, config.texture_size)
        self.shell, self.shell_triangles = ellipsoid(*HAIR)
        self.neck = ellipsoid(*NECK, 16, 24)
        self.torso = ellipsoid(*TORSO, 20, 48, power=0.6)
        self.mean = face_model.mean_shape.view(-1, 3).double().numpy()
        self.id_basis = face_model.id_basis.double().numpy()
        self.exp_basis = face_model.exp_basis.double().numpy()

    # ----------------------------------------------------------------------- subjects
    def subject(self, rng: np.random.Generator, name: str) -> Subject:
        cfg, sizes = self.config, self.model.coeff_sizes
        id_c = draw_identity(rng, sizes["id"], cfg.id_scale, cfg.beyond_2sd)
        tex_c = rng.normal(0, cfg.tex_scale, sizes["tex"])
        model_shape = self.mean + (self.id_basis @ id_c).reshape(-1, 3)
        deformation, amplitudes = draw_deformation(rng, self.fields, cfg.deformation_scale)
        neutral = self.mesh.lift(model_shape) + deformation + fine_detail(self.mesh, rng, cfg.detail_mm)
        male = bool(rng.random() < cfg.male_probability)
        texture = paint_skin(self.atlas, self.mesh, rng, male and rng.random() < 0.6)
        occlusion = self.ambient_occlusion(neutral)
        return Subject(name, id_c, tex_c, neutral, texture, occlusion, texture.hair, male, amplitudes)

    def ambient_occlusion(self, vertices: np.ndarray, directions: int = 24, size: int = 160) -> np.ndarray:
        """(V,) hemisphere visibility of each dense vertex (face + head shell as occluders):
        the cosine-weighted fraction of ``directions`` spread over the sphere from which
        the vertex is not shadowed (one small shadow map per direction)."""
        points = np.concatenate([vertices, self.shell])
        triangles = np.concatenate([self.mesh.triangles, self.shell_triangles + len(vertices)])
        normals = vertex_normals(vertices, self.mesh.triangles)
        k = np.arange(directions) + 0.5
        polar = np.arccos(1 - 2 * k / directions)
        azimuth = np.pi * (1 + 5 ** 0.5) * k
        dirs = np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], 1)
        seen = np.zeros(len(vertices))
        weight = np.zeros(len(vertices))
        for d in dirs:
            cos = np.clip(normals @ d, 0, None)
            active = cos > 0
            if not active.any():
                continue
            shadow = ShadowMap.build(points, triangles, d, size)
            bias = 2.5 / shadow.scale
            seen[active] += cos[active] * shadow.lit(vertices[active], bias, soft=0)
            weight[active] += cos[active]
        return np.clip(seen / np.maximum(weight, 1e-9), 0, 1)

    # ----------------------------------------------------------------------- photos
    def pose_face(self, subject: Subject, exp: np.ndarray, angles: np.ndarray, trans: np.ndarray):
        """World dense vertices (V, 3) dm of the subject with expression and pose."""
        canonical = subject.neutral + self.mesh.lift((self.exp_basis @ exp).reshape(-1, 3))
        return canonical @ rotation(angles).T + trans

    def photo(self, rng: np.random.Generator, subject: Subject, stem: str) -> Photo:
        cfg = self.config
        for _ in range(50):
            camera = draw_camera(rng, cfg.image_size)
            angles, trans = draw_pose(rng, cfg.yaw_deg, cfg.pitch_deg, cfg.roll_deg, camera)
            exp = rng.normal(0, cfg.exp_scale, self.model.coeff_sizes["exp"])
            world = self.pose_face(subject, exp, angles, trans)
            landmarks, _ = camera.project(world[self.mesh.landmark_ids])
            if ((landmarks > 4).all() and (landmarks[:, 0] < camera.width - 5).all()
                    and (landmarks[:, 1] < camera.height - 5).all()):
                break
        else:
            raise RuntimeError("photo synth: could not place the face inside the image in 50 draws")
        lights, ambient = draw_lights(rng)
        face, cover, skin_tone = self.render_face(rng, subject, world, angles, trans, camera, lights, ambient)
        blur_bg = {"selfie": (1.0, 4.0), "ordinary": (2.0, 6.0), "telephoto": (4.0, 10.0)}[camera.kind]
        bg = background(rng, camera.width, camera.height, rng.uniform(*blur_bg) * camera.width / 400)
        image = face + (1 - cover[..., None]) * bg
        occluder, box = None, (-1, -1, -1, -1)
        if rng.random() < cfg.occluder_probability:
            occluder, box = add_occluder(rng, image, landmarks, skin_tone)
        focal_35mm = round(camera.focal * FULL_FRAME_DIAGONAL_MM / np.hypot(camera.width, camera.height))
        # Its own generator (seeded by the photo's name): the photo's other draws stay as they were.
        keeps_exif = np.random.default_rng(zlib.crc32(stem.encode())).random() < cfg.exif_probability
        jpeg = self.finish(rng, image, focal_35mm if keeps_exif else None)
        return Photo(stem, jpeg, landmarks, camera, angles, trans, exp, occluder, box, lights, ambient)

    def render_face(self, rng, subject: Subject, world, angles, trans, camera: PinholeCamera,
                    lights: list[Light], ambient: np.ndarray):
        """Premultiplied face colour (H, W, 3) display RGB, coverage (H, W), skin tone."""
        ss = self.config.supersample
        head = rotation(angles)
        shoulders = rotation(np.array([0.0, 0.3 * angles[1], 0.0]))
        clothing = rng.uniform(0.05, 0.8) * (1 + rng.uniform(-0.4, 0.4, 3))
        # (vertices, triangles, kind: 1 textured face, 0 hair, -1 a plain colour, colour, AO)
        parts = [(world, self.mesh.triangles, 1.0, np.zeros(3), subject.occlusion),
                 (self.shell @ head.T + trans, self.shell_triangles, 0.0, subject.hair, 0.8),
                 (self.neck[0] @ head.T + trans, self.neck[1], -1.0, subject.texture.tone * 0.9, 0.75),
                 (self.torso[0] @ shoulders.T + trans, self.torso[1], -1.0, clothing, 0.9)]
        points, triangles, normals, attrs, offset = [], [], [], [], 0
        for vertices, tris, kind, colour, ao in parts:
            points.append(vertices)
            triangles.append(tris + offset)
            normals.append(vertex_normals(vertices, tris))
            uv = self.mesh.uv if kind > 0 else np.zeros((len(vertices), 2))
            attrs.append(np.column_stack([uv, np.full(len(vertices), kind), np.tile(colour, (len(vertices), 1)),
                                          np.broadcast_to(ao, (len(vertices),))]))
            offset += len(vertices)
        points, triangles, normals = np.concatenate(points), np.concatenate(triangles), np.concatenate(normals)
        attrs = np.concatenate(attrs)
        big = camera.scaled(ss)
        xy, depth = big.project(points)
        raster = rasterize(xy, depth, triangles, big.width, big.height, cull_back=True)
        attributes = np.concatenate([points, normals, attrs], 1)
        pixels, values = raster.gather(attributes, triangles)
        pos, nrm, tex_uv, kind, plain, occ = (values[:, :3], values[:, 3:6], values[:, 6:8],
                                               values[:, 8], values[:, 9:12], values[:, 12])
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        colour, spec = subject.texture.sample(tex_uv)
        face_w = (kind > 0.5).astype(float)
        # hair: strands as a fine stripe pattern across the shell
        strands = (1 + 0.2 * np.sin(pos[:, 0] * 700 + 4 * np.sin(pos[:, 1] * 40)))[:, None]
        plain = np.where((np.abs(kind) < 0.5)[:, None], plain * strands, plain)
        albedo = np.where(face_w[:, None] > 0.5, colour, plain) ** DISPLAY_GAMMA
        spec = np.where(face_w > 0.5, spec * rng.uniform(0.015, 0.05), np.where(np.abs(kind) < 0.5, 0.02, 0.005))
        eye = np.array([0.0, 0.0, camera.distance])
        view = eye - pos
        view /= np.linalg.norm(view, axis=1, keepdims=True)
        visibility = []
        for light in lights:
            if light.casts_shadow:
                shadow = ShadowMap.build(points, triangles, light.direction, 512)
                visibility.append(shadow.lit(pos + 0.002 * nrm, 2.0 / shadow.scale, soft=1))
            else:
                visibility.append(np.ones(len(pos)))
        radiance = shade(pos, nrm, view, albedo, spec, lights, ambient, occ, visibility,
                         wrap=rng.uniform(0.1, 0.4), shininess=rng.uniform(20, 45))
        on_face = face_w > 0.5
        luminance = radiance[on_face] @ np.array([0.3, 0.59, 0.11]) if on_face.any() else np.ones(1)
        exposure = rng.uniform(0.15, 0.3) / max(float(np.median(luminance)), 1e-6)
        display = tone_map(radiance * exposure)
        image = np.zeros((big.height * big.width, 3))
        image[pixels] = display
        mask = raster.mask.astype(np.float64)
        image = image.reshape(camera.height, ss, camera.width, ss, 3).mean((1, 3))
        cover = mask.reshape(camera.height, ss, camera.width, ss).mean((1, 3))
        skin_tone = np.median(colour[on_face], 0) if on_face.any() else np.array([0.7, 0.5, 0.4])
        return image, cover, skin_tone

    def finish(self, rng: np.random.Generator, image: np.ndarray, focal_35mm: Optional[int]) -> bytes:
        """Lens blur, vignetting, sensor noise, 8-bit quantisation and JPEG compression;
        EXIF FocalLengthIn35mmFilm (whole millimetres, as cameras write it) when given."""
        height, width = image.shape[:2]
        image = gaussian_filter(image, (rng.uniform(0.0, 0.8),) * 2 + (0,))
        yy, xx = np.mgrid[0:height, 0:width]
        r2 = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / (0.25 * (width ** 2 + height ** 2))
        image = image * (1 - rng.uniform(0.0, 0.3) * r2)[..., None]
        sigma = rng.uniform(0.1, 1.0) * self.config.noise_sigma
        noise = rng.normal(0, 1, image.shape) * sigma * np.sqrt(np.clip(image, 0.02, 1))
        noise += gaussian_filter(rng.normal(0, 1, image.shape), (1.0, 1.0, 0)) * sigma  # chroma blotches
        pixels = np.clip(np.round((image + noise) * 255), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        quality = int(rng.integers(self.config.jpeg_quality[0], self.config.jpeg_quality[1] + 1))
        exif = Image.Exif()
        if focal_35mm is not None:
            exif.get_ifd(EXIF_SUB_IFD)[EXIF_FOCAL_35MM] = int(focal_35mm)
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, exif=exif)
        return buffer.getvalue()


def tone_map(linear: np.ndarray) -> np.ndarray:
    """Linear radiance -> display RGB in [0, 1]: a soft shoulder, then the display gamma."""
    x = np.clip(linear, 0, None)
    return np.clip(x * 1.15 / (1 + 0.15 * x), 0, 1) ** (1 / DISPLAY_GAMMA)


# --------------------------------------------------------------------------- writers

def write_photo(out: Path, subject: Subject, photo: Photo) -> dict:
    """The photo (.jpg), its 5 detections, its 68 landmarks and its truth ``.mat``:
    id, exp, tex, angle, trans (the fitted model's convention, camera at (0, 0, 10 dm));
    gamma all zeros (the photos are not SH-lit; the lights are stored instead);
    intrinsics (3, 3), image_size (w, h), yaw_deg, occluded (0/1), occluder (box or -1s),
    camera_distance_mm (camera to the head's origin), focal_px, camera_kind, lights."""
    from faceset.synth import write_landmarks
    base = out / subject.name
    path = base / "images" / f"{photo.stem}.jpg"
    write_atomic(path, photo.jpeg)
    write_detections(base / "images" / "detections" / f"{photo.stem}.txt", five_point_template(photo.landmarks68))
    write_landmarks(base / "images" / "landmarks" / f"{photo.stem}.txt", photo.landmarks68)
    cam = photo.camera
    coeffs = {"id": subject.id_coeffs, "exp": photo.exp, "tex": subject.tex_coeffs, "angle": photo.angles,
              "gamma": np.zeros(C.GAMMA_DIM), "trans": photo.trans}
    extra = {"intrinsics": cam.intrinsics(), "image_size": np.array([cam.width, cam.height]),
             "yaw_deg": float(np.rad2deg(photo.angles[1])), "occluded": int(photo.occluder is not None),
             "occluder": np.array(photo.occluder_box), "occluder_kind": photo.occluder or "",
             "camera_distance_mm": float(cam.head_distance * C.MM_PER_UNIT), "focal_px": float(cam.focal),
             "camera_kind": cam.kind,
             "light_directions": np.array([light.direction for light in photo.lights]),
             "light_colours": np.array([light.colour for light in photo.lights]),
             "ambient": photo.ambient}
    write_coeffs_mat(base / "truth" / f"{photo.stem}.mat", coeffs, None, extra)
    return {"photo": str(path.relative_to(out)), "occluded": photo.occluder is not None,
            "occluder": photo.occluder, "camera": cam.kind,
            "yaw_deg": round(float(np.rad2deg(photo.angles[1])), 1)}


def write_subject(out: Path, generator: PhotoGenerator, subject: Subject) -> dict:
    """subject.mat (id, tex, model_vertices_mm, deformation amplitudes) and the NoW scan."""
    from faceset.synth import write_scan
    neutral_mm = subject.neutral * C.MM_PER_UNIT
    mesh = generator.mesh
    write_mat(out / subject.name / "truth" / "subject.mat", {
        "id": subject.id_coeffs[None], "tex": subject.tex_coeffs[None],
        "model_vertices_mm": neutral_mm[:mesh.n_model],
        "deformation_names": list(subject.amplitudes),
        "deformation_mm": np.array(list(subject.amplitudes.values())),
        "male": int(subject.male)})
    scan, pp = write_scan(out, subject.name, neutral_mm, mesh.triangles, mesh.landmark_ids)
    return {"scan": str(scan.relative_to(out)), "landmarks": str(pp.relative_to(out))}


def synthesize_photos(out: str | Path, config: PhotoConfig, model=None) -> dict:
    """Generate ``config.subjects`` x ``config.images`` out-of-model photos under ``out``.

    model: the fitted model whose mesh and bases seed the shapes (default: the embedded
    one). Returns the manifest also written to ``out/synth.json``.
    """
    from faceset.synth import default_model
    from recon.face_model import FaceModel
    config.validate()
    out = Path(out)
    face_model = FaceModel(model or default_model(config.model_resolution))
    generator = PhotoGenerator(face_model, config)
    rng = np.random.default_rng(config.seed)
    manifest = {"config": {**asdict(config), "realism": "photo"}, "model": face_model.name,
                "dense_vertices": generator.mesh.n_vertices, "subjects": {}}
    with tqdm(total=config.subjects * config.images, desc="photo synth", unit="photo") as bar:
        for s in range(config.subjects):
            subject = generator.subject(rng, f"subject_{s:03d}")
            images = []
            for k in range(config.images):
                images.append(write_photo(out, subject, generator.photo(rng, subject, f"{subject.name}_{k:02d}")))
                bar.update()
            manifest["subjects"][subject.name] = {"images": images, **write_subject(out, generator, subject)}
    write_atomic(out / "synth.json", json.dumps(manifest, indent=1).encode())
    return manifest

"""The per-image ``reconstruct`` job: photos in, the original's outputs (and more) out.

For every ``*.jpg|*.jpeg|*.png`` of a folder: 5 alignment points (``detections/<stem>.txt``
when present, else from ``landmarks/<stem>.txt``, else the detector: mediapipe by default,
dlib where mediapipe finds no face), the 224 crop, 68 landmarks (``landmarks/<stem>.txt``
when present, else the detector's, else dlib's predictor in the 5 points' box; skipped when
an R-Net makes them unused), mediapipe's 478 dense points when it ran,
coefficients (an R-Net: ``--checkpoint``, else the shipped one that fits the face model
(``recon.weights``), unless ``init`` says "landmarks"; else the landmark initialiser +
least-squares lighting; ``choose_rnet``), then per image:

- ``<stem>.obj``  posed world-space mesh with clipped lit vertex colours (SPEC 8)
- ``<stem>.mat``  id, exp, tex, angle, gamma, trans (float32 (1, K)) and lm68 (crop, y-down)
- ``<stem>.png``  aligned input | render overlay | landmarks (224 x 672)
- ``<stem>_canonical.obj``  unposed, neutral-expression shape with albedo colours
- ``<stem>_canonical_lmk7.npy``  its 7 NoW landmarks (7, 3), model units: with the
  canonical mesh, a drop-in NoW prediction
- ``<stem>_transform.json`` the crop <-> photo transform

Photos are read as viewers show them (``recon.preprocess.photo.load_photo``: EXIF
orientation applied, 16-bit / gray / CMYK / palette / alpha converted, very large photos
downscaled), each conversion noted in the summary; detection and landmark files are in the
file's stored pixels, and ``<stem>_transform.json`` maps the crop back to them
(``crop_to_stored``) as well as to the upright working image (``crop_to_photo``).

A photo that fails is reported at the end and the rest are done; a re-run skips photos
whose outputs all exist unless ``overwrite``. Ctrl-C stops after removing the unfinished
photo's files (``faceset.errors.Interrupted``), so a re-run does the rest. Under torchrun
each process takes its share of the photos (``this_process_share``) and its local GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from faceset.options import DETECTORS, ReconstructOptions, check_init
from recon import constants as C
from recon.crop_camera import crop_intrinsics, with_intrinsics
from recon.face_model import FaceModel
from recon.models import load_face_model
from recon.io import write_coeffs_mat, write_npy, write_obj, write_png
from recon.landmark_fit import LandmarkFitConfig, estimate_lighting, fit_landmarks, refit_pose_expression
from recon.landmark_set import LandmarkSet
from recon.preprocess.align import PHOTO_SUFFIXES, CropTransform, align_face
from recon.preprocess.detect import five_points_from_68
from recon.preprocess.photo import focal_from_35mm, load_photo
from recon.preprocess.detections import (detection_path_for, landmark_file_for, read_detections,
                                        read_landmark_file)
from recon.render import MeshRenderer, RenderOutput
from recon.types import Coeffs, FaceGeometry

OUTPUT_SUFFIXES = (".obj", ".mat", "_canonical.obj", "_canonical_lmk7.npy", "_transform.json", ".png")
DETECTION_COLOR = (0, 0, 255)     # the original draws the input 5 points in blue
LANDMARK_COLOR = (255, 0, 0)      # and the predicted 68 in red


@dataclass
class PreparedPhoto:
    """A photo aligned to the 224 crop. Landmarks are y-down crop pixels."""

    path: Path
    crop: np.ndarray                       # (224, 224, 3) uint8 RGB
    transform: CropTransform
    five_points: np.ndarray                # (5, 2) the alignment points
    landmarks68: Optional[np.ndarray]      # (68, 2) from landmarks/<stem>.txt or the detector
    source: str                            # where the 5 points came from
    notes: list[str] = field(default_factory=list)  # conversions, the face chosen
    landmarks_dense: Optional[np.ndarray] = None   # (478, 2) mediapipe's, when it ran
    intrinsics: Optional[np.ndarray] = None        # (3,) the photo's camera in the crop, from EXIF

    @property
    def stem(self) -> str:
        return self.path.stem

    def crop_tensor(self) -> torch.Tensor:
        """(3, 224, 224) float RGB in [0, 1]."""
        return torch.from_numpy(np.array(self.crop)).permute(2, 0, 1).float() / 255.0


@dataclass
class RunReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    rnet: str = ""      # the R-Net that gave the coefficients ("": the landmark initialiser)

    def summary(self) -> str:
        lines = [f"{len(self.done)} reconstructed, {len(self.skipped)} already done, "
                 f"{len(self.failed)} failed"]
        if self.rnet:
            lines.append(f"  coefficients from {self.rnet}")
        lines += [f"  note: {name}: {note}" for name, notes in self.notes.items() for note in notes]
        lines += [f"  failed: {name}: {reason}" for name, reason in self.failed.items()]
        return "\n".join(lines)


def resolve_device(name: str) -> torch.device:
    """cpu / cuda / auto; under torchrun a plain "cuda" means this process's local GPU."""
    from recon.training.distributed import resolve_device as resolve
    return resolve(name, int(os.environ.get("LOCAL_RANK", 0)))


def this_process_share(photos: list[Path]) -> list[Path]:
    """The photos this process handles: all of them, or every WORLD_SIZE-th one from RANK
    when launched by torchrun (``torchrun --nproc-per-node N -m faceset reconstruct ...``).
    The photos are independent and write separate files, so the ranks need no communication."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return photos[rank::world]


def discover_photos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such photo folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def require_photos(folder: Path) -> list[Path]:
    """``discover_photos``, refusing a folder without any photo."""
    photos = discover_photos(Path(folder))
    if not photos:
        raise ValueError(f"{folder}: no photos in this folder (looked for "
                         f"{', '.join('*' + s for s in PHOTO_SUFFIXES)})")
    return photos


def check_points_inside(points: np.ndarray, size: tuple[int, int], what: str) -> None:
    """Refuse alignment points outside the (w, h) image: they would give a crop of
    zero fill with an invented face. points: (K, 2) y-down pixels of that image."""
    width, height = size
    outside = ~((points[:, 0] >= -0.5) & (points[:, 0] <= width - 0.5)
                & (points[:, 1] >= -0.5) & (points[:, 1] <= height - 0.5))
    if outside.any():
        x, y = points[np.argmax(outside)]
        raise ValueError(f"{what}: {int(outside.sum())} of {len(points)} points lie outside "
                         f"the {width}x{height} photo (e.g. {x:.1f}, {y:.1f})")


def output_paths(out_dir: Path, stem: str) -> list[Path]:
    return [out_dir / f"{stem}{suffix}" for suffix in OUTPUT_SUFFIXES]


class PhotoPreparer:
    """Detection / landmark files or a detector -> aligned crop and 68 landmarks.

    Models load on first need; see the module docstring for which source wins.
    need_landmarks68: predict the 68 landmarks from the 5 points when no file or detector
    gave them (dlib's predictor); off, such photos keep ``landmarks68 = None``.
    """

    def __init__(self, face_index: int = 0, detector: str = "mediapipe", device: str = "cpu",
                 need_landmarks68: bool = True):
        if detector not in DETECTORS:
            raise ValueError(f"unknown face detector {detector!r}: choose one of {', '.join(DETECTORS)}")
        self.face_index = face_index
        self.detector_name = detector
        self.device = device
        self.need_landmarks68 = need_landmarks68
        self._detector = None
        self._face_detector = None
        self.faces_found = 0  # faces the detector found in the last photo it ran on

    @property
    def detector(self):
        if self._detector is None:
            from recon.preprocess.detect import LandmarkDetector
            self._detector = LandmarkDetector()
        return self._detector

    @property
    def face_detector(self):
        """dlib's detector, or mediapipe's / insightface's when asked for (imported only then)."""
        if self.detector_name == "dlib":
            return self.detector
        if self._face_detector is None:
            if self.detector_name == "mediapipe":
                from recon.preprocess.mediapipe_detect import MediaPipeDetector
                self._face_detector = MediaPipeDetector()
            else:
                from recon.preprocess.insightface_detect import InsightFaceConfig, InsightFaceDetector
                self._face_detector = InsightFaceDetector(InsightFaceConfig(device=self.device))
        return self._face_detector

    def prepare(self, path: Path) -> PreparedPhoto:
        photo = load_photo(path)
        image, notes = photo.image, list(photo.notes)
        landmark_file = landmark_file_for(path)
        landmarks68 = (photo.stored_to_working(read_landmark_file(landmark_file))
                       if landmark_file.is_file() else None)
        detection_file = detection_path_for(path)
        dense = None
        if detection_file.is_file():
            five, source = photo.stored_to_working(read_detections(detection_file)), "detections file"
            check_points_inside(five, image.size, str(detection_file))
        elif landmarks68 is not None:
            five, source = five_points_from_68(landmarks68), "landmark file"
            check_points_inside(five, image.size, f"{landmark_file} (its 5 alignment points)")
        else:
            self.faces_found = 0
            face, source = self._detect(image, path, detection_file)
            five, landmarks68, dense = face.five_points, face.landmarks68, face.landmarks_dense
            if self.faces_found > 1:
                notes.append(f"{self.faces_found} faces found, face {self.face_index} used "
                             "(0 = the largest; --face N picks another)")
        if landmarks68 is None and self.need_landmarks68:
            landmarks68 = self.detector.landmarks68_from_five(image, five)
        aligned = align_face(image, five)
        to_crop = aligned.transform.to_crop
        # the 35 mm equivalent scales the diagonal, which rotation and downscaling keep in proportion
        focal = None if photo.focal_35mm is None else focal_from_35mm(photo.focal_35mm, *image.size)
        return PreparedPhoto(path=path, crop=aligned.image,
                             transform=aligned.transform.with_stored(photo.working_to_stored),
                             five_points=aligned.landmarks,
                             landmarks68=None if landmarks68 is None else to_crop(landmarks68),
                             source=source, notes=notes, landmarks_dense=None if dense is None else to_crop(dense),
                             intrinsics=None if focal is None else crop_intrinsics(aligned.transform, focal))

    def _detect(self, image, path: Path, detection_file: Path):
        """The asked-for face and where it came from; mediapipe falls back to dlib when it
        finds too few faces (small faces in large photos, which its short-range detector misses)."""
        faces, source = self.face_detector.detect_faces(image), self.detector_name
        if len(faces) <= self.face_index and self.detector_name == "mediapipe":
            faces, source = self.detector.detect_faces(image), "dlib (fallback)"
        self.faces_found = len(faces)
        if len(faces) <= self.face_index:
            raise ValueError(f"{path}: {len(faces)} face(s) found ({source}), face {self.face_index} asked "
                             f"for (and no {detection_file.name} in {detection_file.parent})")
        return faces[self.face_index], source


@dataclass(frozen=True)
class RNetChoice:
    """The R-Net that gives a job's initial coefficients: checkpoint file, backbone, where it
    came from (for the summary), and whether its pose and expression are re-fitted to the
    photos' landmarks (a shipped R-Net whose sidecar says its pose is coarse)."""

    path: Path
    arch: str
    source: str
    refit_pose: bool = False


def choose_rnet(options: ReconstructOptions, face_model: FaceModel) -> Optional[RNetChoice]:
    """The R-Net of ``options.init`` for ``face_model``, or None for the landmark initialiser.

    "auto": ``options.checkpoint`` when given, else the shipped R-Net that fits the face
    model (``recon.weights``) unless its sidecar keeps it out of the default start, else
    None; "rnet": the checkpoint or the shipped R-Net, or ValueError saying why there is
    none; "landmarks": None (a ``checkpoint`` beside it is refused).
    """
    check_init(options)
    if options.init == "landmarks":
        return None
    if options.checkpoint is not None:
        return RNetChoice(Path(options.checkpoint), options.arch, f"R-Net {options.checkpoint}")
    from recon.weights import find_shipped_rnet
    shipped, why_not = find_shipped_rnet(face_model)
    if shipped is not None and (shipped.auto or options.init == "rnet"):
        return RNetChoice(shipped.path, shipped.arch, shipped.describe(), shipped.refit_pose)
    if options.init == "rnet":
        raise ValueError(f"--init rnet needs an R-Net: no --checkpoint was given and no shipped "
                         f"R-Net fits the face model {face_model.name} ({why_not})")
    return None


class Reconstructor:
    """Coefficients, geometry and renders for batches of prepared photos.

    rnet: the R-Net of the initial coefficients (``choose_rnet``), None for the landmark
    initialiser; init_source: one line saying which of the two runs; refit_rnet_pose: the
    R-Net's pose and expression are re-fitted to the photos' landmarks (``RNetChoice``);
    uses_landmarks: the start reads the photos' landmarks (the initialiser, or an R-Net whose
    pose is re-fitted), so the photos need them."""

    def __init__(self, options: ReconstructOptions):
        self.options = options
        self.device = resolve_device(options.device)
        self.face_model = load_face_model(options.bfm, self.device)
        self.rnet = None
        self._dense_set: Optional[LandmarkSet] = None
        choice = choose_rnet(options, self.face_model)
        self.init_source = "the landmark initialiser" if choice is None else choice.source
        self.refit_rnet_pose = choice is not None and choice.refit_pose
        # the landmark initialiser fits the landmarks, a refitted R-Net pose too
        self.uses_landmarks = choice is None or choice.refit_pose
        if choice is not None:
            from recon.rnet import load_checkpoint
            self.rnet = load_checkpoint(choice.path, choice.arch,
                                        sizes=self.face_model.coeff_sizes).to(self.device)
        self.renderer = MeshRenderer(self.face_model.camera, backend=options.renderer_backend)

    @torch.no_grad()
    def features(self, photos: list[PreparedPhoto]) -> torch.Tensor:
        """(M, C) the R-Net's pooled backbone features of the photos' crops (what a C-Net
        reads); ValueError when the job runs without an R-Net."""
        if self.rnet is None:
            raise ValueError("the C-Net reads R-Net features, but this job starts from the landmark "
                             "initialiser: give the R-Net the C-Net was trained with (--checkpoint)")
        images = torch.stack([p.crop_tensor() for p in photos]).to(self.device)
        return self.rnet.features(images)

    def landmarks(self, photos: list[PreparedPhoto]) -> tuple[torch.Tensor, Optional[LandmarkSet]]:
        """The photos' landmark targets: (M, P, 2) y-down crop pixels and where the P points
        lie on the model. mediapipe's 478 points (the model's ``mediapipe478`` set) when
        every photo has them and ``options.landmarks`` is "auto"; else the 68 iBUG points
        (set None: the model's landmark vertices, the original's term)."""
        if self.options.landmarks == "auto" and all(p.landmarks_dense is not None for p in photos):
            if self._dense_set is None:
                from recon.dense_correspondence import mediapipe_landmark_set
                self._dense_set = mediapipe_landmark_set(self.face_model).to(self.device)
            points, landmark_set = [p.landmarks_dense for p in photos], self._dense_set
        else:
            missing = [p.path.name for p in photos if p.landmarks68 is None]
            if missing:
                raise ValueError(f"no 68 landmarks for {', '.join(missing)}")
            points, landmark_set = [p.landmarks68 for p in photos], None
        return torch.tensor(np.stack(points), dtype=torch.float32, device=self.device), landmark_set

    def intrinsics(self, photos: list[PreparedPhoto]) -> Optional[torch.Tensor]:
        """(M, 3) each photo's camera in its crop (``recon.crop_camera``): from EXIF where the
        photo has it, the face model's camera for the others; None when no photo has one
        (or ``options.exif_focal`` is off)."""
        if not self.options.exif_focal or all(p.intrinsics is None for p in photos):
            return None
        camera = self.face_model.camera
        rows = [p.intrinsics if p.intrinsics is not None else (camera.focal_x, camera.center_x, camera.center_y)
                for p in photos]
        return torch.tensor(np.array(rows), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def coefficients(self, photos: list[PreparedPhoto]) -> Coeffs:
        """(M, ...) start coefficients of the photos: the R-Net's (with its pose and expression
        re-fitted to the landmarks when ``refit_rnet_pose``), else the landmark initialiser's
        with least-squares lighting."""
        images = torch.stack([p.crop_tensor() for p in photos]).to(self.device)
        if self.rnet is not None and not self.refit_rnet_pose:
            return self.rnet.predict(images)
        landmarks, landmark_set = self.landmarks(photos)
        if self.rnet is not None:
            return refit_pose_expression(self.face_model, self.rnet.predict(images), landmarks,
                                         landmark_set=landmark_set, intrinsics=self.intrinsics(photos))
        config = LandmarkFitConfig(slide_contour=self.options.slide_contour)
        coeffs = fit_landmarks(self.face_model, landmarks, config, landmark_set=landmark_set,
                               intrinsics=self.intrinsics(photos))
        return coeffs.replace(gamma=estimate_lighting(self.face_model, coeffs, images))

    def geometry(self, coeffs: Coeffs, photos: list[PreparedPhoto]) -> FaceGeometry:
        """The photos' FaceGeometry, seen through each photo's own camera (``intrinsics``)."""
        geometry = self.face_model.compute(coeffs)
        return with_intrinsics(geometry, self.face_model.camera, self.face_model.landmark_ids,
                               self.intrinsics(photos))

    @torch.no_grad()
    def render(self, geometry: FaceGeometry) -> RenderOutput:
        return self.renderer.render(geometry, self.face_model.triangles)

    @torch.no_grad()
    def reconstruct(self, coeffs: Coeffs, photos: list[PreparedPhoto]) -> list[Reconstruction]:
        """Per photo: geometry (through its camera), the canonical face and the render of
        ``coeffs`` (M, ...) of ``photos`` (M)."""
        geometry = self.geometry(coeffs, photos)
        return per_photo(photos, coeffs, geometry, self.face_model.compute(coeffs.neutral()),
                         self.render(geometry))


def panel_image(photo: PreparedPhoto, rendered: torch.Tensor, mask: torch.Tensor,
                landmarks: np.ndarray) -> np.ndarray:
    """The original's 224 x 672 visualisation: input | overlay | overlay + landmarks.

    rendered (3, H, W) and mask (1, H, W) float; landmarks (68, 2) y-down crop pixels.
    """
    source = photo.crop_tensor()
    overlay = rendered.cpu() * mask.cpu() + source * (1 - mask.cpu())
    panels = [source, overlay, overlay.clone()]
    marked = panels[2]
    draw_points(marked, photo.five_points, DETECTION_COLOR)
    draw_points(marked, landmarks, LANDMARK_COLOR)
    strip = torch.cat(panels, dim=2).clamp(0, 1)
    return (strip.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def draw_points(image: torch.Tensor, points: np.ndarray, color: tuple[int, int, int]) -> None:
    """Paint 4 x 4 blocks centred at (x, y) y-down pixel points into (3, H, W) in place."""
    height, width = image.shape[1:]
    value = torch.tensor(color, dtype=image.dtype)[:, None, None] / 255.0
    for x, y in np.round(points).astype(int):
        top, left = max(y - 2, 0), max(x - 2, 0)
        if top < height and left < width and y + 2 > 0 and x + 2 > 0:
            image[:, top:y + 2, left:x + 2] = value


@dataclass
class Reconstruction:
    """One photo's reconstruction (every tensor batch-of-one).

    photo: the aligned crop, its transform back to the photo and its landmarks;
    coeffs (1, ...): the coefficients; geometry: FaceGeometry seen through the photo's camera;
    canonical: FaceGeometry of ``coeffs.neutral()`` (unposed, neutral expression);
    render: RenderOutput of ``geometry`` (mask, lit image, depth) in the crop;
    outputs: the files written for it (``write_photo_outputs``), empty before.
    """

    photo: PreparedPhoto
    coeffs: Coeffs
    geometry: FaceGeometry
    canonical: FaceGeometry
    render: RenderOutput
    outputs: list[Path] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return self.photo.stem


def per_photo(photos: list[PreparedPhoto], coeffs: Coeffs, geometry: FaceGeometry,
              canonical: FaceGeometry, render: RenderOutput) -> list[Reconstruction]:
    """The batch results of M photos (each (M, ...)) as M Reconstructions."""
    return [Reconstruction(photo, coeffs[i], geometry[i], canonical[i], render[i])
            for i, photo in enumerate(photos)]


def write_photo_outputs(out_dir: Path, reconstruction: Reconstruction, face_model: FaceModel) -> None:
    """All files of one photo (``OUTPUT_SUFFIXES``); the PNG last, as the completion mark.

    Any failure or Ctrl-C while writing removes this photo's files again: a photo's outputs
    exist completely or not at all, and a re-run redoes it. Fills ``reconstruction.outputs``.
    """
    try:
        _write_photo_files(out_dir, reconstruction, face_model)
    except BaseException:
        remove_outputs(out_dir, reconstruction.stem)
        raise
    reconstruction.outputs = output_paths(out_dir, reconstruction.stem)


def remove_outputs(out_dir: Path, stem: str) -> None:
    """Delete whichever of a photo's output files exist."""
    for path in output_paths(out_dir, stem):
        path.unlink(missing_ok=True)


def _write_photo_files(out_dir: Path, reconstruction: Reconstruction, face_model: FaceModel) -> None:
    photo, geometry, canonical, render = (reconstruction.photo, reconstruction.geometry,
                                          reconstruction.canonical, reconstruction.render)
    stem = photo.stem
    triangles = face_model.triangles.cpu().numpy()
    world = geometry.world[0].cpu().numpy()
    write_obj(out_dir / f"{stem}.obj", world, triangles, geometry.color[0].cpu().numpy(),
              header=f"faceset reconstruction of {photo.path.name}, posed world space")
    landmarks = geometry.landmarks[0].cpu().numpy()
    write_coeffs_mat(out_dir / f"{stem}.mat", reconstruction.coeffs.to_numpy_dict(), landmarks)
    write_obj(out_dir / f"{stem}_canonical.obj", canonical.canonical[0].cpu().numpy(), triangles,
              canonical.albedo[0].cpu().numpy(),
              uvs=None if face_model.uvs is None else face_model.uvs.cpu().numpy(),
              header="canonical (unposed, neutral expression), albedo colours")
    lmk7 = canonical.canonical[0, face_model.landmark_ids[list(C.NOW_FROM_IBUG68)]]
    write_npy(out_dir / f"{stem}_canonical_lmk7.npy", lmk7.cpu().numpy())
    photo.transform.save(out_dir / f"{stem}_transform.json")
    strip = panel_image(photo, render.image[0], render.mask[0], landmarks)
    write_png(out_dir / f"{stem}.png", strip)


def reconstruct_folder(photo_dir: Path, out_dir: Path, options: ReconstructOptions,
                       show_progress: bool = True) -> RunReport:
    """Run the per-image job over a folder; see the module docstring.

    Raises ``faceset.errors.Interrupted`` (done / total counts) on Ctrl-C.
    """
    photos = this_process_share(require_photos(photo_dir))
    report = RunReport()
    todo = []
    for path in photos:
        if not options.overwrite and all(p.exists() for p in output_paths(out_dir, path.stem)):
            report.skipped.append(path.name)
        else:
            todo.append(path)
    if not todo:
        return report
    out_dir.mkdir(parents=True, exist_ok=True)
    reconstructor = Reconstructor(options)
    report.rnet = "" if reconstructor.rnet is None else reconstructor.init_source
    # An R-Net whose pose is kept uses no landmarks: do not load dlib's predictor for them.
    preparer = PhotoPreparer(options.face_index, options.detector, str(reconstructor.device),
                             need_landmarks68=reconstructor.uses_landmarks)
    progress = tqdm(total=len(todo), desc="reconstruct", unit="photo", disable=not show_progress)
    try:
        for start in range(0, len(todo), options.batch_size):
            _prepare_and_reconstruct(todo[start:start + options.batch_size], preparer,
                                     reconstructor, out_dir, report, progress)
    except KeyboardInterrupt:
        from faceset.errors import Interrupted
        progress.close()
        raise Interrupted(len(report.done) + len(report.skipped), len(photos), "photos") from None
    progress.close()
    return report


def _prepare_and_reconstruct(paths: list[Path], preparer: PhotoPreparer, reconstructor: Reconstructor,
                             out_dir: Path, report: RunReport, progress) -> None:
    prepared = []
    for path in paths:
        try:
            photo = preparer.prepare(path)
            prepared.append(photo)
            if photo.notes:
                report.notes[path.name] = photo.notes
        except (ValueError, OSError) as err:
            report.failed[path.name] = str(err)
            progress.update(1)
    if prepared:
        _reconstruct_batch(reconstructor, prepared, out_dir, report)
        progress.update(len(prepared))


def _reconstruct_batch(reconstructor: Reconstructor, prepared: list[PreparedPhoto],
                       out_dir: Path, report: RunReport) -> None:
    try:
        reconstructions = reconstructor.reconstruct(reconstructor.coefficients(prepared), prepared)
    except (ValueError, RuntimeError) as err:
        for photo in prepared:
            report.failed[photo.path.name] = str(err)
        return
    for reconstruction in reconstructions:
        name = reconstruction.photo.path.name
        try:
            write_photo_outputs(out_dir, reconstruction, reconstructor.face_model)
            report.done.append(name)
        except OSError as err:
            report.failed[name] = f"cannot write outputs ({err})"

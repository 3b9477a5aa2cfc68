"""The options of the per-image job, of the fit jobs, of ``faceset benchmark`` and what the
synthetic-set generators share, free of torch so that the CLI takes its defaults from them
before torch loads (``recon.threads`` must run first: OpenMP reads its wait policy when
torch loads). ``faceset.pipeline``, ``faceset.subject``, ``faceset.benchmark``,
``faceset.synth`` and ``faceset.photoreal`` use them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

from recon.constants import RENDERER_BACKENDS, RNET_ARCHITECTURES

DETECTORS = ("mediapipe", "dlib", "insightface")
IDENTITY_ENCODERS = ("none", "dlib", "arcface")
AGGREGATE_METHODS = ("mean", "confidence", "cnet")  # aggregation.AGGREGATION_METHODS (torch-free copy)
LANDMARK_CHOICES = ("auto", "68")
# Where the initial coefficients come from: auto (the R-Net of --checkpoint, else the shipped
# one that fits the face model, else the landmark initialiser), rnet (an R-Net or an error),
# landmarks (the landmark initialiser, no network).
INIT_CHOICES = ("auto", "rnet", "landmarks")
ARCHITECTURES = RNET_ARCHITECTURES


@dataclass
class ReconstructOptions:
    """How photos are reconstructed (``faceset reconstruct``; the model part of the fit jobs).

    renderer_backend: the rasterizer, one of ``RENDERER_BACKENDS`` (``recon.render``'s
    ``backend``); landmarks: "auto" (mediapipe's 478 points where every photo has them,
    else the 68) or "68"; init: one of ``INIT_CHOICES`` (``faceset.pipeline.choose_rnet``);
    slide_contour: the initialiser's jaw-line points slide along the
    silhouette; exif_focal: each photo's camera from its EXIF focal length where present.
    """

    checkpoint: Optional[Path] = None   # the original's epoch_20.pth; None: see init
    bfm: Optional[Path] = None          # BFM folder or BFM_model_front.mat; None: embedded
    device: str = "auto"
    batch_size: int = 8
    overwrite: bool = False
    renderer_backend: str = "auto"
    arch: str = "resnet50"
    face_index: int = 0                 # with several faces: 0 = the largest, 1 = next...
    detector: str = "mediapipe"         # or "dlib", or "insightface" (optional extra, downloads models)
    landmarks: str = "auto"
    slide_contour: bool = False
    exif_focal: bool = True
    init: str = "auto"                  # INIT_CHOICES


def check_init(options: ReconstructOptions) -> None:
    """Refuse an ``init`` that is not one of INIT_CHOICES, or "landmarks" beside a checkpoint."""
    if options.init not in INIT_CHOICES:
        raise ValueError(f"--init must be one of {', '.join(INIT_CHOICES)}, got {options.init!r}")
    if options.init == "landmarks" and options.checkpoint is not None:
        raise ValueError(f"--init landmarks uses no R-Net, but --checkpoint {options.checkpoint} "
                         "was given: drop one of them")


@dataclass
class FitFlags:
    """What the user chooses of the analysis-by-synthesis fit (``faceset fit``, ``faceset
    reconstruct --subject``), one field per CLI flag.

    iters: total fitting steps over the pyramid levels (None: the fit's default schedule);
    identity: one of ``IDENTITY_ENCODERS`` (not "none": adds the SPEC 5 identity-feature
    term); arcface: the ArcFace backbone.pth (None: $FACESET_ARCFACE); no_silhouette /
    no_contrast: drop the outline / log-contrast terms; lpips: LPIPS (render over photo vs
    photo) before / after in the fit report; aggregate: how the identity is fused
    (``AGGREGATE_METHODS``); cnet: the C-Net (name or file) of "cnet", which reads the job's
    R-Net features.
    """

    iters: Optional[int] = None
    identity: str = "none"
    arcface: Optional[Path] = None
    no_silhouette: bool = False
    no_contrast: bool = False
    lpips: bool = False
    aggregate: str = "confidence"
    cnet: Optional[str] = None

    def given(self) -> list[str]:
        """The flags set to something other than their default, as typed on the command line."""
        default = FitFlags()
        return ["--" + f.name.replace("_", "-") for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)]


@dataclass
class SyntheticSet:
    """What every synthetic-set generator takes first (``faceset synth``'s options,
    ``faceset.synth.SynthConfig``, ``faceset.photoreal.generate.PhotoConfig``): subjects
    people with images photos each, all drawn from one seed."""

    subjects: int = 3
    images: int = 8
    seed: int = 0


# ``faceset benchmark``: its methods, and what --quick runs (a tiny set, a short fit).
METHODS = ("mean-face", "landmarks", "rnet", "fit", "subject", "aggregate-mean",
           "aggregate-confidence")
QUICK_SUBJECTS, QUICK_PHOTOS, QUICK_ITERATIONS = 2, 3, 12


@dataclass
class BenchmarkOptions:
    """device, renderer backend, R-Net checkpoint and BFM folder (as ``reconstruct``);
    iterations: fitting steps (None: the default schedule); subjects / photos: keep only
    the first N of each (None: all)."""

    device: str = "auto"
    renderer_backend: str = "auto"
    checkpoint: Optional[Path] = None
    bfm: Optional[Path] = None
    iterations: Optional[int] = None
    subjects: Optional[int] = None
    photos: Optional[int] = None
    show_progress: bool = True

"""Analysis-by-synthesis fitting: per image, and jointly per subject (shared id / albedo)."""

from .config import GROUPS, FitConfig
from .fit import FitResult, FitTargets, fit_images, fit_subject, scaled_camera

__all__ = ["GROUPS", "FitConfig", "FitResult", "FitTargets", "fit_images", "fit_subject",
           "scaled_camera"]

"""Analysis-by-synthesis fitting: per image, and jointly per subject (shared id / albedo)."""

from .config import FitConfig
from .fit import FitResult, FitTargets, fit_images, fit_subject

__all__ = ["FitConfig", "FitResult", "FitTargets", "fit_images", "fit_subject"]

"""One entry point for every fusion rule: ``"mean"`` and ``"confidence"``
(``aggregation.identity``) and ``"cnet"`` (``aggregation.cnet``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch

from recon.landmark_set import LandmarkSet
from recon.types import Coeffs

from .cnet import ConfidenceNet, cnet_aggregate
from .identity import AggregatedIdentity, AggregationConfig, aggregate_identity

AGGREGATION_METHODS = ("mean", "confidence", "cnet")


def aggregate(method: str, face_model, coeffs: Coeffs, *,
              target_landmarks: Optional[torch.Tensor] = None,
              features: Optional[torch.Tensor] = None, cnet: Optional[ConfidenceNet] = None,
              valid: Optional[torch.Tensor] = None,
              config: AggregationConfig = AggregationConfig(),
              landmark_set: Optional[LandmarkSet] = None) -> AggregatedIdentity:
    """Fuse the identity and albedo of M photos of one person with ``method``.

    coeffs: (M, ...) per-photo coefficients; target_landmarks: (M, P, 2) y-down crop pixels
    of ``landmark_set``'s points (default: the model's 68 iBUG vertices) for ``"confidence"``
    (without them each photo's own projected landmarks stand in, so its quality factor is 1
    and only the landmark information weights the coefficients); features (M, C) and cnet:
    for ``"cnet"``; valid: optional (M,) bool.
    """
    if method not in AGGREGATION_METHODS:
        raise ValueError(f"aggregation method must be one of {AGGREGATION_METHODS}, got {method!r}")
    if method == "cnet":
        if cnet is None or features is None:
            raise ValueError("cnet aggregation needs a C-Net and the photos' R-Net features")
        return cnet_aggregate(cnet, features, coeffs, valid)
    if method == "confidence" and target_landmarks is None:
        if landmark_set is not None:
            raise ValueError("confidence aggregation on a landmark set needs its target landmarks")
        with torch.no_grad():
            target_landmarks = face_model.compute(coeffs, with_color=False).landmarks
    return aggregate_identity(face_model, coeffs, target_landmarks, replace(config, method=method), valid,
                              landmark_set=landmark_set)

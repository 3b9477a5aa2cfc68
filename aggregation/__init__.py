"""Fuse one identity across the images of a person (SPEC 9): mean or confidence-weighted."""

from .identity import (AggregatedIdentity, AggregationConfig, aggregate_identity,
                       landmark_information, neutral_coeffs, weighted_mean)

__all__ = ["AggregatedIdentity", "AggregationConfig", "aggregate_identity",
           "landmark_information", "neutral_coeffs", "weighted_mean"]

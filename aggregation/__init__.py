"""Fuse one identity across the images of a person (SPEC 9): mean, confidence-weighted, or a
learnt C-Net (``aggregation.cnet``); ``aggregate(method, ...)`` runs any of them."""

from .identity import (AggregatedIdentity, AggregationConfig, aggregate_identity,
                       landmark_information, neutral_coeffs, weighted_mean)
from .cnet import CNetConfig, ConfidenceNet, cnet_aggregate, load_cnet, save_cnet
from .methods import AGGREGATION_METHODS, aggregate

__all__ = ["AGGREGATION_METHODS", "AggregatedIdentity", "AggregationConfig", "CNetConfig",
           "ConfidenceNet", "aggregate", "aggregate_identity", "cnet_aggregate",
           "landmark_information", "load_cnet", "neutral_coeffs", "save_cnet", "weighted_mean"]

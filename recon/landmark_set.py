"""Landmark sets: which surface points of a morphable model a detector's points mark.

A detector gives P image points in its own order (dlib's 68 iBUG points, mediapipe's 478
face-mesh points); a ``LandmarkSet`` says, for one morphable model, where each of them lies
on the model's surface (a triangle's three vertex ids and barycentric weights), how much to
trust it (``weights``) and whether it is a contour point (on the face's outline: at yaw it
slides along the silhouette rather than marking a fixed surface point). Fitting, the
landmark initialiser and aggregation take a LandmarkSet, so they never know which detector
ran. The set is data of the model: the iBUG 68 set comes from the model's landmark vertex
ids, the mediapipe set is computed by the toolkit for any model it loads.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .io import write_atomic

IBUG68_CONTOUR = slice(0, 17)   # the 17 jaw-line points of the iBUG 68 order


@dataclass(frozen=True)
class LandmarkSet:
    """P landmark points on a model's surface.

    name: the detector's point set ("ibug68", "mediapipe478", ...);
    vertex_ids: (P, 3) long, the vertices of the triangle each point lies in;
    barycentrics: (P, 3) float, weights of those vertices (rows sum to 1);
    weights: (P,) float >= 0, the point's weight in a landmark term (0: unused);
    contour: (P,) bool, points on the face's outline (they slide along the silhouette).
    """

    name: str
    vertex_ids: torch.Tensor
    barycentrics: torch.Tensor
    weights: torch.Tensor
    contour: torch.Tensor

    def __post_init__(self) -> None:
        count = self.vertex_ids.shape[0]
        shapes = {"vertex_ids": (self.vertex_ids, (count, 3)), "barycentrics": (self.barycentrics, (count, 3)),
                  "weights": (self.weights, (count,)), "contour": (self.contour, (count,))}
        for field_name, (value, shape) in shapes.items():
            if tuple(value.shape) != shape:
                raise ValueError(f"LandmarkSet {self.name}: {field_name} must be {shape}, got {tuple(value.shape)}")
        if not torch.allclose(self.barycentrics.sum(1), torch.ones(count, dtype=self.barycentrics.dtype), atol=1e-4):
            raise ValueError(f"LandmarkSet {self.name}: barycentric rows must sum to 1")
        if (self.weights < 0).any() or not torch.isfinite(self.weights).all():
            raise ValueError(f"LandmarkSet {self.name}: weights must be finite and >= 0")

    @property
    def count(self) -> int:
        return self.vertex_ids.shape[0]

    @classmethod
    def from_vertices(cls, name: str, vertex_ids: torch.Tensor, weights: torch.Tensor | None = None,
                      contour: torch.Tensor | None = None) -> "LandmarkSet":
        """Points that sit exactly on vertices (P,) (barycentrics (1, 0, 0))."""
        ids = torch.as_tensor(vertex_ids, dtype=torch.long)
        count = ids.shape[0]
        barycentrics = torch.zeros(count, 3)
        barycentrics[:, 0] = 1.0
        return cls(name=name, vertex_ids=ids[:, None].repeat(1, 3), barycentrics=barycentrics,
                   weights=torch.ones(count) if weights is None else torch.as_tensor(weights, dtype=torch.float32),
                   contour=torch.zeros(count, dtype=torch.bool) if contour is None
                   else torch.as_tensor(contour, dtype=torch.bool))

    @classmethod
    def ibug68(cls, landmark_ids: torch.Tensor, contour_weight: float = 1.0) -> "LandmarkSet":
        """The model's 68 landmark vertices (iBUG 300-W order); the 17 jaw points are contour."""
        contour = torch.zeros(68, dtype=torch.bool)
        contour[IBUG68_CONTOUR] = True
        weights = torch.ones(68)
        weights[IBUG68_CONTOUR] = contour_weight
        return cls.from_vertices("ibug68", landmark_ids.cpu(), weights, contour)

    def points(self, vertices: torch.Tensor) -> torch.Tensor:
        """Surface points of a batch of meshes: vertices (B, N, 3) -> (B, P, 3), same units."""
        ids = self.vertex_ids.to(vertices.device)
        corners = vertices[:, ids.reshape(-1)].view(vertices.shape[0], self.count, 3, vertices.shape[-1])
        return (corners * self.barycentrics.to(vertices)[None, :, :, None]).sum(2)

    def to(self, device) -> "LandmarkSet":
        return LandmarkSet(self.name, self.vertex_ids.to(device), self.barycentrics.to(device),
                           self.weights.to(device), self.contour.to(device))

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` (atomically) that ``load`` reads back exactly."""
        buffer = io.BytesIO()
        np.savez(buffer, name=np.array(self.name), vertex_ids=self.vertex_ids.cpu().numpy(),
                 barycentrics=self.barycentrics.cpu().numpy(), weights=self.weights.cpu().numpy(),
                 contour=self.contour.cpu().numpy())
        write_atomic(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "LandmarkSet":
        """Read a set written by ``save``; one error naming the file if it is not one."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                return cls(name=str(data["name"]), vertex_ids=torch.from_numpy(data["vertex_ids"]).long(),
                           barycentrics=torch.from_numpy(data["barycentrics"]).float(),
                           weights=torch.from_numpy(data["weights"]).float(),
                           contour=torch.from_numpy(data["contour"]).bool())
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path}: not a landmark set file ({err})") from err

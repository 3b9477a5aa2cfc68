"""`MorphableModel`: the fields every face model provides (BFM09 or the embedded one)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import torch


@dataclass
class MorphableModel:
    """A linear 3D morphable face model. Knows nothing about images.

    All index arrays are **0-based** int64; all float arrays float32. N vertices, F triangles.

    mean_shape (N, 3): mean shape in model units (dm), not recentred (the face model
        recentres, as the original does at load);
    id_basis (3N, K_id), exp_basis (3N, K_exp): columns already scaled by their standard
        deviations, rows xyz-interleaved per vertex (row 3v+k is coordinate k of vertex v);
    mean_albedo (N, 3), tex_basis (3N, K_tex): albedo in 0-255 units, as BFM09;
    triangles (F, 3): counter-clockwise seen from the front (outward normals via
        (v1 - v2) x (v2 - v3) as the original computes them);
    landmark_ids (68,): vertex of each iBUG 300-W landmark;
    point_buf (N, 8): up to 8 incident triangles per vertex, padded with F (which points
        at an extra zero normal);
    front_vertex_ids (Nf,): the "small face" region of the photometric loss;
    front_triangles (Ff, 3): triangles of that region, indexing the full vertex array;
    skin_mask (N,) bool: vertices of the albedo-flatness loss;
    uvs (N, 2) or None: texture coordinates in [0, 1], v up.
    """

    name: str
    mean_shape: torch.Tensor
    id_basis: torch.Tensor
    exp_basis: torch.Tensor
    mean_albedo: torch.Tensor
    tex_basis: torch.Tensor
    triangles: torch.Tensor
    landmark_ids: torch.Tensor
    point_buf: torch.Tensor
    front_vertex_ids: torch.Tensor
    front_triangles: torch.Tensor
    skin_mask: torch.Tensor
    uvs: Optional[torch.Tensor] = None

    @property
    def n_vertices(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def n_triangles(self) -> int:
        return self.triangles.shape[0]

    @property
    def coeff_sizes(self) -> dict[str, int]:
        from .types import Coeffs
        return Coeffs.sizes_for(self.id_basis.shape[1], self.exp_basis.shape[1],
                                self.tex_basis.shape[1])

    def to(self, device: torch.device | str) -> "MorphableModel":
        return replace(self, **{f.name: getattr(self, f.name).to(device)
                                for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)})

    def validate(self) -> "MorphableModel":
        """Check shapes and index ranges; raises ValueError naming the first bad field."""
        n, f = self.n_vertices, self.n_triangles
        expect = {
            "mean_shape": (n, 3), "mean_albedo": (n, 3), "triangles": (f, 3),
            "landmark_ids": (68,), "point_buf": (n, 8), "skin_mask": (n,),
        }
        for name, shape in expect.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{self.name}: {name} has shape {tuple(getattr(self, name).shape)}, "
                                 f"expected {shape}")
        for name in ("id_basis", "exp_basis", "tex_basis"):
            if getattr(self, name).shape[0] != 3 * n:
                raise ValueError(f"{self.name}: {name} must have {3 * n} rows")
        checks = [("triangles", self.triangles, n), ("landmark_ids", self.landmark_ids, n),
                  ("point_buf", self.point_buf, f + 1), ("front_vertex_ids", self.front_vertex_ids, n),
                  ("front_triangles", self.front_triangles, n)]
        for name, idx, bound in checks:
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= bound):
                raise ValueError(f"{self.name}: {name} indices outside [0, {bound})")
        if self.uvs is not None and tuple(self.uvs.shape) != (n, 2):
            raise ValueError(f"{self.name}: uvs must be ({n}, 2)")
        return self


def incident_triangles(triangles: torch.Tensor, n_vertices: int, width: int = 8) -> torch.Tensor:
    """(N, width) incident-triangle table padded with F, like the original's point_buf.

    Vertices with more than ``width`` incident triangles keep the first ``width`` (the
    original's table has valence <= 8 by construction).
    """
    f = triangles.shape[0]
    vert = triangles.reshape(-1)
    tri = torch.arange(f).repeat_interleave(3)
    order = torch.argsort(vert, stable=True)
    vert, tri = vert[order], tri[order]
    counts = torch.bincount(vert, minlength=n_vertices)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(vert.numel()) - starts[vert]
    keep = slot < width
    table = torch.full((n_vertices, width), f, dtype=torch.int64)
    table[vert[keep], slot[keep]] = tri[keep]
    return table

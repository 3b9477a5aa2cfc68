"""Face-sized test meshes for the renderer benchmarks and GPU checks (no data files needed).

`dome_grid` is a regular grid of n x n vertices lifted onto a face-sized ellipsoidal cap
(189^2 = 35,721 vertices, 70,688 triangles: the density of BFM09's 35,709 / 70,789).
`bfm_topology_dome` puts BFM09's own triangle list (facemodel_info.mat `tri`, 1-based) on
the same cap through a Tutte embedding of its boundary-fixed disk parameterisation.
Vertices are in camera space of the default camera (z = positive depth near 10).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _cap(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Parameters in the unit disk -> camera-space points of a face-sized cap (dm)."""
    x, y = 0.95 * u, 1.15 * v
    bulge = np.sqrt(np.clip(1.0 - u ** 2 - v ** 2, 0.0, None))
    nose = 0.25 * np.exp(-(u ** 2 + (v + 0.05) ** 2) / 0.02)
    z_world = 0.55 * bulge + nose
    return np.stack([x, y, 10.0 - z_world], axis=-1)


def dome_grid(n: int = 189) -> tuple[torch.Tensor, torch.Tensor]:
    """(n^2, 3) float32 camera-space vertices and (2 (n-1)^2, 3) int64 triangles."""
    axis = np.linspace(-0.7, 0.7, n)
    u, v = np.meshgrid(axis, axis)
    vertices = _cap(u.ravel(), v.ravel())
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return torch.tensor(vertices, dtype=torch.float32), torch.tensor(tris, dtype=torch.int64)


def _boundary_loop(tris: np.ndarray) -> np.ndarray:
    """The longest boundary loop (vertex ids in order) of a triangle mesh."""
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    keys, counts = np.unique(np.sort(edges, 1), axis=0, return_counts=True)
    border = keys[counts == 1]
    neighbours: dict[int, list[int]] = {}
    for a, b in border:
        neighbours.setdefault(int(a), []).append(int(b))
        neighbours.setdefault(int(b), []).append(int(a))
    loops, seen = [], set()
    for start in neighbours:
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in neighbours[cur] if n != prev and n not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            seen.add(cur)
            loop.append(cur)
        loops.append(loop)
    return np.array(max(loops, key=len))


def bfm_topology_dome(facemodel_info: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """BFM09's 35,709-vertex / 70,789-triangle topology on the face-sized cap."""
    import scipy.io
    import scipy.sparse
    import scipy.sparse.linalg
    tris = scipy.io.loadmat(str(facemodel_info))["tri"].astype(np.int64) - 1
    n = int(tris.max()) + 1
    loop = _boundary_loop(tris)
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    adjacency = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                        shape=(n, n)).tocsr()
    adjacency.data[:] = 1.0
    laplacian = scipy.sparse.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency
    angle = np.linspace(0, 2 * np.pi, len(loop), endpoint=False)
    fixed = np.zeros((n, 2))
    fixed[loop] = 0.7 * np.stack([np.cos(angle), np.sin(angle)], 1)
    free = np.setdiff1d(np.arange(n), loop)
    lhs = laplacian[free][:, free].tocsc()
    rhs = -laplacian[free][:, loop] @ fixed[loop]
    solve = scipy.sparse.linalg.factorized(lhs)
    coords = fixed.copy()
    coords[free] = np.stack([solve(rhs[:, 0]), solve(rhs[:, 1])], 1)
    vertices = _cap(coords[:, 0], coords[:, 1])
    return torch.tensor(vertices, dtype=torch.float32), torch.tensor(tris, dtype=torch.int64)

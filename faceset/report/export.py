"""The subject mesh as GLB and PLY (trimesh), beside the OBJ.

- ``<name>.glb``: glTF binary in metres (glTF's unit), y up, +z towards the viewer; the
  baked albedo texture when the model has UVs, else the albedo as vertex colours.
- ``<name>.ply``: binary PLY in the OBJ's units (the model's, dm) with albedo vertex colours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from recon.constants import MM_PER_UNIT

METRES_PER_MODEL_UNIT = MM_PER_UNIT / 1000.0  # glTF is in metres


def _trimesh(vertices: np.ndarray, triangles: np.ndarray, albedo: np.ndarray):
    import trimesh

    colours = np.clip(np.round(np.asarray(albedo, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    return trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(triangles, dtype=np.int64),
                           vertex_colors=colours, process=False)


def export_mesh_formats(out_dir: str | Path, name: str, vertices: np.ndarray, triangles: np.ndarray,
                        albedo: np.ndarray, uvs: Optional[np.ndarray] = None,
                        texture: Optional[np.ndarray] = None) -> dict[str, Path]:
    """Write ``<name>.glb`` and ``<name>.ply``; returns {file name: path}.

    vertices (N, 3) float, model units (dm); triangles (F, 3) int, 0-based; albedo (N, 3)
    float in [0, 1]; uvs (N, 2) in [0, 1] (v up) and texture (H, W, 3) uint8 (row 0 = v 1),
    both or neither.
    """
    import trimesh
    from PIL import Image

    from recon.io import write_atomic

    out_dir = Path(out_dir)
    mesh = _trimesh(vertices, triangles, albedo)
    ply = out_dir / f"{name}.ply"
    write_atomic(ply, trimesh.exchange.ply.export_ply(mesh, encoding="binary"))
    scaled = mesh.copy()
    scaled.apply_scale(METRES_PER_MODEL_UNIT)
    if uvs is not None and texture is not None:
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=Image.fromarray(np.asarray(texture, dtype=np.uint8)),
            metallicFactor=0.0, roughnessFactor=0.9)
        scaled.visual = trimesh.visual.TextureVisuals(uv=np.asarray(uvs, dtype=np.float64),
                                                      material=material)
    glb = out_dir / f"{name}.glb"
    write_atomic(glb, trimesh.exchange.gltf.export_glb(trimesh.Scene(scaled)))
    return {ply.name: ply, glb.name: glb}

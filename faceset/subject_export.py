"""The fused face of a subject job as files: ``<name>.obj`` (neutral canonical shape, albedo
vertex colours), and where the model has UVs the baked albedo ``<name>_texture.png`` with its
``<name>.mtl``, plus ``<name>.glb`` / ``<name>.ply`` (``faceset.report.export_mesh_formats``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.face_model import FaceModel
from recon.io import obj_text, write_atomic, write_png
from recon.render import bake_texture
from recon.types import Coeffs

TEXTURE_SIZE = 512  # side of the baked albedo texture, texels


def write_subject_mesh(out_dir: Path, name: str, fused: Coeffs, face_model: FaceModel) -> dict[str, Path]:
    """``<name>.obj`` (neutral canonical, albedo colours) + UV texture and material.

    fused: (1, ...) neutral coefficients. Returns file name -> path of what was written.
    """
    geometry = face_model.compute(fused)
    vertices = geometry.canonical[0].cpu().numpy()
    albedo = geometry.albedo[0].cpu().numpy()
    triangles = face_model.triangles.cpu().numpy()
    uvs = None if face_model.uvs is None else face_model.uvs.cpu().numpy()
    outputs = {}
    texture = None if uvs is None else albedo_texture(face_model, geometry.albedo[0])
    text = obj_text(vertices, triangles, albedo, uvs,
                    header="faceset subject: neutral canonical shape, albedo colours, model units (dm)")
    if uvs is not None:
        write_png(out_dir / f"{name}_texture.png", texture)
        mtl = f"newmtl albedo\nKd 1 1 1\nmap_Kd {name}_texture.png\n"
        write_atomic(out_dir / f"{name}.mtl", mtl.encode())
        header, body = text.split("\n", 1)
        text = f"{header}\nmtllib {name}.mtl\nusemtl albedo\n{body}"
        outputs[f"{name}_texture.png"] = out_dir / f"{name}_texture.png"
        outputs[f"{name}.mtl"] = out_dir / f"{name}.mtl"
    write_atomic(out_dir / f"{name}.obj", text.encode())
    outputs[f"{name}.obj"] = out_dir / f"{name}.obj"
    from faceset.report import export_mesh_formats
    outputs.update(export_mesh_formats(out_dir, name, vertices, triangles, albedo, uvs, texture))
    return outputs


def albedo_texture(face_model: FaceModel, albedo, size: int = TEXTURE_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 albedo image of the model's UV layout, row 0 = v 1.

    albedo: (N, 3) float tensor in [0, 1] (clamped here)."""
    texture = bake_texture(face_model.uvs, face_model.triangles, albedo, size)
    return (texture.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)

"""Supervised training terms where the photo generator knows the truth (beyond the original).

``faceset synth --realism photo`` writes, per subject, ``truth/subject.mat`` with
``model_vertices_mm`` (V, 3): the true neutral surface at the fitted model's V vertices, in
millimetres, in the model's recentred canonical frame (shapes outside the model's basis),
and per photo ``truth/<stem>.mat`` with the true expression ``exp``. The photo's true
canonical shape is then ``model_vertices_mm / 100 + exp_basis @ exp`` (model units, dm),
whatever identity coefficients would best approximate it. Two terms compare R-Net's
canonical shape ``face_model.shape(id, exp)`` with it:

* ``vertex``: mean squared 3-D distance over the model's skin vertices, in mm^2;
* ``lm3d``: mean squared 3-D distance of the model's 68 landmark vertices, in mm^2.

Both are pose-free (the photo's pose lives in its own camera, not in the aligned crop's),
so augmentation's shift, scale and rotation leave them unchanged. By default they are also
translation-free: the residual's mean over the skin vertices is removed before squaring
(the same offset for both terms). The canonical frame's origin is where the generator
recentred each shape, which an aligned crop does not show, and the NoW score aligns it away;
measured on the first 8 training subjects of seed 100, the origin's offset is 0.1-35 mm^2 of
the mean face's 18-66 mm^2 (``translation_free=False`` keeps it, the first version's term); a horizontal flip shows
the mirrored person, whose shape is the truth mirrored in x with each vertex moved to its
mirror vertex (``mirror_vertex_map``). Photos without truth files contribute nothing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from recon import constants as C

TRUTH_FOLDER = "truth"
SUBJECT_TRUTH = "subject.mat"
SUPERVISED_NAMES = ("vertex", "lm3d")  # logged beside the original's terms
MIRROR_TOLERANCE_DM = 0.02  # 2 mm: a mirror vertex farther than this means an asymmetric mesh


def truth_paths(photo: Path) -> tuple[Path, Path]:
    """(per-photo truth .mat, subject truth .mat) of ``<subject>/images/<stem>.<ext>``."""
    subject = Path(photo).parent.parent / TRUTH_FOLDER
    return subject / f"{Path(photo).stem}.mat", subject / SUBJECT_TRUTH


@lru_cache(maxsize=64)
def _subject_vertices_mm(path: Path) -> Optional[np.ndarray]:
    import scipy.io
    try:
        data = scipy.io.loadmat(path, variable_names=["model_vertices_mm"])
    except Exception as err:  # scipy raises several types for a bad file
        raise ValueError(f"{path}: not a readable truth .mat ({err or type(err).__name__})") from None
    vertices = data.get("model_vertices_mm")
    return None if vertices is None else np.asarray(vertices, dtype=np.float32)


def read_truth(photo: Path, n_vertices: int, n_exp: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The photo's (neutral vertices (V, 3) float32 dm, true expression (n_exp,) float32), or
    None when its subject has no ``model_vertices_mm`` (e.g. an in-model or real photo).

    Raises ValueError naming the file when the truth exists but does not fit the model.
    """
    import scipy.io
    photo_truth, subject_truth = truth_paths(photo)
    if not (photo_truth.is_file() and subject_truth.is_file()):
        return None
    vertices_mm = _subject_vertices_mm(subject_truth)
    if vertices_mm is None:
        return None
    if vertices_mm.shape != (n_vertices, 3):
        raise ValueError(f"{subject_truth}: model_vertices_mm is {vertices_mm.shape}, this face "
                         f"model has ({n_vertices}, 3) (truth of another model?)")
    try:
        exp = scipy.io.loadmat(photo_truth, variable_names=["exp"])["exp"].reshape(-1)
    except Exception as err:
        raise ValueError(f"{photo_truth}: no readable true expression ({err or type(err).__name__})") from None
    if exp.shape != (n_exp,):
        raise ValueError(f"{photo_truth}: exp has {exp.size} values, the model {n_exp}")
    return vertices_mm / C.MM_PER_UNIT, exp.astype(np.float32)


def mirror_vertex_map(mean_shape: torch.Tensor) -> torch.Tensor:
    """(V,) long: for each vertex of a left-right symmetric canonical mesh (V, 3), the vertex
    nearest to its mirror image (x -> -x). Raises ValueError when the mesh is not symmetric
    about x = 0 (a mirror farther than MIRROR_TOLERANCE_DM)."""
    from scipy.spatial import cKDTree
    points = mean_shape.detach().reshape(-1, 3).cpu().double().numpy()
    mirrored = points * np.array([-1.0, 1.0, 1.0])
    distance, index = cKDTree(points).query(mirrored)
    if distance.max() > MIRROR_TOLERANCE_DM:
        raise ValueError(f"the face model is not left-right symmetric about x = 0 (a vertex's "
                         f"mirror is {distance.max() * C.MM_PER_UNIT:.1f} mm from any vertex): "
                         "flip augmentation cannot be used with shape supervision")
    return torch.from_numpy(index).long()


def vertex_squared_mm(residual: torch.Tensor, skin_mask: torch.Tensor,
                      translation_free: bool = True) -> torch.Tensor:
    """(..., V) squared 3-D distance per vertex, mm^2, of a residual (..., V, 3) in model
    units (dm); translation_free: its mean over the skin vertices (``skin_mask`` (V,) bool)
    is removed first (see the module docstring)."""
    if translation_free:
        residual = residual - residual[..., skin_mask, :].mean(-2, keepdim=True)
    return (residual ** 2).sum(-1) * C.MM_PER_UNIT ** 2


class ShapeSupervision:
    """The ``vertex`` and ``lm3d`` terms of a batch (see the module docstring).

    face_model: the FaceModel being trained; vertex_weight, landmark3d_weight: the term
    weights (per mm^2; 0 turns a term off); translation_free: remove the residual's mean
    over the skin vertices first (see the module docstring).
    """

    def __init__(self, face_model, vertex_weight: float, landmark3d_weight: float,
                 translation_free: bool = True):
        self.face_model = face_model
        self.translation_free = translation_free
        self.weights = {"vertex": vertex_weight, "lm3d": landmark3d_weight}
        self.mirror = mirror_vertex_map(face_model.mean_shape).to(face_model.mean_shape.device)
        self.flip_sign = torch.tensor([-1.0, 1.0, 1.0], device=face_model.mean_shape.device)

    def true_shapes(self, neutral: torch.Tensor, exp: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) dm true canonical shapes of the photos as the network sees them.

        neutral: (B, V, 3) dm; exp: (B, n_exp); flip: (B,) bool, mirrored photos."""
        shapes = neutral + (exp @ self.face_model.exp_basis.T).view(neutral.shape)
        mirrored = shapes[:, self.mirror] * self.flip_sign
        return torch.where(flip[:, None, None], mirrored, shapes)

    def __call__(self, id_coeffs: torch.Tensor, exp_coeffs: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Weighted terms {name: 0-d tensor}, averaged over the batch's photos with truth
        (zero when none has). id_coeffs (B, n_id), exp_coeffs (B, n_exp): R-Net's; batch:
        the loader's dict with ``truth_neutral`` (B, V, 3) dm, ``truth_exp`` (B, n_exp),
        ``has_truth`` (B,) bool and ``flip`` (B,) bool."""
        device = id_coeffs.device
        has = batch["has_truth"].to(device).bool()
        if not has.any():
            zero = id_coeffs.sum() * 0.0
            return {name: zero for name, w in self.weights.items() if w > 0}
        truth = self.true_shapes(batch["truth_neutral"].to(device)[has], batch["truth_exp"].to(device)[has],
                                 batch["flip"].to(device).bool()[has])
        residual = self.face_model.shape(id_coeffs[has], exp_coeffs[has]) - truth  # (b, V, 3) dm
        squared_mm = vertex_squared_mm(residual, self.face_model.skin_mask, self.translation_free)
        values = {"vertex": squared_mm[:, self.face_model.skin_mask].mean(),
                  "lm3d": squared_mm[:, self.face_model.landmark_ids].mean()}
        return {name: w * values[name] for name, w in self.weights.items() if w > 0}

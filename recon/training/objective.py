"""The hybrid training loss of the original (SPEC 5) for one batch.

R-Net -> Coeffs -> FaceModel.compute -> render with the full triangles (prediction) and
with the front triangles (crop-face mask, no gradient, as the original detaches it) ->
photometric (masked by crop-face mask x skin attention), landmark, coefficient, gamma,
reflectance and identity-feature terms, weighted by ``LossWeights`` and summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from recon.face_model import FaceModel
from recon.losses import LossWeights, TermInputs, loss_terms, photo_attention, weighted_terms
from recon.render import MeshRenderer
from recon.types import Coeffs

LOG_NAMES = ("all", "feat", "color", "lm", "reg", "gamma", "reflc")  # the original's log order


@dataclass
class BatchLoss:
    """total: 0-d weighted sum (what backward runs on); terms: each weighted term, 0-d;
    coeffs: the predicted Coeffs (B, ...)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    coeffs: Coeffs

    def logged(self) -> dict[str, float]:
        """Python floats named as the original logs them (``all`` = the total)."""
        values = {"all": float(self.total.detach())}
        values.update({k: float(v.detach()) for k, v in self.terms.items()})
        return values


class HybridLoss:
    """Computes the original's training loss of a batch.

    face_model: the FaceModel on the training device; renderer: a MeshRenderer with the
    face model's camera; identity_encoder: a frozen ``recon.identity`` encoder or None
    (``feat`` term off); weights: the term weights (default: the original's).
    """

    def __init__(self, face_model: FaceModel, renderer: MeshRenderer,
                 identity_encoder: Optional[torch.nn.Module] = None,
                 weights: LossWeights = LossWeights()):
        self.face_model = face_model
        self.renderer = renderer
        self.identity_encoder = identity_encoder
        self.weights = weights

    def __call__(self, net: torch.nn.Module, images: torch.Tensor, skin: torch.Tensor,
                 landmarks: torch.Tensor) -> BatchLoss:
        """Loss of one batch.

        net: R-Net (or its DDP wrapper) mapping (B, 3, 224, 224) to (B, D) coefficients.
        images: (B, 3, 224, 224) float RGB in [0, 1], aligned crops.
        skin: (B, 1, 224, 224) float skin attention in [0, 1].
        landmarks: (B, 68, 2) float target landmarks, y-down crop pixels.
        Returns BatchLoss (total differentiable in the net's parameters).
        """
        _check_batch(images, skin, landmarks)
        coeffs = Coeffs.from_vector(net(images), self.face_model.coeff_sizes)
        geometry = self.face_model.compute(coeffs)
        prediction = self.renderer.render(geometry, self.face_model.triangles)
        with torch.no_grad():
            crop_face = self.renderer.render(geometry, self.face_model.front_triangles)
        inputs = TermInputs(rendered=prediction.image, images=images,
                            attention=photo_attention(crop_face.mask, skin),
                            landmarks=geometry.landmarks, target_landmarks=landmarks, coeffs=coeffs,
                            albedo=geometry.albedo, skin_mask=self.face_model.skin_mask,
                            features=self._identity_features(prediction.image, geometry.landmarks,
                                                             images, landmarks))
        terms = weighted_terms(loss_terms(inputs, self.weights), self.weights)
        return BatchLoss(total=sum(terms.values()), terms=terms, coeffs=coeffs)

    def _identity_features(self, rendered: torch.Tensor, predicted_landmarks: torch.Tensor,
                           images: torch.Tensor, landmarks: torch.Tensor
                           ) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(render's, input's) features (B, D), or None without an encoder or feat weight.
        The input is aligned with its true landmarks, the render (black background) with
        the predicted ones (SPEC 12 D5); the encoder detaches the landmarks itself."""
        if self.identity_encoder is None or self.weights.feat == 0:
            return None
        with torch.no_grad():
            target = self.identity_encoder(images, landmarks)
        return self.identity_encoder(rendered, predicted_landmarks), target


def _check_batch(images: torch.Tensor, skin: torch.Tensor, landmarks: torch.Tensor) -> None:
    batch = images.shape[0]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if skin.shape != (batch, 1) + tuple(images.shape[2:]):
        raise ValueError(f"skin attention must be (B, 1, H, W) like the images, got "
                         f"{tuple(skin.shape)}")
    if landmarks.shape != (batch, 68, 2):
        raise ValueError(f"landmarks must be (B, 68, 2), got {tuple(landmarks.shape)}")

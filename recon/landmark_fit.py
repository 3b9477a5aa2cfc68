"""Landmark initialiser: pose, identity and expression from 68 detected landmarks.

Used when no R-Net checkpoint is given, and as the start point of fitting. Three steps,
all batched:

1. alternate a scaled-orthographic pose (affine fit + orthonormalisation) with a
   regularised linear solve for identity and expression (closed form each);
2. convert the weak-perspective pose to the original's perspective camera;
3. a few Levenberg-Marquardt steps on the full perspective model.

The energy is  sum_i w_i |proj_i - p_i|^2 / sigma^2 + |id|^2 + exp_weight |exp|^2, i.e. a MAP
estimate under the model's unit-variance priors with landmark noise ``sigma`` pixels.
Lighting (``estimate_lighting``) is then a linear least-squares fit of the SH coefficients
to the photo's colours at visible face vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import constants as C
from .face_model import FaceModel, rotation_derivatives, rotation_matrix, sh_basis
from .types import Coeffs

N_LANDMARKS = 68
JAW_CONTOUR = slice(0, 17)  # contour points slide along the silhouette with pose


@dataclass
class LandmarkFitConfig:
    sigma_px: float = 2.0          # landmark noise, pixels of the 224 crop
    exp_weight: float = 1.0        # prior weight of expression relative to identity
    contour_weight: float = 0.5    # weight of the 17 jaw-contour points
    alternations: int = 5          # weak-perspective pose / shape alternations
    lm_iterations: int = 8         # perspective Levenberg-Marquardt steps
    damping: float = 1e-3          # initial LM damping (relative to diag(J^T J))


def landmark_weights(config: LandmarkFitConfig, device=None) -> torch.Tensor:
    weights = torch.ones(N_LANDMARKS, device=device)
    weights[JAW_CONTOUR] = config.contour_weight
    return weights


def _to_centred_yup(landmarks: torch.Tensor, face_model: FaceModel) -> torch.Tensor:
    """y-down pixels -> (x - cx, v_up - cy): the image plane of the original's camera."""
    cam = face_model.camera
    return torch.stack([landmarks[..., 0] - cam.center_x,
                        (cam.height - 1 - landmarks[..., 1]) - cam.center_y], dim=-1)


def _landmark_bases(face_model: FaceModel):
    """Mean (68,3) and bases (68,3,K) restricted to the landmark vertices."""
    ids = face_model.landmark_ids
    mean = face_model.mean_shape.view(-1, 3)[ids]
    id_basis = face_model.id_basis.view(-1, 3, face_model.id_basis.shape[1])[ids]
    exp_basis = face_model.exp_basis.view(-1, 3, face_model.exp_basis.shape[1])[ids]
    return mean, id_basis, exp_basis


def _weak_perspective_pose(points3d: torch.Tensor, image_points: torch.Tensor,
                           weights: torch.Tensor):
    """Weighted affine camera fit, orthonormalised: image ≈ s · R[:2] · X + t.

    points3d (B,68,3), image_points (B,68,2), weights (68,). Returns s (B,), R (B,3,3), t (B,2).
    """
    w = weights.sqrt()[None, :, None]
    design = torch.cat([points3d, torch.ones_like(points3d[..., :1])], dim=-1) * w
    solution = torch.linalg.lstsq(design, image_points * w).solution  # (B, 4, 2)
    rows = solution[:, :3, :].transpose(1, 2)                          # (B, 2, 3)
    scale = rows.norm(dim=-1).mean(dim=-1)
    r1 = torch.nn.functional.normalize(rows[:, 0], dim=-1)
    r2 = torch.nn.functional.normalize(rows[:, 1], dim=-1)
    u, _, vh = torch.linalg.svd(torch.stack([r1, r2, torch.cross(r1, r2, dim=-1)], dim=1))
    rotation = u @ vh
    det = torch.linalg.det(rotation)
    u = torch.cat([u[..., :2], u[..., 2:] * det[:, None, None]], dim=-1)
    return scale, u @ vh, solution[:, 3, :]


def _shape_solve(scale, rotation, shift, image_points, mean, id_basis, exp_basis, weights,
                 config: LandmarkFitConfig):
    """Regularised linear least squares for (id, exp) under a fixed weak-perspective pose."""
    projector = scale[:, None, None] * rotation[:, :2, :]                 # (B, 2, 3)
    basis = torch.cat([id_basis, exp_basis], dim=-1)                      # (68, 3, K)
    design = torch.einsum("bij,njk->bnik", projector, basis)              # (B, 68, 2, K)
    target = image_points - shift[:, None, :] - torch.einsum("bij,nj->bni", projector, mean)
    w = (weights / config.sigma_px ** 2).sqrt()[None, :, None]
    design = (design * w[..., None]).flatten(1, 2)
    target = (target * w).flatten(1, 2)
    n_id = id_basis.shape[-1]
    prior = torch.ones(basis.shape[-1], device=basis.device)
    prior[n_id:] = config.exp_weight
    normal = design.transpose(1, 2) @ design + torch.diag(prior)
    coeffs = torch.linalg.solve(normal, (design.transpose(1, 2) @ target[..., None]))[..., 0]
    return coeffs[:, :n_id], coeffs[:, n_id:]


def euler_from_rotation(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rotation_matrix`` (R = Rz Ry Rx): (B,3,3) -> angles (B,3) radians."""
    x = torch.atan2(rotation[:, 2, 1], rotation[:, 2, 2])
    y = torch.asin((-rotation[:, 2, 0]).clamp(-1.0, 1.0))
    z = torch.atan2(rotation[:, 1, 0], rotation[:, 0, 0])
    return torch.stack([x, y, z], dim=-1)


def _initial_fit(face_model: FaceModel, image_points: torch.Tensor, config: LandmarkFitConfig):
    mean, id_basis, exp_basis = _landmark_bases(face_model)
    weights = landmark_weights(config, image_points.device)
    batch = image_points.shape[0]
    id_c = image_points.new_zeros(batch, id_basis.shape[-1])
    exp_c = image_points.new_zeros(batch, exp_basis.shape[-1])
    for _ in range(config.alternations):
        shape = mean + torch.einsum("njk,bk->bnj", id_basis, id_c) \
            + torch.einsum("njk,bk->bnj", exp_basis, exp_c)
        scale, rotation, shift = _weak_perspective_pose(shape, image_points, weights)
        id_c, exp_c = _shape_solve(scale, rotation, shift, image_points, mean, id_basis,
                                   exp_basis, weights, config)
    # weak perspective s = f / depth of the face centre; the centre sits at z_world = tz
    cam = face_model.camera
    depth = cam.focal_x / scale
    trans = torch.stack([shift[:, 0] * depth / cam.focal_x, shift[:, 1] * depth / cam.focal_y,
                         cam.distance - depth], dim=-1)
    return id_c, exp_c, euler_from_rotation(rotation), trans


def _residuals_and_jacobian(params, image_points, bases, sqrt_w, prior_sqrt, cam):
    """Whitened residuals (B, R) and their analytic Jacobian (B, R, P).

    params (B, P) = [angle (3), trans (3), id, exp]; the residuals are the 68 weighted
    projection errors (x then y per point) followed by the prior terms coeffs·sqrt(prior).
    """
    mean, basis = bases                                        # (68,3), (68,3,K)
    angle, trans, coeffs = params[:, :3], params[:, 3:6], params[:, 6:]
    shape = mean + torch.einsum("njk,bk->bnj", basis, coeffs)             # (B,68,3)
    rotation = rotation_matrix(angle)
    world = shape @ rotation.transpose(1, 2) + trans[:, None]
    depth = cam.distance - world[..., 2]
    focal = torch.tensor([cam.focal_x, cam.focal_y], device=params.device)
    proj = focal * world[..., :2] / depth[..., None]
    res_lm = (proj - image_points) * sqrt_w[:, None]
    # d proj / d world: focal/depth * [I2 | xy/depth] (depth = distance - z)
    d_proj = torch.cat([torch.diag_embed((focal / depth[..., None])),
                        (proj / depth[..., None])[..., None]], dim=-1)       # (B,68,2,3)
    d_rot = rotation_derivatives(angle)                                      # (B,3,3,3)
    d_world_angle = torch.einsum("bijk,bnj->bnik", d_rot, shape)             # (B,68,3,3)
    d_world_trans = torch.eye(3, device=params.device).expand_as(d_world_angle)
    d_world_coeffs = torch.einsum("bij,njk->bnik", rotation, basis)          # (B,68,3,K)
    d_world = torch.cat([d_world_angle, d_world_trans, d_world_coeffs], dim=-1)
    jac_lm = (d_proj @ d_world) * sqrt_w[None, :, None, None]                # (B,68,2,P)
    batch, n_params = params.shape
    jac_prior = torch.cat([params.new_zeros(len(prior_sqrt), 6), torch.diag(prior_sqrt)], 1)
    residuals = torch.cat([res_lm.flatten(1), coeffs * prior_sqrt], dim=1)
    jacobian = torch.cat([jac_lm.flatten(1, 2), jac_prior.expand(batch, -1, -1)], dim=1)
    return residuals, jacobian


def _levenberg_marquardt(face_model: FaceModel, image_points, params, config: LandmarkFitConfig):
    mean, id_basis, exp_basis = _landmark_bases(face_model)
    n_id = id_basis.shape[-1]
    sqrt_w = (landmark_weights(config, params.device) / config.sigma_px ** 2).sqrt()
    prior = torch.ones(params.shape[1] - 6, device=params.device)
    prior[n_id:] = config.exp_weight
    consts = ((mean, torch.cat([id_basis, exp_basis], -1)), sqrt_w, prior.sqrt(), face_model.camera)
    damping = torch.full((params.shape[0],), config.damping, device=params.device)
    res, jac = _residuals_and_jacobian(params, image_points, *consts)
    cost = res.square().sum(-1)
    for _ in range(config.lm_iterations):
        jtj = jac.transpose(1, 2) @ jac
        diag = torch.diagonal(jtj, dim1=1, dim2=2).clamp_min(1e-9)
        step = torch.linalg.solve(jtj + torch.diag_embed(damping[:, None] * diag),
                                  -(jac.transpose(1, 2) @ res[..., None])[..., 0])
        trial = params + step
        trial_res, trial_jac = _residuals_and_jacobian(trial, image_points, *consts)
        trial_cost = trial_res.square().sum(-1)
        better = trial_cost < cost
        params = torch.where(better[:, None], trial, params)
        res = torch.where(better[:, None], trial_res, res)
        jac = torch.where(better[:, None, None], trial_jac, jac)
        cost = torch.where(better, trial_cost, cost)
        damping = torch.where(better, damping * 0.3, damping * 10.0)
    return params


@torch.no_grad()
def fit_landmarks(face_model: FaceModel, landmarks: torch.Tensor,
                  config: LandmarkFitConfig | None = None) -> Coeffs:
    """MAP fit of identity, expression and pose to 68 landmarks.

    landmarks: (B, 68, 2) float, y-down pixels of the camera's image (the 224 crop).
    Returns Coeffs with id, exp, angle, trans set; tex and gamma zero.
    """
    config = config or LandmarkFitConfig()
    if landmarks.ndim != 3 or landmarks.shape[1:] != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks must be (B, 68, 2), got {tuple(landmarks.shape)}")
    image_points = _to_centred_yup(landmarks.to(face_model.mean_shape), face_model)
    id_c, exp_c, angle, trans = _initial_fit(face_model, image_points, config)
    params = torch.cat([angle, trans, id_c, exp_c], dim=1)
    params = _levenberg_marquardt(face_model, image_points, params, config)
    n_id = id_c.shape[1]
    coeffs = Coeffs.zeros(landmarks.shape[0], face_model.coeff_sizes,
                          device=params.device, dtype=params.dtype)
    return coeffs.replace(angle=params[:, :3], trans=params[:, 3:6], id=params[:, 6:6 + n_id],
                          exp=params[:, 6 + n_id:])


@torch.no_grad()
def estimate_lighting(face_model: FaceModel, coeffs: Coeffs, images: torch.Tensor,
                      ridge: float = 1e-2) -> torch.Tensor:
    """Least-squares SH lighting (B, 27) that best explains the photo at visible vertices.

    images: (B, 3, H, W) float RGB in [0, 1], the camera's image (the 224 crop).
    Vertices used: the skin vertices whose normal faces the camera and whose projection
    falls inside the image; colour = albedo · (Y(n) · (gamma + 0.8 e0)) is linear in gamma.
    ``ridge`` pulls gamma towards 0 (the ambient default) where the data are weak.
    """
    geometry = face_model.compute(coeffs, with_color=False)
    cam = face_model.camera
    pixels = geometry.camera[..., :2] / geometry.camera[..., 2:]
    u = cam.focal_x * pixels[..., 0] + cam.center_x
    v_down = (cam.height - 1) - (cam.focal_y * pixels[..., 1] + cam.center_y)
    grid = torch.stack([2 * u / (images.shape[-1] - 1) - 1, 2 * v_down / (images.shape[-2] - 1) - 1], -1)
    observed = torch.nn.functional.grid_sample(images, grid[:, None], align_corners=True)[:, :, 0]
    view_dir = torch.nn.functional.normalize(-geometry.world + torch.tensor(
        [0.0, 0.0, cam.distance], device=images.device), dim=-1)
    visible = ((geometry.normals * view_dir).sum(-1) > 0.2) & face_model.skin_mask[None]
    visible &= (grid.abs() < 1).all(-1)
    basis = sh_basis(geometry.normals)                                       # (B, N, 9)
    gammas = []
    for b in range(images.shape[0]):
        rows = basis[b, visible[b]]
        channel_gamma = []
        for c in range(3):
            albedo = geometry.albedo[b, visible[b], c]
            design = rows * albedo[:, None]
            target = observed[b, c, visible[b]] - C.INIT_LIGHT_DC * design[:, 0]
            normal = design.T @ design + ridge * design.shape[0] * torch.eye(9, device=images.device)
            channel_gamma.append(torch.linalg.solve(normal, design.T @ target))
        gammas.append(torch.cat(channel_gamma))
    return torch.stack(gammas)

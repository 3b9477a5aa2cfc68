"""Landmark initialiser: pose, identity and expression from detected landmarks.

Used when no R-Net checkpoint is given, and as the start point of fitting. The detector's
points are a ``recon.landmark_set.LandmarkSet`` (default: the model's 68 iBUG vertices);
each model point is a barycentric combination of mesh vertices, so its rows of the shape
bases are the same combination of the vertices' rows and every step stays linear in the
coefficients. Three steps, all batched:

1. alternate a scaled-orthographic pose (affine fit + orthonormalisation) with a
   regularised linear solve for identity and expression (closed form each);
2. convert the weak-perspective pose to the original's perspective camera;
3. a few Levenberg-Marquardt steps on the full perspective model.

The energy is  sum_i w_i |proj_i - p_i|^2 / sigma^2 + |id|^2 + exp_weight |exp|^2, i.e. a MAP
estimate under the model's unit-variance priors with landmark noise ``sigma`` pixels; w_i
are the set's weights (times the visibility, when given). With ``slide_contour`` the set's
contour points slide along the silhouette (``recon.contour``): before every pose solve of
step 1 and every Levenberg-Marquardt step the silhouette candidate of each contour path is
picked anew in the current pose, and that step fits it.
Lighting (``estimate_lighting``) is then a linear least-squares fit of the SH coefficients
to the photo's colours at visible face vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import constants as C
from .contour import ContourPaths
from .face_model import FaceModel, rotation_derivatives, rotation_matrix, sh_basis
from .landmark_set import LandmarkSet
from .types import Coeffs

N_LANDMARKS = 68


@dataclass
class LandmarkFitConfig:
    sigma_px: float = 2.0          # landmark noise, pixels of the 224 crop
    exp_weight: float = 1.0        # prior weight of expression relative to identity
    contour_weight: float = 0.5    # weight of the 17 jaw-contour points of the default set
    alternations: int = 5          # weak-perspective pose / shape alternations
    lm_iterations: int = 8         # perspective Levenberg-Marquardt steps
    damping: float = 1e-3          # initial LM damping (relative to diag(J^T J))
    slide_contour: bool = False    # contour points slide along the silhouette (recon.contour)


def default_landmark_set(face_model: FaceModel, config: LandmarkFitConfig) -> LandmarkSet:
    """The model's 68 iBUG landmark vertices, jaw contour weighted by ``config.contour_weight``."""
    return LandmarkSet.ibug68(face_model.landmark_ids, contour_weight=config.contour_weight)


def _surface_rows(face_model: FaceModel, vertex_ids: torch.Tensor, barycentrics: torch.Tensor):
    """Rows of the shape model at surface points (..., 3) vertex ids + barycentrics:
    mean (..., 3), id basis (..., 3, K_id), exp basis (..., 3, K_exp). Barycentric
    combinations of the vertices' rows; exact copies for points on a vertex."""
    weights = barycentrics.to(face_model.mean_shape)
    mean = (face_model.mean_shape.view(-1, 3)[vertex_ids] * weights[..., None]).sum(-2)

    def basis_rows(basis: torch.Tensor) -> torch.Tensor:
        rows = basis.view(-1, 3, basis.shape[1])[vertex_ids]                   # (..., 3, 3, K)
        return (rows * weights[..., None, None]).sum(-3).contiguous()

    return mean.contiguous(), basis_rows(face_model.id_basis), basis_rows(face_model.exp_basis)


class _PointModel:
    """The shape model restricted to a set's points (and its contour paths' candidates).

    mean (P, 3), id_basis (P, 3, K_id), exp_basis (P, 3, K_exp) (see ``_surface_rows``).
    With paths, the candidates' rows (C, L, 3[, K]) too, and ``rows(chosen)`` swaps the
    chosen candidates (B, C) into the contour points' rows per image.
    """

    def __init__(self, face_model: FaceModel, landmark_set: LandmarkSet, paths: ContourPaths | None):
        device = face_model.mean_shape.device
        self.mean, self.id_basis, self.exp_basis = _surface_rows(
            face_model, landmark_set.vertex_ids.to(device), landmark_set.barycentrics.to(device))
        self.paths = paths
        if paths is not None:
            self.candidate_rows = _surface_rows(face_model, paths.vertex_ids, paths.barycentrics)

    def candidates(self, id_c: torch.Tensor, exp_c: torch.Tensor) -> torch.Tensor:
        """Canonical candidate points (B, C, L, 3) of (B, K_id), (B, K_exp) coefficients."""
        mean, id_rows, exp_rows = self.candidate_rows
        return (mean + torch.einsum("cljk,bk->bclj", id_rows, id_c)
                + torch.einsum("cljk,bk->bclj", exp_rows, exp_c))

    def rows(self, chosen: torch.Tensor | None):
        """mean, id_basis, exp_basis: shared (P, ...) without a choice, per image (B, P, ...)
        with the chosen candidates (B, C) in the contour points' rows."""
        if chosen is None:
            return self.mean, self.id_basis, self.exp_basis
        swapped = []
        for own, candidate in zip((self.mean, self.id_basis, self.exp_basis), self.candidate_rows):
            picked = torch.stack([candidate[c, chosen[:, c]] for c in range(chosen.shape[1])], 1)  # (B, C, ...)
            full = own[None].expand(chosen.shape[0], *own.shape).contiguous()
            swapped.append(full.index_copy(1, self.paths.point_index, picked))
        return tuple(swapped)

    def choose(self, id_c: torch.Tensor, exp_c: torch.Tensor, project) -> torch.Tensor:
        """The silhouette candidates (B, C) under a pose: ``project`` maps canonical points
        (B, M, 3) to image points (B, M, 2) (posing them first)."""
        candidates = self.candidates(id_c, exp_c)
        batch, count, length = candidates.shape[:3]
        anchors = candidates[:, :, 0]
        tips = self.paths.tips(anchors)
        image = project(torch.cat([candidates.flatten(1, 2), anchors, tips], 1))
        return self.paths.choose(image[:, :count * length].view(batch, count, length, 2),
                                 image[:, count * length:count * (length + 1)], image[:, count * (length + 1):])


def _contract(basis: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """basis (P, 3, K) or (B, P, 3, K), coeffs (B, K) -> (B, P, 3)."""
    return torch.einsum("njk,bk->bnj" if basis.ndim == 3 else "bnjk,bk->bnj", basis, coeffs)


def _shape_of(mean, id_basis, exp_basis, id_c, exp_c) -> torch.Tensor:
    return mean + _contract(id_basis, id_c) + _contract(exp_basis, exp_c)


@dataclass(frozen=True)
class _ImageCameras:
    """Each image's pinhole: focal (B, 1, 2) and principal point (B, 1, 2, y-up) in pixels of
    the face model camera's image, and the shared camera distance (model units)."""

    focal: torch.Tensor
    centre: torch.Tensor
    distance: float

    @classmethod
    def of(cls, face_model: FaceModel, batch: int, intrinsics: torch.Tensor | None) -> "_ImageCameras":
        cam = face_model.camera
        like = face_model.mean_shape
        if intrinsics is None:
            focal = like.new_tensor([cam.focal_x, cam.focal_y]).expand(batch, 1, 2)
            centre = like.new_tensor([cam.center_x, cam.center_y]).expand(batch, 1, 2)
        else:
            if intrinsics.shape != (batch, 3):
                raise ValueError(f"intrinsics must be ({batch}, 3) [focal, cx, cy_up], got {tuple(intrinsics.shape)}")
            intrinsics = intrinsics.to(like)
            focal = intrinsics[:, None, :1].expand(batch, 1, 2)
            centre = intrinsics[:, None, 1:]
        return cls(focal, centre, cam.distance)


def _to_centred_yup(landmarks: torch.Tensor, face_model: FaceModel, cameras: _ImageCameras) -> torch.Tensor:
    """y-down pixels -> (x - cx, v_up - cy): the image plane of each image's camera."""
    height = face_model.camera.height
    yup = torch.stack([landmarks[..., 0], (height - 1 - landmarks[..., 1])], dim=-1)
    return yup - cameras.centre


def _weak_perspective_pose(points3d: torch.Tensor, image_points: torch.Tensor,
                           weights: torch.Tensor):
    """Weighted affine camera fit, orthonormalised: image ≈ s · R[:2] · X + t.

    points3d (B,P,3), image_points (B,P,2), weights (P,) or (B,P). Returns s (B,), R (B,3,3), t (B,2).
    """
    w = weights.sqrt()[..., None]
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
    """Regularised linear least squares for (id, exp) under a fixed weak-perspective pose.

    Bases shared (P, 3[, K]) or per image (B, P, 3[, K]); weights (P,) or (B, P)."""
    projector = scale[:, None, None] * rotation[:, :2, :]                 # (B, 2, 3)
    basis = torch.cat([id_basis, exp_basis], dim=-1)                      # ([B,] P, 3, K)
    batched = basis.ndim == 4
    design = torch.einsum("bij,bnjk->bnik" if batched else "bij,njk->bnik", projector, basis)  # (B, P, 2, K)
    target = image_points - shift[:, None, :] - torch.einsum("bij,bnj->bni" if batched else "bij,nj->bni",
                                                             projector, mean)
    w = (weights / config.sigma_px ** 2).sqrt()[..., None]
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


def _initial_fit(points: _PointModel, cameras: _ImageCameras, image_points: torch.Tensor,
                 weights: torch.Tensor, config: LandmarkFitConfig):
    batch = image_points.shape[0]
    id_c = image_points.new_zeros(batch, points.id_basis.shape[-1])
    exp_c = image_points.new_zeros(batch, points.exp_basis.shape[-1])
    chosen = None
    for _ in range(config.alternations):
        mean, id_basis, exp_basis = points.rows(chosen)
        shape = _shape_of(mean, id_basis, exp_basis, id_c, exp_c)
        scale, rotation, shift = _weak_perspective_pose(shape, image_points, weights)
        id_c, exp_c = _shape_solve(scale, rotation, shift, image_points, mean, id_basis,
                                   exp_basis, weights, config)
        if points.paths is not None:
            def project(canonical, scale=scale, rotation=rotation, shift=shift):
                return scale[:, None, None] * canonical @ rotation[:, :2].transpose(1, 2) + shift[:, None]
            chosen = points.choose(id_c, exp_c, project)
    # weak perspective s = f / depth of the face centre; the centre sits at z_world = tz
    focal = cameras.focal[:, 0]
    depth = focal[:, 0] / scale
    trans = torch.stack([shift[:, 0] * depth / focal[:, 0], shift[:, 1] * depth / focal[:, 1],
                         cameras.distance - depth], dim=-1)
    return id_c, exp_c, euler_from_rotation(rotation), trans


def _residuals_and_jacobian(params, image_points, bases, sqrt_w, prior_sqrt, cameras: _ImageCameras):
    """Whitened residuals (B, R) and their analytic Jacobian (B, R, Q).

    params (B, Q) = [angle (3), trans (3), id, exp]; the residuals are the P weighted
    projection errors (x then y per point) followed by the prior terms coeffs·sqrt(prior).
    bases: mean ([B,]P,3), basis ([B,]P,3,K); sqrt_w (P,) or (B,P).
    """
    mean, basis = bases
    angle, trans, coeffs = params[:, :3], params[:, 3:6], params[:, 6:]
    shape = mean + _contract(basis, coeffs)                                # (B,P,3)
    rotation = rotation_matrix(angle)
    world = shape @ rotation.transpose(1, 2) + trans[:, None]
    depth = cameras.distance - world[..., 2]
    focal = cameras.focal
    proj = focal * world[..., :2] / depth[..., None]
    res_lm = (proj - image_points) * sqrt_w[..., None]
    # d proj / d world: focal/depth * [I2 | xy/depth] (depth = distance - z)
    d_proj = torch.cat([torch.diag_embed((focal / depth[..., None])),
                        (proj / depth[..., None])[..., None]], dim=-1)       # (B,68,2,3)
    d_rot = rotation_derivatives(angle)                                      # (B,3,3,3)
    d_world_angle = torch.einsum("bijk,bnj->bnik", d_rot, shape)             # (B,68,3,3)
    d_world_trans = torch.eye(3, device=params.device).expand_as(d_world_angle)
    d_world_coeffs = torch.einsum("bij,njk->bnik" if basis.ndim == 3 else "bij,bnjk->bnik",
                                  rotation, basis)                          # (B,P,3,K)
    d_world = torch.cat([d_world_angle, d_world_trans, d_world_coeffs], dim=-1)
    jac_lm = (d_proj @ d_world) * sqrt_w[..., None, None]                    # (B,P,2,Q)
    batch, n_params = params.shape
    jac_prior = torch.cat([params.new_zeros(len(prior_sqrt), 6), torch.diag(prior_sqrt)], 1)
    residuals = torch.cat([res_lm.flatten(1), coeffs * prior_sqrt], dim=1)
    jacobian = torch.cat([jac_lm.flatten(1, 2), jac_prior.expand(batch, -1, -1)], dim=1)
    return residuals, jacobian


def _perspective_projector(params: torch.Tensor, cameras: _ImageCameras):
    """Canonical points (B, M, 3) -> centred y-up image points (B, M, 2) under params' pose."""
    rotation, trans = rotation_matrix(params[:, :3]), params[:, 3:6]

    def project(canonical: torch.Tensor) -> torch.Tensor:
        world = canonical @ rotation.transpose(1, 2) + trans[:, None]
        return cameras.focal * world[..., :2] / (cameras.distance - world[..., 2:3])
    return project


def _levenberg_marquardt(points: _PointModel, cameras: _ImageCameras, image_points, weights, params,
                         config: LandmarkFitConfig):
    n_id = points.id_basis.shape[-1]
    sqrt_w = (weights / config.sigma_px ** 2).sqrt()
    prior = torch.ones(params.shape[1] - 6, device=params.device)
    prior[n_id:] = config.exp_weight

    def bases(chosen):
        mean, id_basis, exp_basis = points.rows(chosen)
        return mean, torch.cat([id_basis, exp_basis], -1)

    def choice(params):
        if points.paths is None:
            return None
        return points.choose(params[:, 6:6 + n_id], params[:, 6 + n_id:], _perspective_projector(params, cameras))

    consts = (sqrt_w, prior.sqrt(), cameras)
    damping = torch.full((params.shape[0],), config.damping, device=params.device)
    chosen = choice(params)
    res, jac = _residuals_and_jacobian(params, image_points, bases(chosen), *consts)
    cost = res.square().sum(-1)
    for _ in range(config.lm_iterations):
        if points.paths is not None:
            # Re-pick the silhouette in the current pose; the trial step is judged on the
            # same choice, so the acceptance test compares like with like.
            chosen = choice(params)
            res, jac = _residuals_and_jacobian(params, image_points, bases(chosen), *consts)
            cost = res.square().sum(-1)
        jtj = jac.transpose(1, 2) @ jac
        diag = torch.diagonal(jtj, dim1=1, dim2=2).clamp_min(1e-9)
        step = torch.linalg.solve(jtj + torch.diag_embed(damping[:, None] * diag),
                                  -(jac.transpose(1, 2) @ res[..., None])[..., 0])
        trial = params + step
        trial_res, trial_jac = _residuals_and_jacobian(trial, image_points, bases(chosen), *consts)
        trial_cost = trial_res.square().sum(-1)
        better = trial_cost < cost
        params = torch.where(better[:, None], trial, params)
        res = torch.where(better[:, None], trial_res, res)
        jac = torch.where(better[:, None, None], trial_jac, jac)
        cost = torch.where(better, trial_cost, cost)
        damping = torch.where(better, damping * 0.3, damping * 10.0)
    return params


def check_landmarks(landmarks: torch.Tensor, count: int, visibility: torch.Tensor | None = None,
                    what: str = "landmarks") -> None:
    """One clear error unless landmarks are (M, count, 2) and visibility None or (M, count)."""
    if landmarks.ndim != 3 or landmarks.shape[1:] != (count, 2):
        raise ValueError(f"{what} must be (M, {count}, 2) for a landmark set of {count} points, "
                         f"got {tuple(landmarks.shape)}")
    if visibility is not None and tuple(visibility.shape) != tuple(landmarks.shape[:2]):
        raise ValueError(f"{what} visibility must be ({landmarks.shape[0]}, {count}), got {tuple(visibility.shape)}")


def _observations(face_model: FaceModel, landmarks: torch.Tensor, config: LandmarkFitConfig,
                  landmark_set: LandmarkSet | None, visibility: torch.Tensor | None,
                  intrinsics: torch.Tensor | None):
    """The checked landmark set on the model's device, its points' weights (P,) or (B, P)
    (times the visibility), each image's camera and the points in its centred y-up plane."""
    landmark_set = (landmark_set or default_landmark_set(face_model, config)).to(face_model.mean_shape.device)
    check_landmarks(landmarks, landmark_set.count, visibility)
    like = face_model.mean_shape
    weights = landmark_set.weights.to(like)
    if visibility is not None:
        weights = weights * visibility.to(weights)
    cameras = _ImageCameras.of(face_model, landmarks.shape[0], intrinsics)
    return landmark_set, weights, cameras, _to_centred_yup(landmarks.to(like), face_model, cameras)


@torch.no_grad()
def fit_landmarks(face_model: FaceModel, landmarks: torch.Tensor,
                  config: LandmarkFitConfig | None = None, landmark_set: LandmarkSet | None = None,
                  visibility: torch.Tensor | None = None, intrinsics: torch.Tensor | None = None) -> Coeffs:
    """MAP fit of identity, expression and pose to a landmark set's detected points.

    landmarks: (B, P, 2) float, y-down pixels of the camera's image (the 224 crop);
    landmark_set: where the P points lie on the model (default ``default_landmark_set``:
    the 68 iBUG vertices, jaw weighted ``config.contour_weight``); its weights are the
    points' w_i; visibility: optional (B, P) in [0, 1], multiplies each point's weight;
    intrinsics: optional (B, 3) ``[focal, center_x, center_y_up]`` pixels, each image's own
    camera in the crop (``recon.crop_camera``; default the face model's camera).
    Returns Coeffs with id, exp, angle, trans set; tex and gamma zero.
    """
    config = config or LandmarkFitConfig()
    landmark_set, weights, cameras, image_points = _observations(face_model, landmarks, config, landmark_set,
                                                                 visibility, intrinsics)
    paths = ContourPaths.build(landmark_set, face_model) if config.slide_contour else None
    points = _PointModel(face_model, landmark_set, paths)
    id_c, exp_c, angle, trans = _initial_fit(points, cameras, image_points, weights, config)
    params = torch.cat([angle, trans, id_c, exp_c], dim=1)
    params = _levenberg_marquardt(points, cameras, image_points, weights, params, config)
    n_id = id_c.shape[1]
    coeffs = Coeffs.zeros(landmarks.shape[0], face_model.coeff_sizes,
                          device=params.device, dtype=params.dtype)
    return coeffs.replace(angle=params[:, :3], trans=params[:, 3:6], id=params[:, 6:6 + n_id],
                          exp=params[:, 6 + n_id:])


class _FixedIdentity:
    """The shape model at a set's points with each image's identity fixed: the identity
    enters the mean (B, P, 3) and leaves no columns, so the solve moves only pose and
    expression (the ``_PointModel`` interface, without sliding contour points)."""

    def __init__(self, face_model: FaceModel, landmark_set: LandmarkSet, id_c: torch.Tensor):
        points = _PointModel(face_model, landmark_set, None)
        self.mean = points.mean + _contract(points.id_basis, id_c)
        self.id_basis = points.id_basis[..., :0]
        self.exp_basis = points.exp_basis
        self.paths = None

    def rows(self, chosen: None = None):
        """mean (B, P, 3), the empty identity basis and the expression basis; ``chosen`` is
        always None (no contour paths)."""
        return self.mean, self.id_basis, self.exp_basis


@torch.no_grad()
def refit_pose_expression(face_model: FaceModel, coeffs: Coeffs, landmarks: torch.Tensor,
                          config: LandmarkFitConfig | None = None, landmark_set: LandmarkSet | None = None,
                          visibility: torch.Tensor | None = None,
                          intrinsics: torch.Tensor | None = None) -> Coeffs:
    """Pose and expression re-fitted to the landmarks with identity (and colour) kept.

    The MAP landmark fit of ``fit_landmarks`` (same noise model and expression prior, its
    Levenberg-Marquardt steps) started from ``coeffs`` (B, ...) with ``coeffs.id`` fixed;
    arguments as ``fit_landmarks`` (contour points do not slide here). Returns ``coeffs``
    with angle, trans and exp replaced.
    """
    config = config or LandmarkFitConfig()
    landmark_set, weights, cameras, image_points = _observations(face_model, landmarks, config, landmark_set,
                                                                 visibility, intrinsics)
    like = face_model.mean_shape
    points = _FixedIdentity(face_model, landmark_set, coeffs.id.to(like))
    params = torch.cat([coeffs.angle, coeffs.trans, coeffs.exp], dim=1).to(like)
    params = _levenberg_marquardt(points, cameras, image_points, weights, params, config)
    return coeffs.replace(angle=params[:, :3].to(coeffs.angle), trans=params[:, 3:6].to(coeffs.trans),
                          exp=params[:, 6:].to(coeffs.exp))


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
            # at least one row of ridge: a photo with no visible skin vertex (the start
            # turned away or off the crop) gets the ambient default instead of a singular solve
            normal = design.T @ design + ridge * max(design.shape[0], 1) * torch.eye(9, device=images.device)
            channel_gamma.append(torch.linalg.solve(normal, design.T @ target))
        gammas.append(torch.cat(channel_gamma))
    return torch.stack(gammas)

"""Sliding contour points ("landmark marching", after Zhu et al. 2015 and 3DDFA).

A detector's contour points (the iBUG jaw line, mediapipe's face oval) mark where the
face's outline is in the photo, not a fixed point of the surface: at yaw the visible jaw
line is another part of the cheek. Marching gives each contour point a *path* of candidate
surface points, fixed once per model, and in the current pose picks the candidate that lies
on the silhouette; that candidate's projection is the model point the detector's point is
compared with. The choice has no gradient (it is a discrete pick), its position has.

The path of a contour point p0 (canonical frame, mean shape): its outward direction n is
the direction from the face centre (the mean of the set's non-contour points) to p0 in the
image plane (x, y); the path holds the vertices within half a band of the plane through p0
spanned by n and the depth axis (for a jaw point at ear height, a horizontal line of the
head), on p0's side of the centre, whose frontal projection does not reach beyond p0's.
The candidate chosen in a pose is the one whose projection lies furthest along the
projected outward direction: on a slice of the head that is where the surface turns away
from the camera. At the model's rest pose (no rotation, the canonical face in front of the
camera) that is p0 itself (candidate 0 is p0, and no other candidate projects further out),
so marching changes nothing for a frontal face; turned away, the path's cheek vertices win;
turned towards the camera, the vertices behind p0 (towards the ear) come into view and win.
The outermost-projection rule is exact for slices that are convex in the view; a mesh
border on the path (a cropped model's forehead) can only win if it projects further out
than p0 in some pose, which the rest-pose restriction keeps rare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .landmark_set import LandmarkSet

# Half-width of a path's slab, in median edge lengths of the mesh: one row of a regular
# grid falls inside (a narrower slab can miss rows of an irregular mesh, a wider one mixes
# heights into the path).
PATH_BAND_EDGES = 0.6
# Length (model units, dm) of the outward step whose projection gives a path's image
# direction: small against the head, large against float rounding.
OUTWARD_STEP = 0.1


@dataclass(frozen=True)
class ContourPaths:
    """Candidate surface points of a set's contour points.

    point_index: (C,) long, which of the set's P points are contour points (set order);
    vertex_ids: (C, L, 3) long and barycentrics: (C, L, 3) float, candidate surface points
        (candidate 0 is the set's own point; the others are mesh vertices);
    valid: (C, L) bool, False for padding (paths differ in length);
    outward: (C, 3) float, unit outward directions (canonical frame, z = 0).
    """

    point_index: torch.Tensor
    vertex_ids: torch.Tensor
    barycentrics: torch.Tensor
    valid: torch.Tensor
    outward: torch.Tensor

    @property
    def count(self) -> int:
        return self.point_index.shape[0]

    def to(self, device) -> "ContourPaths":
        return ContourPaths(*(t.to(device) for t in (self.point_index, self.vertex_ids, self.barycentrics,
                                                     self.valid, self.outward)))

    def candidates(self, vertices: torch.Tensor) -> torch.Tensor:
        """Candidate points of a batch of meshes: vertices (B, N, D) -> (B, C, L, D)."""
        batch, count, length = vertices.shape[0], self.count, self.vertex_ids.shape[1]
        corners = vertices[:, self.vertex_ids.reshape(-1)].view(batch, count, length, 3, vertices.shape[-1])
        return (corners * self.barycentrics.to(vertices)[None, ..., None]).sum(3)

    def tips(self, anchors: torch.Tensor, rotation: torch.Tensor | None = None) -> torch.Tensor:
        """Each contour point moved OUTWARD_STEP along its outward direction.

        anchors: (B, C, 3) contour points (candidate 0), canonical or posed; rotation:
        (B, 3, 3) the pose's rotation for posed anchors, None for canonical ones. Returns
        (B, C, 3); projected with the anchors, they give each path's image direction."""
        step = OUTWARD_STEP * self.outward.to(anchors)[None]
        return anchors + (step if rotation is None else step @ rotation.transpose(1, 2))

    @torch.no_grad()
    def choose(self, candidates_2d: torch.Tensor, anchors_2d: torch.Tensor, tips_2d: torch.Tensor) -> torch.Tensor:
        """The silhouette candidate of each path: (B, C) long indices into L.

        candidates_2d (B, C, L, 2): the candidates' projections; anchors_2d, tips_2d (B, C, 2):
        the projections of candidate 0 and of ``tips``; all in one image frame (any units and axis
        directions, as long as they agree). Picks the candidate furthest along tip - anchor.
        """
        direction = tips_2d - anchors_2d
        reach = (candidates_2d * direction[:, :, None]).sum(-1)
        reach = reach.masked_fill(~self.valid[None], float("-inf"))
        return reach.argmax(-1)

    def gather(self, candidates: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """candidates (B, C, L, D), chosen (B, C) -> the chosen ones (B, C, D) (differentiable)."""
        index = chosen[..., None, None].expand(-1, -1, 1, candidates.shape[-1])
        return candidates.gather(2, index)[:, :, 0]

    @classmethod
    def build(cls, landmark_set: LandmarkSet, face_model, band_edges: float = PATH_BAND_EDGES) -> "ContourPaths":
        """The paths of ``landmark_set``'s contour points on ``face_model``'s mean shape
        (see the module docstring). face_model: a ``recon.face_model.FaceModel``."""
        mean = face_model.mean_shape.detach().view(-1, 3).cpu().float()
        contour = landmark_set.contour.cpu()
        point_index = torch.nonzero(contour).flatten()
        if not contour.any() or contour.all():
            raise ValueError(f"landmark set {landmark_set.name}: contour paths need both contour and "
                             f"interior points, it has {int(contour.sum())} contour of {landmark_set.count}")
        points = landmark_set.to("cpu").points(mean[None])[0]
        centre = points[~contour].mean(0)
        band = band_edges * _median_edge(mean, face_model.triangles.cpu())
        reach = _rest_reach(face_model.camera)
        ids, barys, valids, outwards = [], [], [], []
        for index in point_index.tolist():
            outward = torch.zeros(3)
            outward[:2] = torch.nn.functional.normalize(points[index, :2] - centre[:2], dim=0)
            across = torch.tensor([-outward[1], outward[0], 0.0])
            in_slab = ((mean - points[index]) @ across).abs() <= band
            outside = (mean - centre) @ outward > 0
            not_beyond = reach(mean, centre, outward) <= reach(points[index:index + 1], centre, outward)
            vertices = torch.nonzero(in_slab & outside & not_beyond).flatten()
            vertex_ids = torch.cat([landmark_set.vertex_ids[index][None].cpu(), vertices[:, None].repeat(1, 3)])
            bary = torch.zeros(vertex_ids.shape[0], 3)
            bary[0] = landmark_set.barycentrics[index].cpu().float()
            bary[1:, 0] = 1.0
            ids.append(vertex_ids)
            barys.append(bary)
            outwards.append(outward)
        length = max(v.shape[0] for v in ids)
        valid = torch.zeros(len(ids), length, dtype=torch.bool)
        for row, vertex_ids in enumerate(ids):
            valid[row, :vertex_ids.shape[0]] = True
        pad = lambda rows, fill: torch.stack([torch.cat([r, fill(r).expand(length - r.shape[0], -1)]) for r in rows])
        device = face_model.mean_shape.device
        return cls(point_index=point_index.to(device), vertex_ids=pad(ids, lambda r: r[:1]).to(device),
                   barycentrics=pad(barys, lambda r: r[:1]).to(device), valid=valid.to(device),
                   outward=torch.stack(outwards).to(device))


def _median_edge(vertices: torch.Tensor, triangles: torch.Tensor) -> float:
    edges = torch.cat([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    return float((vertices[edges[:, 0]] - vertices[edges[:, 1]]).norm(dim=-1).median())


def _rest_reach(camera) -> Callable:
    """How far out a canonical point projects at the rest pose (no rotation, no shift),
    measured from the centre's projection along ``outward``: perspective, as the camera sees it."""
    def reach(points: torch.Tensor, centre: torch.Tensor, outward: torch.Tensor) -> torch.Tensor:
        image = points[:, :2] / (camera.distance - points[:, 2:3])
        origin = centre[:2] / (camera.distance - centre[2])
        return (image - origin) @ outward[:2]
    return reach


def slid_points(landmark_set: LandmarkSet, paths: ContourPaths | None, camera_points: torch.Tensor,
                rotation: torch.Tensor, camera) -> torch.Tensor:
    """The set's P points projected, contour points on the silhouette when ``paths`` is given.

    camera_points: (B, N, 3) posed vertices in camera space (``FaceGeometry.camera``);
    rotation: (B, 3, 3) the pose's rotation (turns the outward directions);
    camera: the ``recon.types.Camera`` of that space. Returns (B, P, 2) y-down pixels. The
    contour choice is made without gradient; the chosen points' positions carry it.
    """
    points = camera.project(landmark_set.points(camera_points))
    if paths is None:
        return points
    candidates_3d = paths.candidates(camera_points)
    candidates = camera.project(candidates_3d)
    anchors = candidates_3d[:, :, 0]
    # camera space is affine in world space: a world step d moves a point by
    # to_camera_space(d) - to_camera_space(0)
    step = paths.tips(torch.zeros_like(anchors), rotation)
    tips = anchors + camera.to_camera_space(step) - camera.to_camera_space(torch.zeros_like(step))
    chosen = paths.choose(candidates, camera.project(anchors), camera.project(tips))
    return points.index_copy(1, paths.point_index, paths.gather(candidates, chosen))

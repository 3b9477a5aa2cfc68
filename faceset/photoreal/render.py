"""A numpy triangle rasterizer, z-buffer, shadow maps and a skin shading model.

This is the photo generator's own renderer: it shares no code with ``recon.render`` or the
fitted model's SH shading, so a fit cannot reproduce its images exactly.

Image convention (as everywhere in faceset): x to the right, y down, pixel (row i, column j)
has its centre at (x=j, y=i). A triangle covers a pixel when the pixel centre lies inside it
(top-left fill rule is not needed for the photos; shared edges may be covered twice, and the
z-buffer keeps one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_BOX = 64        # triangles whose pixel box is wider than this are split over tiles


@dataclass
class Raster:
    """Per-pixel result of one rasterization (H, W).

    triangle (H, W) int64: the visible triangle, -1 where nothing; bary (H, W, 3) float64:
    perspective-correct barycentric weights of its 3 vertices (0 where nothing);
    depth (H, W) float64: depth of the visible surface (inf where nothing).
    """

    triangle: np.ndarray
    bary: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.triangle >= 0

    def gather(self, attributes: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-vertex attributes (V, C) at the covered pixels only: (flat pixel ids (P,),
        values (P, C)), row-major pixel ids."""
        pixels = np.flatnonzero(self.mask.reshape(-1))
        tri = self.triangle.reshape(-1)[pixels]
        bary = self.bary.reshape(-1, 3)[pixels]
        return pixels, np.einsum("pk,pkc->pc", bary, attributes[triangles[tri]])

    def interpolate(self, attributes: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """Per-vertex attributes (V, C) -> (H, W, C), zero where nothing is covered."""
        tri = np.where(self.mask, self.triangle, 0)
        corners = attributes[triangles[tri]]                      # (H, W, 3, C)
        out = (corners * self.bary[..., None]).sum(-2)
        return np.where(self.mask[..., None], out, 0.0)


def _candidates(xy: np.ndarray, triangles: np.ndarray, width: int, height: int):
    """Pixel candidates of every triangle's bounding box, bucketed by box size.

    Yields (triangle ids (T,), pixel x (T, k), pixel y (T, k)) with k = box area."""
    corners = xy[triangles]                                       # (F, 3, 2)
    lo = np.ceil(corners.min(1)).astype(np.int64)
    hi = np.floor(corners.max(1)).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    size = hi - lo + 1                                            # (F, 2)
    valid = (size > 0).all(1)
    side = np.maximum(size[:, 0], size[:, 1])
    for bucket in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, MAX_BOX):
        ids = np.flatnonzero(valid & (side <= bucket) & (side > _previous(bucket)))
        if len(ids):
            oy, ox = np.mgrid[0:bucket, 0:bucket]
            px = lo[ids, 0:1] + ox.reshape(1, -1)
            py = lo[ids, 1:2] + oy.reshape(1, -1)
            inside_box = (px <= hi[ids, 0:1]) & (py <= hi[ids, 1:2])
            yield ids, px, py, inside_box
    big = np.flatnonzero(valid & (side > MAX_BOX))
    for t in big:   # rare: huge triangles (test planes, close-ups), one at a time
        ys, xs = np.mgrid[lo[t, 1]:hi[t, 1] + 1, lo[t, 0]:hi[t, 0] + 1]
        yield np.array([t]), xs.reshape(1, -1), ys.reshape(1, -1), np.ones((1, xs.size), bool)


def _previous(bucket: int) -> int:
    order = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, MAX_BOX)
    return order[order.index(bucket) - 1]


def rasterize(xy: np.ndarray, depth: np.ndarray, triangles: np.ndarray, width: int, height: int,
              perspective: bool = True, cull_back: bool = False) -> Raster:
    """Z-buffered rasterization of a triangle mesh at pixel centres.

    xy: (V, 2) float screen positions in pixels (x right, y down, pixel centres at integers);
    depth: (V,) float positive distance along the view axis (any unit; smaller is nearer);
    triangles: (F, 3) int vertex ids; perspective: interpolate with 1/depth (a pinhole view)
    rather than linearly (an orthographic view); cull_back: drop triangles whose screen
    winding is clockwise in the y-up sense, i.e. counter-clockwise seen from the front
    (faceset meshes are counter-clockwise seen from outside, y up).
    Returns a ``Raster``.
    """
    xy = np.asarray(xy, np.float64)
    depth = np.asarray(depth, np.float64)
    triangles = np.asarray(triangles, np.int64)
    keep = (depth[triangles] > 0).all(1)
    a, b, c = (xy[triangles[:, k]] for k in range(3))
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    keep &= np.abs(area2) > 1e-12
    if cull_back:
        keep &= area2 < 0       # y down flips the winding: front faces have negative area
    tri_ids = np.flatnonzero(keep)
    pixel_all, depth_all, tri_all, bary_all = [], [], [], []
    for local, px, py, in_box in _candidates(xy, triangles[tri_ids], width, height):
        t = tri_ids[local]
        pa, pb, pc = (xy[triangles[t, k]][:, None] for k in range(3))
        # Edge functions: barycentric weights of the pixel centres in screen space.
        inv = 1.0 / area2[t][:, None]
        w0 = ((pb[..., 0] - px) * (pc[..., 1] - py) - (pb[..., 1] - py) * (pc[..., 0] - px)) * inv
        w1 = ((pc[..., 0] - px) * (pa[..., 1] - py) - (pc[..., 1] - py) * (pa[..., 0] - px)) * inv
        w2 = 1.0 - w0 - w1
        inside = in_box & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        rows, cols = np.nonzero(inside)
        if not len(rows):
            continue
        w = np.stack([w0[rows, cols], w1[rows, cols], w2[rows, cols]], 1)
        z = depth[triangles[t[rows]]]                             # (n, 3)
        if perspective:
            w = w / z
            inv_depth = w.sum(1)
            w = w / inv_depth[:, None]
            d = 1.0 / inv_depth
        else:
            d = (w * z).sum(1)
        pixel_all.append(py[rows, cols] * width + px[rows, cols])
        depth_all.append(d)
        tri_all.append(t[rows])
        bary_all.append(w)
    triangle = np.full(height * width, -1, np.int64)
    bary = np.zeros((height * width, 3))
    zbuf = np.full(height * width, np.inf)
    if pixel_all:
        pixel, d = np.concatenate(pixel_all), np.concatenate(depth_all)
        order = np.lexsort((d, pixel))                            # nearest first per pixel
        pixel, d = pixel[order], d[order]
        first = np.ones(len(pixel), bool)
        first[1:] = pixel[1:] != pixel[:-1]
        chosen = order[first]
        triangle[pixel[first]] = np.concatenate(tri_all)[chosen]
        bary[pixel[first]] = np.concatenate(bary_all)[chosen]
        zbuf[pixel[first]] = d[first]
    return Raster(triangle.reshape(height, width), bary.reshape(height, width, 3),
                  zbuf.reshape(height, width))


def light_basis(direction: np.ndarray) -> np.ndarray:
    """(3, 3) rows u, v, w: an orthonormal frame whose w points towards the light."""
    w = np.asarray(direction, np.float64)
    w = w / np.linalg.norm(w)
    helper = np.array([0.0, 1.0, 0.0]) if abs(w[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(helper, w)
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(w, u), w])


@dataclass
class ShadowMap:
    """Depth of the nearest surface seen from a directional light (orthographic).

    frame (3, 3): rows u, v, w (w towards the light); origin (2,) and scale: light-space
    (u, v) -> map pixel = (uv - origin) * scale; depth (S, S): ``far - w`` of the nearest
    surface (positive: ``far`` lies beyond every vertex), inf where nothing.
    """

    frame: np.ndarray
    origin: np.ndarray
    scale: float
    far: float
    depth: np.ndarray

    @classmethod
    def build(cls, vertices: np.ndarray, triangles: np.ndarray, direction: np.ndarray,
              size: int = 384) -> "ShadowMap":
        """vertices (V, 3) world points; direction (3,) towards the light."""
        frame = light_basis(direction)
        local = vertices @ frame.T
        lo, hi = local[:, :2].min(0), local[:, :2].max(0)
        span = float((hi - lo).max()) * 1.02 + 1e-9
        origin = lo - 0.01 * span
        scale = (size - 1) / span
        xy = (local[:, :2] - origin) * scale
        xy[:, 1] = (size - 1) - xy[:, 1]    # map rows grow downwards
        far = float(local[:, 2].max()) + 1.0
        raster = rasterize(xy, far - local[:, 2], triangles, size, size, perspective=False)
        return cls(frame, origin, scale, far, raster.depth)

    def lit(self, points: np.ndarray, bias: float, soft: int = 1) -> np.ndarray:
        """(..., 3) world points -> visibility in [0, 1] (percentage-closer filtering over a
        (2 soft + 1)^2 texel window). ``bias`` in world units keeps surfaces from shadowing
        themselves."""
        local = points.reshape(-1, 3) @ self.frame.T
        size = self.depth.shape[0]
        x = (local[:, 0] - self.origin[0]) * self.scale
        y = (size - 1) - (local[:, 1] - self.origin[1]) * self.scale
        d = self.far - local[:, 2]
        total = np.zeros(len(local))
        count = 0
        for dy in range(-soft, soft + 1):
            for dx in range(-soft, soft + 1):
                xi = np.clip(np.round(x + dx).astype(np.int64), 0, size - 1)
                yi = np.clip(np.round(y + dy).astype(np.int64), 0, size - 1)
                total += d <= self.depth[yi, xi] + bias
                count += 1
        return (total / count).reshape(points.shape[:-1])


@dataclass
class Light:
    """A directional light: direction (3,) towards the light (world), colour (3,) linear RGB,
    casts_shadow: whether it gets a shadow map."""

    direction: np.ndarray
    colour: np.ndarray
    casts_shadow: bool = True


def shade(points: np.ndarray, normals: np.ndarray, view_dirs: np.ndarray, albedo: np.ndarray,
          specular: np.ndarray, lights: list[Light], ambient: np.ndarray, occlusion: np.ndarray,
          visibility: list[np.ndarray], wrap: float = 0.0, shininess: float = 30.0) -> np.ndarray:
    """Linear-RGB radiance of surface points (any leading shape ``...``).

    points, normals (unit), view_dirs (unit, towards the eye): (..., 3); albedo (..., 3) in
    [0, 1]; specular (...,) Blinn-Phong strength; ambient (3,) colour; occlusion (...,) in
    [0, 1] ambient visibility; visibility: per light (...,) shadow factor in [0, 1];
    wrap: wrap-around diffuse (0 = Lambert: max(0, n.l); w > 0 lets light bleed past the
    terminator as (n.l + w) / (1 + w), like light scattered under the skin).
    """
    colour = albedo * ambient * occlusion[..., None]
    for light, visible in zip(lights, visibility):
        l_dir = np.asarray(light.direction, np.float64)
        l_dir = l_dir / np.linalg.norm(l_dir)
        n_dot_l = normals @ l_dir
        diffuse = np.clip((n_dot_l + wrap) / (1.0 + wrap), 0.0, None)
        half = view_dirs + l_dir
        half /= np.maximum(np.linalg.norm(half, axis=-1, keepdims=True), 1e-12)
        n_dot_h = np.clip((normals * half).sum(-1), 0.0, None)
        # energy-normalised Blinn-Phong lobe, only where the surface faces the light
        spec = specular * (shininess + 8) / (8 * np.pi) * n_dot_h ** shininess * (n_dot_l > 0)
        colour = colour + visible[..., None] * light.colour * (albedo * diffuse[..., None] + spec[..., None])
    return colour

"""Built-in PyTorch rasterizer: nvdiffrast's rasterize / interpolate / antialias on any device.

No Python loop over triangles or pixels. Rasterization runs in two passes:

1. Visibility (no autograd): every triangle's pixel bounding box gives candidate
   (triangle, pixel) pairs; a screen-space inside test and depth z/w are evaluated per pair
   and the nearest triangle per pixel is found by one `scatter_reduce("amin")` over int64 keys
   that pack the depth (order-preserving float bits, high 32 bits) above the triangle index
   (low 32 bits), so equal depths resolve to the lower triangle index. Work is chunked so
   that at most ``max_pairs`` candidates exist at a time.
2. Barycentrics (differentiable): for each covered pixel the winning triangle's
   perspective-correct barycentrics are recomputed from the clip-space vertices, so
   gradients reach the vertex positions as in nvdiffrast.

Clipping differs from nvdiffrast's true clipper in one documented way: a triangle with any
vertex at w <= 0 (at or behind the camera plane) is skipped entirely, and per pixel only
z/w in [-1, 1] is kept (near / far). Triangles fully outside the image cover nothing.
Degenerate (zero screen area) triangles cover nothing. Both windings are rasterized (no
culling), as in nvdiffrast. Coverage is watertight: the edge functions are evaluated so that
two triangles sharing an edge get exactly opposite values for it, so no pixel centre falls
between them; one exactly on the edge is claimed by both and resolved by depth, then by
the lower triangle index. (nvdiffrast snaps vertices to a 1/16-pixel grid first, so pixel
centres very close to an edge may pick the other triangle there.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .projection import ndc_to_pixel, pixel_to_ndc

_EMPTY_KEY = torch.iinfo(torch.int64).max
_ID_BITS = 32
_ID_MASK = (1 << _ID_BITS) - 1
DEFAULT_MAX_PAIRS = 1 << 21  # candidate (triangle, pixel) pairs alive at once (~130 B each, float32)
TRIANGLES_PER_PASS = 1 << 17  # (batch item, triangle) pairs set up together in the visibility pass


# --------------------------------------------------------------------------------------
# Rasterize


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] along dim 0 (index_select: far faster than advanced indexing on CPU)."""
    return values.index_select(0, index)


def gather_corners(values: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
    """Per-(batch, triangle) corner values: (B, V, C) and (F, 3) -> (B*F, 3, C).

    index_select on a flat index is much faster on CPU than advanced indexing values[:, tris].
    """
    batch, num_verts, channels = values.shape
    offsets = torch.arange(batch, device=tris.device)[:, None] * num_verts
    flat = (tris.reshape(1, -1) + offsets).reshape(-1)
    return values.reshape(-1, channels).index_select(0, flat).reshape(-1, 3, channels)


def _screen_vertices(clip_pos: torch.Tensor, tris: torch.Tensor, height: int, width: int):
    """Per-(batch, triangle) vertices: clip (B*F, 3, 4), pixel-space x, y (B*F, 3), usable mask."""
    corners = gather_corners(clip_pos, tris)                      # (B*F, 3, 4)
    w = corners[..., 3]
    in_front = w.amin(-1) > 0
    safe_w = torch.where(w > 0, w, torch.ones_like(w))
    px = ndc_to_pixel(corners[..., 0] / safe_w, width)
    py = ndc_to_pixel(corners[..., 1] / safe_w, height)
    # A sum is finite only if every term is: one pass instead of two isfinite().all().
    usable = in_front & torch.isfinite(px.sum(-1) + py.sum(-1))
    return corners, px, py, usable


def _pixel_boxes(px, py, usable, height: int, width: int):
    """Inclusive integer pixel bounding boxes (clamped to the image) and their pixel counts."""
    # Clamp in float first so that huge coordinates cannot overflow the integer cast.
    x_lo = torch.ceil(px.amin(-1).clamp(-1, width)).long().clamp(min=0)
    x_hi = torch.floor(px.amax(-1).clamp(-1, width)).long().clamp(max=width - 1)
    y_lo = torch.ceil(py.amin(-1).clamp(-1, height)).long().clamp(min=0)
    y_hi = torch.floor(py.amax(-1).clamp(-1, height)).long().clamp(max=height - 1)
    nx = (x_hi - x_lo + 1).clamp(min=0)
    ny = (y_hi - y_lo + 1).clamp(min=0)
    counts = torch.where(usable, nx * ny, torch.zeros_like(nx))
    return x_lo, y_lo, nx, counts


def _triangle_setup(corners, px, py):
    """Per-triangle data for the coverage test: (N, 10) and a (N,) non-degenerate mask.

    corners (N, 3, 4) clip space (all w > 0), px, py (N, 3) pixel coordinates. Columns:
    x0 x1 x2 y0 y1 y2 (pixels), z/w of the three vertices, and the sign of the screen area
    (+1 or -1: both windings are drawn).
    """
    x0, x1, x2 = px.unbind(-1)
    y0, y1, y2 = py.unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    valid = area != 0
    zw = corners[..., 2] / corners[..., 3]
    return torch.cat([px, py, zw, torch.sign(area)[:, None]], dim=1), valid


def _edge_functions(setup: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Edge functions (P, 3) of the pixel centres (x, y) (P,) against each triangle (P, 10).

    E_k is twice the signed area of (pixel, v[k+1], v[k+2]), computed from vertex
    coordinates relative to the pixel. Two triangles sharing an edge evaluate the same two
    products for it, in opposite order, so their values are exact negatives of each other:
    no pixel centre falls between them (watertight), and one exactly on the edge is
    claimed by both and resolved by depth.
    """
    dx = setup[:, 0:3] - x[:, None]
    dy = setup[:, 3:6] - y[:, None]
    nxt, prv = [1, 2, 0], [2, 0, 1]
    return dx[:, nxt] * dy[:, prv] - dy[:, nxt] * dx[:, prv]


def _sortable_depth_bits(depth: torch.Tensor) -> torch.Tensor:
    """float32 depth -> int64 whose integer order equals the float order (IEEE trick)."""
    bits = depth.to(torch.float32).contiguous().view(torch.int32).to(torch.int64)
    # Negative floats order backwards as integers: flip their magnitude bits.
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _chunk_bounds(counts: torch.Tensor, max_pairs: int) -> list[tuple[int, int]]:
    """Split items into consecutive runs whose candidate-pair totals stay under max_pairs."""
    totals = torch.cumsum(counts, 0)
    if totals.numel() == 0 or int(totals[-1]) == 0:
        return []
    boundaries = torch.div(totals - 1, max_pairs, rounding_mode="floor")
    change = torch.nonzero(boundaries[1:] != boundaries[:-1]).flatten() + 1
    starts = [0] + change.tolist()
    ends = change.tolist() + [counts.numel()]
    return list(zip(starts, ends))


def _candidate_pixels(local_counts: torch.Tensor, x_lo, y_lo, nx):
    """Expand boxes into candidate pairs: item (P,) into the chunk, pixel column and row (P,)."""
    total = int(local_counts.sum())
    item = torch.repeat_interleave(torch.arange(local_counts.numel(), device=local_counts.device),
                                   local_counts, output_size=total)
    first = torch.cumsum(local_counts, 0) - local_counts
    offset = torch.arange(total, device=local_counts.device) - _take(first, item)
    width_of = _take(nx, item)
    row_offset = torch.div(offset, width_of, rounding_mode="floor")
    col = _take(x_lo, item) + offset - row_offset * width_of
    row = _take(y_lo, item) + row_offset
    return item, col, row


def _scatter_chunk(keys_out, item_ids, setup, x_lo, y_lo, nx, counts, num_tris,
                   height: int, width: int) -> None:
    """Test the candidate pairs of one chunk of triangles and scatter-min them into keys_out.

    item_ids (N,): global (batch * F + triangle) index of each triangle of the chunk;
    setup (N, 10) from `_triangle_setup`, boxes and counts (N,) of the same triangles.
    """
    if int(counts.sum()) == 0:
        return
    item, col, row = _candidate_pixels(counts, x_lo, y_lo, nx)
    data = _take(setup, item)                                               # (P, 10)
    edges = _edge_functions(data, col.to(data.dtype), row.to(data.dtype)) * data[:, 9:10]
    inside = (edges >= 0).all(-1)
    keep = torch.nonzero(inside).flatten()
    item, col, row, edges, data = (_take(t, keep) for t in (item, col, row, edges, data))
    # z/w is affine in screen space: weight the vertices' z/w by the edge functions.
    depth = (edges * data[:, 6:9]).sum(-1) / edges.sum(-1)
    in_range = torch.nonzero((depth >= -1) & (depth <= 1)).flatten()
    item, col, row, depth = (_take(t, in_range) for t in (item, col, row, depth))
    global_item = _take(item_ids, item)
    batch = torch.div(global_item, num_tris, rounding_mode="floor")
    tri = global_item - batch * num_tris
    keys = (_sortable_depth_bits(depth) << _ID_BITS) | tri
    pixel = (batch * height + row) * width + col
    keys_out.scatter_reduce_(0, pixel, keys, reduce="amin")


def _visible_pass(keys, clip_pos, tris, height, width, max_pairs) -> None:
    """Scatter-min the nearest triangle keys of batch items clip_pos (b, V, 4) into keys."""
    num_tris = tris.shape[0]
    corners, px, py, usable = _screen_vertices(clip_pos, tris, height, width)
    x_lo, y_lo, nx, counts = _pixel_boxes(px, py, usable, height, width)
    # Most triangles of a dense mesh hold no pixel centre: set up planes for the rest only.
    active = torch.nonzero(counts > 0).flatten()
    setup, valid = _triangle_setup(*(_take(t, active) for t in (corners, px, py)))
    counts = torch.where(valid, _take(counts, active), torch.zeros_like(active))
    x_lo, y_lo, nx = (_take(t, active) for t in (x_lo, y_lo, nx))
    budget = max(int(max_pairs), height * width)
    for start, end in _chunk_bounds(counts, budget):
        part = slice(start, end)
        _scatter_chunk(keys, active[part], setup[part], x_lo[part], y_lo[part], nx[part],
                       counts[part], num_tris, height, width)


def _visible_triangles(clip_pos, tris, height, width, max_pairs, triangles_per_pass=None):
    """Nearest triangle per pixel: flat covered pixel indices (P,) and triangle ids (P,)."""
    batch, num_tris = clip_pos.shape[0], tris.shape[0]
    keys = torch.full((batch * height * width,), _EMPTY_KEY, dtype=torch.int64, device=clip_pos.device)
    if num_tris:
        # On CPU a few batch items per pass keep the per-triangle arrays cache-sized
        # (measured: 8 items one by one cost 2/3 of 8 at once); on a GPU one pass is best.
        per_pass = max(1, (triangles_per_pass or TRIANGLES_PER_PASS) // num_tris)
        if clip_pos.device.type == "cuda" and triangles_per_pass is None:
            per_pass = batch
        with torch.no_grad():
            for first in range(0, batch, per_pass):
                last = min(batch, first + per_pass)
                _visible_pass(keys[first * height * width:last * height * width],
                              clip_pos[first:last].detach(), tris, height, width, max_pairs)
    pixel = torch.nonzero(keys != _EMPTY_KEY).flatten()
    return pixel, _take(keys, pixel) & _ID_MASK


def perspective_barycentrics(corners: torch.Tensor, ndc_x: torch.Tensor, ndc_y: torch.Tensor):
    """Perspective-correct barycentrics of sample points, differentiable in ``corners``.

    corners: (P, 3, 4) clip-space triangle vertices; ndc_x, ndc_y: (P,) sample NDC.
    Returns (P, 3) weights lam (summing to 1) such that the clip-space point
    sum_k lam_k p_k projects onto the sample, i.e. sum_k lam_k (x_k - X w_k) = 0 and
    sum_k lam_k (y_k - Y w_k) = 0; and (P,) z/w of that point.
    """
    rx = corners[..., 0] - ndc_x[:, None] * corners[..., 3]
    ry = corners[..., 1] - ndc_y[:, None] * corners[..., 3]
    # Null vector of the 2x3 system: cross products of the other two vertices' rows.
    weights = torch.stack([rx[:, 1] * ry[:, 2] - rx[:, 2] * ry[:, 1],
                           rx[:, 2] * ry[:, 0] - rx[:, 0] * ry[:, 2],
                           rx[:, 0] * ry[:, 1] - rx[:, 1] * ry[:, 0]], dim=-1)
    lam = weights / weights.sum(-1, keepdim=True)
    depth = (lam * corners[..., 2]).sum(-1) / (lam * corners[..., 3]).sum(-1)
    return lam, depth


def rasterize(clip_pos: torch.Tensor, tris: torch.Tensor, resolution,
              max_pairs: int = DEFAULT_MAX_PAIRS,
              triangles_per_pass: Optional[int] = None) -> torch.Tensor:
    """Rasterize triangles (instance mode): see `recon.render.rasterize` for the contract
    (and the input checks, which run there, once for every backend).

    clip_pos (B, V, 4) float clip space; tris (F, 3) int; resolution (H, W).
    Returns rast (B, H, W, 4) of clip_pos's dtype: (u, v, z/w, triangle_id + 1), zeros on
    background. u, v are differentiable in clip_pos; z/w and the id are not (as nvdiffrast).
    max_pairs bounds the candidate (triangle, pixel) pairs alive at once (memory);
    triangles_per_pass how many (batch item, triangle) pairs are set up together (speed;
    default TRIANGLES_PER_PASS on CPU, the whole batch on CUDA).
    Neither changes the result. Triangle ids are exact in float32 up to 2^24 triangles.
    """
    height, width = (int(r) for r in resolution)
    tris = tris.to(device=clip_pos.device, dtype=torch.int64)
    batch, num_verts = clip_pos.shape[:2]
    pixel, tri = _visible_triangles(clip_pos, tris, height, width, max_pairs, triangles_per_pass)

    item = torch.div(pixel, height * width, rounding_mode="floor")
    within = pixel - item * height * width
    row = torch.div(within, width, rounding_mode="floor")
    col = within - row * width
    vertex_ids = _take(tris, tri) + item[:, None] * num_verts               # (P, 3)
    corners = _take(clip_pos.reshape(-1, 4), vertex_ids.reshape(-1)).reshape(-1, 3, 4)
    ndc_x = pixel_to_ndc(col.to(clip_pos.dtype), width)
    ndc_y = pixel_to_ndc(row.to(clip_pos.dtype), height)
    lam, depth = perspective_barycentrics(corners, ndc_x, ndc_y)
    values = torch.stack([lam[:, 0], lam[:, 1], depth.detach(), (tri + 1).to(clip_pos.dtype)], -1)
    rast = torch.zeros(batch * height * width, 4, dtype=clip_pos.dtype, device=clip_pos.device)
    rast = rast.index_put((pixel,), values)
    return rast.reshape(batch, height, width, 4)


# --------------------------------------------------------------------------------------
# Interpolate


def broadcast_attr(attr: torch.Tensor, batch: int) -> torch.Tensor:
    if attr.ndim == 2:
        attr = attr[None]
    if attr.ndim != 3:
        raise ValueError(f"attr must be (B, V, C) or (V, C), got {tuple(attr.shape)}")
    if attr.shape[0] == 1 and batch != 1:
        attr = attr.expand(batch, -1, -1)
    if attr.shape[0] != batch:
        raise ValueError(f"attr batch {attr.shape[0]} does not match rast batch {batch}")
    return attr


def covered_pixels(rast: torch.Tensor):
    """Flat indices (P,) of covered pixels, their batch item (P,) and triangle index (P,)."""
    batch, height, width = rast.shape[:3]
    ids = rast[..., 3].detach().reshape(-1).round().long()
    pixel = torch.nonzero(ids > 0).flatten()
    item = torch.div(pixel, height * width, rounding_mode="floor")
    return pixel, item, _take(ids, pixel) - 1


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
    """Interpolate vertex attributes: see `recon.render.interpolate` for the contract.

    attr (B, V, C) or (V, C) float; rast (B, H, W, 4); tris (F, 3) int.
    Returns (B, H, W, C): u a0 + v a1 + (1 - u - v) a2 on covered pixels, 0 elsewhere.
    """
    batch, height, width = rast.shape[:3]
    attr = broadcast_attr(attr, batch)
    tris = tris.to(device=rast.device, dtype=torch.int64)
    pixel, item, tri = covered_pixels(rast)
    if tri.numel() and int(tri.max()) >= tris.shape[0]:
        raise ValueError(f"rast refers to triangle {int(tri.max())} but tris has {tris.shape[0]}")
    channels, num_verts = attr.shape[2], attr.shape[1]
    vertex_ids = (_take(tris, tri) + item[:, None] * num_verts).reshape(-1)
    corner_attr = _take(attr.reshape(-1, channels), vertex_ids).reshape(-1, 3, channels)
    uv = _take(rast.reshape(-1, 4), pixel)
    u, v = uv[:, 0:1], uv[:, 1:2]
    values = u * corner_attr[:, 0] + v * corner_attr[:, 1] + (1 - u - v) * corner_attr[:, 2]
    dtype = torch.promote_types(attr.dtype, rast.dtype)
    out = torch.zeros(batch * height * width, channels, dtype=dtype, device=rast.device)
    out = out.index_put((pixel,), values.to(dtype))
    return out.reshape(batch, height, width, channels)


# --------------------------------------------------------------------------------------
# Antialias


@dataclass(frozen=True)
class Topology:
    """Edge adjacency of a triangle list, as nvdiffrast's topology hash provides it.

    wing (F, 3) int64: for the edge opposite vertex k of triangle f, the vertex of the other
    triangle across that edge that is not on the edge; triangle f's own vertex k when the
    edge has no single partner (border edge, or shared by more than two triangles).
    """

    wing: torch.Tensor


def build_topology(tris: torch.Tensor) -> Topology:
    """Edge-adjacency (`Topology`) of tris (F, 3) int; vectorised (sort of edge keys)."""
    tris = tris.to(torch.int64)
    num_tris = tris.shape[0]
    own = tris.clone()
    if num_tris == 0:
        return Topology(wing=own)
    # Edge k of a triangle is the one opposite vertex k: (v[k+1], v[k+2]).
    a = tris[:, [1, 2, 0]].reshape(-1)
    b = tris[:, [2, 0, 1]].reshape(-1)
    scale = int(tris.max()) + 1
    keys = torch.minimum(a, b) * scale + torch.maximum(a, b)
    usable = (tris[:, [1, 2, 0]] != tris[:, [2, 0, 1]]).reshape(-1)
    keys = torch.where(usable, keys, -1 - torch.arange(keys.numel(), device=keys.device))
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    same_next = torch.zeros_like(sorted_keys, dtype=torch.bool)
    same_next[:-1] = sorted_keys[1:] == sorted_keys[:-1]
    same_prev = torch.zeros_like(same_next)
    same_prev[1:] = same_next[:-1]
    # Exactly two edges with the same key: a manifold pair (first has same_next only).
    first = same_next & ~same_prev
    first[:-1] &= ~same_next[1:]            # a third equal key makes the edge non-manifold
    pair_a, pair_b = order[first.nonzero().flatten()], order[first.nonzero().flatten() + 1]
    opposite = own.reshape(-1)              # the vertex of each edge's own triangle
    wing = own.reshape(-1).clone()
    wing[pair_a] = opposite[pair_b]
    wing[pair_b] = opposite[pair_a]
    return Topology(wing=wing.reshape(num_tris, 3))


def _neighbour_pairs(ids: torch.Tensor, down: bool):
    """Flat pixel index pairs (p0, p1) of right (or down) neighbours whose ids differ."""
    batch, height, width = ids.shape
    index = torch.arange(batch * height * width, device=ids.device).reshape(batch, height, width)
    if down:
        differ = ids[:, 1:, :] != ids[:, :-1, :]
        first = index[:, :-1, :][differ]
        return first, first + width
    differ = ids[:, :, 1:] != ids[:, :, :-1]
    first = index[:, :, :-1][differ]
    return first, first + 1


def _same_sign(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.signbit(a) == torch.signbit(b)


def _edge_crossings(corner_x, corner_y, wing_x, wing_y, ds, down: bool):
    """Silhouette edge crossing of the segment to the neighbour pixel (nvdiffrast's analysis).

    corner_x/y (P, 3): triangle vertices in pixel units relative to the reference pixel
    centre; wing_x/y (P, 3): the wing vertices likewise; ds (P,) +1 when the triangle belongs
    to the first pixel of the pair, -1 for the second. Returns the crossing distance dc (P,)
    from the triangle's pixel centre towards the other (1 = the other centre) and a (P,)
    mask of pairs where a steep-enough silhouette edge crosses within [-1/16, 1 + 1/16].
    """
    x, y = (corner_y, corner_x) if down else (corner_x, corner_y)
    wx, wy = (wing_y, wing_x) if down else (wing_x, wing_y)
    x0, x1, x2 = x.unbind(-1)
    y0, y1, y2 = y.unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    # Wing triangle k: vertex k replaced by the far vertex across edge k (orientation-free).
    nxt, prv = [1, 2, 0], [2, 0, 1]
    ex1, ey1, ex2, ey2 = x[:, nxt], y[:, nxt], x[:, prv], y[:, prv]
    wing_area = (ex1 - wx) * (ey2 - wy) - (ex2 - wx) * (ey1 - wy)
    silhouette = _same_sign(wing_area, area[:, None])
    dx, dy = ex2 - ex1, ey2 - ey1
    crosses = ~_same_sign(ey1, ey2)
    safe_dy = torch.where(crosses, dy, torch.ones_like(dy))
    dist = ds[:, None] * (ex1 * safe_dy - ey1 * dx) / safe_dy
    dist = torch.where(crosses, dist, torch.full_like(dist, -torch.inf))
    best = dist.detach().argmax(-1, keepdim=True)
    dc = dist.gather(1, best).squeeze(1)
    steep = (dy.abs() >= dx.abs()).gather(1, best).squeeze(1)
    ok = silhouette.gather(1, best).squeeze(1) & steep & (dc > -0.0625) & (dc < 1.0625)
    return dc, ok


def _antialias_direction(color_flat, rast_flat, clip_pos, tris, wing, height, width, down):
    """Blend contributions (target pixel (Q,), delta (Q, C)) for one neighbour direction."""
    ids = rast_flat[:, 3].detach().round().long()
    p0, p1 = _neighbour_pairs(ids.reshape(-1, height, width), down)
    if p0.numel() == 0:
        return p0, color_flat.new_zeros(0, color_flat.shape[1])
    t0, t1 = ids[p0], ids[p1]
    z0, z1 = rast_flat[p0, 2].detach(), rast_flat[p1, 2].detach()
    use_first = (t0 > 0) & ((t1 == 0) | (z0 < z1))
    tri = torch.where(use_first, t0, t1) - 1
    ref = torch.where(use_first, p0, p1)
    ds = torch.where(use_first, 1.0, -1.0).to(clip_pos.dtype)
    item = torch.div(ref, height * width, rounding_mode="floor")
    within = ref - item * height * width
    row = torch.div(within, width, rounding_mode="floor")
    col = within - row * width
    flat_pos = clip_pos.reshape(-1, 4)
    offset = item[:, None] * clip_pos.shape[1]
    corners = flat_pos[tris[tri] + offset]                                  # (Q, 3, 4)
    wings = flat_pos[wing[tri] + offset]
    cx, cy = _pixel_relative(corners, col, row, height, width)
    wx, wy = _pixel_relative(wings, col, row, height, width)
    dc, ok = _edge_crossings(cx, cy, wx, wy, ds, down)
    p0, p1, dc, ds = p0[ok], p1[ok], dc[ok], ds[ok]
    alpha = ds * (0.5 - dc.clamp(0.0, 1.0))
    target = torch.where(alpha > 0, p0, p1)
    delta = alpha[:, None] * (color_flat[p1] - color_flat[p0])
    return target, delta


def _pixel_relative(corners, col, row, height: int, width: int):
    """Vertex pixel coordinates relative to pixel centre (col, row): (Q, 3) x and y."""
    w = corners[..., 3]
    x = ndc_to_pixel(corners[..., 0] / w, width) - col.to(w.dtype)[:, None]
    y = ndc_to_pixel(corners[..., 1] / w, height) - row.to(w.dtype)[:, None]
    return x, y


def antialias(color: torch.Tensor, rast: torch.Tensor, clip_pos: torch.Tensor, tris: torch.Tensor,
              topology: Optional[Topology] = None) -> torch.Tensor:
    """Analytic silhouette antialiasing: see `recon.render.antialias` for the contract.

    color (B, H, W, C) float; rast (B, H, W, 4) from rasterize with the same clip_pos (B, V, 4)
    and tris (F, 3). Returns (B, H, W, C), differentiable in color and clip_pos.
    """
    tris = tris.to(device=rast.device, dtype=torch.int64)
    topology = topology or build_topology(tris)
    batch, height, width, channels = color.shape
    color_flat = color.reshape(-1, channels)
    rast_flat = rast.reshape(-1, 4)
    out = color_flat
    for down in (False, True):
        target, delta = _antialias_direction(color_flat, rast_flat, clip_pos, tris,
                                              topology.wing.to(rast.device), height, width, down)
        out = out.index_add(0, target, delta.to(out.dtype))
    return out.reshape(batch, height, width, channels)

"""Reconstruction shared by encoder and decoder: canvas pixels -> points, colour transfer and mapping.

The encoder rebuilds the cloud exactly as the decoder will (from the decoded videos), so colour is
transferred onto the geometry the decoder will really see and ``FrameCode.recon`` equals the
decoder's output. Point order: occupied canvas pixels in raster order, per pixel its near point,
the filled depths and its far point, then the raw points.
"""

from __future__ import annotations

import numpy as np
from imcodec.jit import njit

from imcodec.vpcc.grid import hash_build, hash_find, pack_keys
from imcodec.vpcc.metadata import FrameMeta
from imcodec.vpcc.packing import BLOCK

# BT.709 (full range), as pc_error's colour PSNR
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB


def occupied_pixels(meta: FrameMeta, occ: np.ndarray, owner: np.ndarray, b0: int):
    """Occupied canvas pixels with their patch: (ys, xs, patch) (K,) int64 each, raster order.

    occ: (H/b0, W/b0) cell map; owner: (H/16, W/16) patch index or -1 (blocks without an owner are
    skipped).
    """
    cy, cx = np.nonzero(occ)
    if len(cy) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e
    oy, ox = np.divmod(np.arange(b0 * b0, dtype=np.int64), b0)
    ys = (cy[:, None] * b0 + oy[None, :]).ravel()
    xs = (cx[:, None] * b0 + ox[None, :]).ravel()
    order = np.argsort(ys * meta.width + xs, kind="stable")
    ys, xs = ys[order], xs[order]
    patch = owner[ys // BLOCK, xs // BLOCK]
    keep = patch >= 0
    return ys[keep], xs[keep], patch[keep]


def local_coords(meta: FrameMeta, ys: np.ndarray, xs: np.ndarray, patch: np.ndarray):
    """Patch-local pixel coordinates (lu, lv) of canvas pixels (inverse of the patch orientation)."""
    o = meta.orient[patch]
    bw, bh = meta.bw[patch], meta.bh[patch]
    x = xs - meta.bu[patch] * BLOCK
    y = ys - meta.bv[patch] * BLOCK
    swap = (o & 1) != 0
    lu = np.where(swap, y, x)
    lv = np.where(swap, x, y)
    lu = np.where((o & 2) != 0, bw * BLOCK - 1 - lu, lu)
    lv = np.where((o & 4) != 0, bh * BLOCK - 1 - lv, lv)
    return lu, lv


def canvas_coords(meta: FrameMeta, patch: np.ndarray, lu: np.ndarray, lv: np.ndarray):
    """Canvas pixel (ys, xs) of patch-local pixels (lu, lv): the patch orientation applied."""
    o = meta.orient[patch]
    bw, bh = meta.bw[patch], meta.bh[patch]
    lu = np.where((o & 2) != 0, bw * BLOCK - 1 - lu, lu)
    lv = np.where((o & 4) != 0, bh * BLOCK - 1 - lv, lv)
    swap = (o & 1) != 0
    x = np.where(swap, lv, lu)
    y = np.where(swap, lu, lv)
    return y + meta.bv[patch] * BLOCK, x + meta.bu[patch] * BLOCK


def to_points(plane: np.ndarray, u: np.ndarray, v: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """(K, 3) int64 points from plane, tangent coordinates and the coordinate along the axis."""
    a = plane % 3
    out = np.empty((len(plane), 3), dtype=np.int64)
    rows = np.arange(len(plane))
    out[rows, a] = coord
    out[rows, (a + 1) % 3] = u
    out[rows, (a + 2) % 3] = v
    return out


def rebuild_geometry(meta: FrameMeta, ys, xs, patch, d0img: np.ndarray, d1img: np.ndarray | None,
                     thickness: int, fill: bool):
    """Points of the occupied pixels from the decoded depth images.

    d0img/d1img: (H, W) integer depth images (relative to each patch's offset); d1img None for a
    single layer. Per pixel the points at D0, at D1 = clip(d1, D0, D0 + thickness) when it differs,
    and with ``fill`` at every depth between, in that order, pixels in raster order.
    Returns (points (K, 3) int64 relative to the origin, pixel index (K,) into ys/xs, slot (K,)
    uint8: 0 for points coloured from the near texture T0, 1 from the far texture T1 (D1 and the
    far half of the filled depths)).
    """
    lu, lv = local_coords(meta, ys, xs, patch)
    n = len(ys)
    d0 = d0img[ys, xs].astype(np.int64)
    if d1img is None:
        rep = np.arange(n, dtype=np.int64)
        depth = d0
        slot = np.zeros(n, dtype=np.uint8)
    else:
        d1 = np.clip(d1img[ys, xs].astype(np.int64), d0, d0 + thickness)
        gap = d1 - d0
        steps = gap + 1 if fill else 1 + (gap > 0)
        rep = np.repeat(np.arange(n, dtype=np.int64), steps)
        k = np.arange(len(rep), dtype=np.int64) - np.repeat(np.cumsum(steps) - steps, steps)
        if fill:
            depth = d0[rep] + k
            slot = (2 * k > gap[rep]).astype(np.uint8)
        else:
            depth = np.where(k == 0, d0[rep], d1[rep])
            slot = (k > 0).astype(np.uint8)
    q = patch[rep]
    plane = meta.plane[q]
    s = np.where(plane < 3, -1, 1)
    pts = to_points(plane, meta.u1[q] + lu[rep], meta.v1[q] + lv[rep], meta.dpos[q] + s * depth)
    return pts, rep, slot


# ----------------------------------------------------------------------------------------- colour

def transfer_colors(src_pts: np.ndarray, src_cols: np.ndarray, dst_pts: np.ndarray,
                    workers: int = 1) -> np.ndarray:
    """Colours for ``dst_pts`` from the coloured cloud (src_pts, src_cols), minimising both-way error.

    Each destination point gets the mean of its nearest source point's colour and the colours of all
    source points whose nearest destination point it is (the optimum of the symmetric colour error
    pc_error measures). Points: (N, 3) integer-valued / (K, 3); colours (N, 3). Nearest neighbours at
    distance 0 come from a hash of the integer positions, the others from k-d trees.
    Returns (K, 3) float64.
    """
    from scipy.spatial import cKDTree

    if len(dst_pts) == 0:
        return np.zeros((0, 3))
    src = np.asarray(src_pts, dtype=np.int64)
    dstf = np.asarray(dst_pts, dtype=np.float64)
    dst = np.rint(dstf).astype(np.int64)
    cols = np.asarray(src_cols, dtype=np.float64)
    lo = np.minimum(src.min(axis=0), dst.min(axis=0))
    dkeys = pack_keys(dst - lo)
    dkeys[np.any(dst != dstf, axis=1)] = -1  # off-grid (smoothed) points: k-d tree only
    fwd, bwd = _exact_matches(pack_keys(src - lo), dkeys)
    miss = np.flatnonzero(fwd < 0)
    if len(miss):
        fwd[miss] = cKDTree(src).query(dstf[miss], k=1, workers=workers)[1]
    miss = np.flatnonzero(bwd < 0)
    if len(miss):
        bwd[miss] = cKDTree(dstf).query(src[miss], k=1, workers=workers)[1]
    acc = cols[fwd].copy()
    cnt = np.ones(len(dst))
    for c in range(3):
        acc[:, c] += np.bincount(bwd, weights=cols[:, c], minlength=len(dst))
    cnt += np.bincount(bwd, minlength=len(dst))
    return acc / cnt[:, None]


@njit(cache=True)
def _exact_matches(src_keys, dst_keys):
    """fwd (K,): index of the source point at each destination position or -1; bwd (N,): likewise
    for source points (a repeated destination position maps to one of its copies). Negative
    destination keys mark points that match nothing."""
    tk, tv = hash_build(src_keys)
    fwd = np.empty(dst_keys.shape[0], dtype=np.int64)
    for i in range(dst_keys.shape[0]):
        fwd[i] = hash_find(tk, tv, dst_keys[i]) if dst_keys[i] >= 0 else -1
    dk, dv = hash_build(dst_keys)
    bwd = np.empty(src_keys.shape[0], dtype=np.int64)
    for j in range(src_keys.shape[0]):
        bwd[j] = hash_find(dk, dv, src_keys[j])
    return fwd, bwd


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB (0..255) -> (..., 3) full-range BT.709 Y, Cb, Cr as float64."""
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) / (2.0 * (1.0 - _KB)) + 128.0
    cr = (r - y) / (2.0 * (1.0 - _KR)) + 128.0
    return np.stack([y, cb, cr], axis=-1)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`: (..., 3) float64 RGB (not rounded or clipped)."""
    ycc = np.asarray(ycc, dtype=np.float64)
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128.0, ycc[..., 2] - 128.0
    r = y + 2.0 * (1.0 - _KR) * cr
    b = y + 2.0 * (1.0 - _KB) * cb
    g = (y - _KR * r - _KB * b) / _KG
    return np.stack([r, g, b], axis=-1)


def to_yuv420(ycc: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded (H, W, 3) YCbCr float -> 8-bit planes Y (H, W), Cb, Cr (H/2, W/2).

    Chroma of a 2x2 block is the mean over its occupied pixels (``mask`` (H, W) bool), or over all four
    when none is occupied.
    """
    h, w = mask.shape
    y = np.clip(np.rint(ycc[:, :, 0]), 0, 255).astype(np.uint8)
    m = mask.reshape(h // 2, 2, w // 2, 2).astype(np.float64)
    cnt = m.sum(axis=(1, 3))
    planes = []
    for c in (1, 2):
        blk = ycc[:, :, c].reshape(h // 2, 2, w // 2, 2)
        occ_mean = (blk * m).sum(axis=(1, 3)) / np.maximum(cnt, 1.0)
        all_mean = blk.mean(axis=(1, 3))
        planes.append(np.clip(np.rint(np.where(cnt > 0, occ_mean, all_mean)), 0, 255).astype(np.uint8))
    return y, planes[0], planes[1]


def sample_yuv420(y: np.ndarray, u: np.ndarray, v: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(K, 3) uint8 RGB of the decoded planes at pixels (ys, xs); chroma taken from its 2x2 block."""
    ycc = np.stack([y[ys, xs], u[ys // 2, xs // 2], v[ys // 2, xs // 2]], axis=1).astype(np.float64)
    return np.clip(np.rint(ycbcr_to_rgb(ycc)), 0, 255).astype(np.uint8)


def raw_pixel_positions(count: int, width: int, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels holding the colours of ``count`` raw points below row ``top``: 16x16 blocks in raster
    order, each filled in raster order. Returns (ys, xs) (count,) int64."""
    j = np.arange(count, dtype=np.int64)
    blk, within = np.divmod(j, BLOCK * BLOCK)
    by, bx = np.divmod(blk, width // BLOCK)
    wy, wx = np.divmod(within, BLOCK)
    return top + by * BLOCK + wy, bx * BLOCK + wx


def raw_rows(count: int, width: int) -> int:
    """Height in pixels (a multiple of 16) of the raw-colour area for ``count`` points."""
    per_row = (width // BLOCK) * BLOCK * BLOCK
    return int(-(-count // per_row)) * BLOCK


# ------------------------------------------------------------------------------- whole frames

def frame_geometry(meta: FrameMeta, occ: np.ndarray, owner: np.ndarray, sp, geo_frames: list,
                   raw: np.ndarray):
    """All decoded points of a frame, relative to the origin, and where their colours live.

    sp: the stream's :class:`~imcodec.vpcc.config.StreamParams`; geo_frames: decoded depth video
    frames (plane tuples; 1 or 2 layers); raw: (R, 3) int64. Returns (points (K+R, 3): int64, or
    float64 after smoothing, ys, xs (pixels of the K patch points), slot (K,) uint8).
    """
    if meta.count == 0:
        e = np.zeros(0, dtype=np.int64)
        return np.asarray(raw, dtype=np.int64).reshape(-1, 3), e, e, np.zeros(0, dtype=np.uint8)
    ys, xs, patch = occupied_pixels(meta, occ, owner, sp.b0)
    d1 = geo_frames[1][0] if len(geo_frames) > 1 else None
    pts, pix, slot = rebuild_geometry(meta, ys, xs, patch, geo_frames[0][0], d1, sp.thickness, sp.fill)
    if sp.smooth_radius:
        from imcodec.vpcc.smoothing import boundary_mask, smooth_points

        sel = (np.ones(len(pts), dtype=bool) if sp.smooth_all
               else boundary_mask(ys[pix], xs[pix], patch[pix], meta.height, meta.width))
        pts = smooth_points(pts, sel, sp.smooth_radius, sp.smooth_weight16 / 16.0)
    return np.concatenate([pts, raw]), ys[pix], xs[pix], slot


def frame_colors(meta: FrameMeta, ys: np.ndarray, xs: np.ndarray, slot: np.ndarray, n_raw: int,
                 attr_frames: list) -> np.ndarray:
    """(K+R, 3) uint8 colours of a frame's points from the decoded attribute video (YUV 4:2:0).

    Slot-0 points read frame 1 (T0), slot-1 points frame 2 (T1) when there is one, raw points their
    pixels in the raw-colour area below the geometry canvas of frame 1.
    """
    t0 = attr_frames[0]
    t1 = attr_frames[1] if len(attr_frames) > 1 else t0
    k = len(slot)
    out = np.empty((k + n_raw, 3), dtype=np.uint8)
    near = slot == 0
    out[:k][near] = sample_yuv420(*t0, ys[near], xs[near])
    out[:k][~near] = sample_yuv420(*t1, ys[~near], xs[~near])
    if n_raw:
        ry, rx = raw_pixel_positions(n_raw, meta.width, meta.height)
        out[k:] = sample_yuv420(*t0, ry, rx)
    return out

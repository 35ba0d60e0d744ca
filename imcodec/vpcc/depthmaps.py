"""Encoder-side depth images: patch depths, depths for the extra pixels of occupancy cells, padding.

With occupancy precision B0 > 1 the decoder rebuilds a point at every pixel of an occupied B0 x B0
cell, also at the pixels no patch point projects to ("extra" pixels). Their depth is free for the
encoder to choose, so for each extra pixel we look along its projection line for an input point near
the depth the surrounding pixels suggest (average dilation) and use that point's depth: the extra
point then lands on the real surface instead of adding error. Far-layer depths follow the normal D1
rule on that line. Pixels outside the occupied cells are padded (push-pull or dilation).
"""

from __future__ import annotations

import numpy as np
from imcodec.jit import njit

from imcodec.vpcc.grid import hash_build, hash_find
from imcodec.vpcc.metadata import FrameMeta
from imcodec.vpcc.padding import pad_dilate, push_pull
from imcodec.vpcc.reconstruct import local_coords

SEARCH = 8  # depth search radius around the dilated value for extra pixels


def depth_images(meta: FrameMeta, py, px, pix_patch, d0, d1, occ_cells, owner, b0: int,
                 rel_coords: np.ndarray, layers: int, thickness: int, max_depth: int,
                 padding: str = "push_pull") -> list[np.ndarray]:
    """Padded depth images, one (H, W) float64 per layer.

    py, px, pix_patch, d0, d1: (M,) int64 canvas position, patch and relative depths of the patch
    pixels; occ_cells: decoded (H/b0, W/b0) map; owner: (H/16, W/16) block owners;
    rel_coords: (N, 3) int64 input points relative to the origin (for extra-pixel depths).
    """
    h, w = meta.height, meta.width
    exact = np.zeros((h, w), dtype=bool)
    exact[py, px] = True
    cells = np.repeat(np.repeat(occ_cells.astype(bool), b0, 0), b0, 1)
    extra_y, extra_x = np.nonzero(cells & ~exact)
    img0 = np.zeros((h, w))
    img0[py, px] = d0
    img1 = np.zeros((h, w))
    img1[py, px] = d1
    if len(extra_y):
        guess = pad_dilate(img0, exact)[extra_y, extra_x]
        patch = owner[extra_y // 16, extra_x // 16]
        lu, lv = local_coords(meta, extra_y, extra_x, patch)
        keys = (rel_coords[:, 0] << 42) | (rel_coords[:, 1] << 21) | rel_coords[:, 2]
        tk, tv = hash_build(np.ascontiguousarray(keys))
        plane, u, v = meta.plane[patch], meta.u1[patch] + lu, meta.v1[patch] + lv
        e0, e1, lost = _extra_depths(tk, tv, plane, u, v, meta.dpos[patch],
                                     np.rint(guess).astype(np.int64), thickness, max_depth)
        if lost.any():
            _far_search(rel_coords, plane[lost], u[lost], v[lost], meta.dpos[patch][lost], e0, e1, lost,
                        max_depth)
        img0[extra_y, extra_x] = e0
        img1[extra_y, extra_x] = e1
    pad = push_pull if padding == "push_pull" else pad_dilate
    return [pad(img, cells) for img in (img0, img1)[:layers]]


WIDE = 48  # depth search radius (both ways) for extra pixels with no input point nearby


def _far_search(rel_coords, plane, u, v, dpos, e0, e1, lost, max_depth, chunk: int = 16384):
    """For extra pixels with no input point within one step of their line near the guess: the depth
    within +-WIDE of it whose point is nearest to any input point (k-d tree). Updates e0/e1 in place."""
    from scipy.spatial import cKDTree

    tree = cKDTree(rel_coords)
    idx = np.flatnonzero(lost)
    steps = np.arange(-WIDE, WIDE + 1)
    for lo in range(0, len(idx), chunk):
        sel = slice(lo, lo + chunk)
        ids = idx[sel]
        pl, uu, vv, dp = plane[sel], u[sel], v[sel], dpos[sel]
        depth = np.clip(e0[ids][:, None] + steps[None, :], 0, max_depth)
        s = np.where(pl < 3, -1, 1)[:, None]
        a = (pl % 3)[:, None]
        pts = np.empty(depth.shape + (3,), dtype=np.float64)
        rows = np.broadcast_to(np.arange(len(ids))[:, None], depth.shape)
        cols = np.broadcast_to(np.arange(depth.shape[1])[None, :], depth.shape)
        pts[rows, cols, np.broadcast_to(a, depth.shape)] = dp[:, None] + s * depth
        pts[rows, cols, np.broadcast_to((a + 1) % 3, depth.shape)] = uu[:, None]
        pts[rows, cols, np.broadcast_to((a + 2) % 3, depth.shape)] = vv[:, None]
        dist, _ = tree.query(pts.reshape(-1, 3), k=1)
        dist = dist.reshape(depth.shape) + 1e-6 * np.abs(steps)[None, :]  # ties: nearest to the guess
        best = depth[np.arange(len(ids)), np.argmin(dist, axis=1)]
        e0[ids] = best
        e1[ids] = best


@njit(cache=True)
def _extra_depths(tk, tv, plane, u, v, dpos, guess, thickness, max_depth):
    """Depths of extra pixels: (e0, e1, lost) with lost True where no input point was within one
    step of the line near the guess (those get the guess and are searched wider by the caller)."""
    n = plane.shape[0]
    e0 = np.empty(n, dtype=np.int64)
    e1 = np.empty(n, dtype=np.int64)
    lost = np.zeros(n, dtype=np.bool_)
    lim = (1 << 21) - 1
    for i in range(n):
        a = plane[i] % 3
        s = -1 if plane[i] < 3 else 1
        g = min(max(guess[i], 0), max_depth)
        best = -1
        if 0 <= u[i] <= lim and 0 <= v[i] <= lim:
            for r in range(SEARCH + 1):
                for d in (g - r, g + r):
                    if best >= 0 or d < 0 or d > max_depth:
                        continue
                    if _has_point(tk, tv, a, u[i], v[i], dpos[i] + s * d, lim):
                        best = d
        if best < 0:
            # no input point on the line: the depth whose point is nearest to one (26-neighbours)
            best = g
            bd = 4
            for r in range(SEARCH + 1):
                for d in (g - r, g + r):
                    if d < 0 or d > max_depth:
                        continue
                    dist = _near_dist2(tk, tv, a, u[i], v[i], dpos[i] + s * d, lim, bd)
                    if dist < bd:
                        bd = dist
                        best = d
            e0[i] = best
            e1[i] = best
            lost[i] = bd >= 4
            continue
        far = best
        for d in range(best + 1, min(best + thickness, max_depth) + 1):
            if _has_point(tk, tv, a, u[i], v[i], dpos[i] + s * d, lim):
                far = d
        e0[i] = best
        e1[i] = far
    return e0, e1, lost


@njit(cache=True)
def _has_point(tk, tv, a, u, v, c, lim):
    if c < 0 or c > lim:
        return False
    x = np.empty(3, dtype=np.int64)
    x[a] = c
    x[(a + 1) % 3] = u
    x[(a + 2) % 3] = v
    return hash_find(tk, tv, (x[0] << 42) | (x[1] << 21) | x[2]) >= 0


@njit(cache=True)
def _near_dist2(tk, tv, a, u, v, c, lim, bound):
    """Smallest squared distance (< bound, else bound) from the point to an input point 1 step away."""
    x = np.empty(3, dtype=np.int64)
    x[a] = c
    x[(a + 1) % 3] = u
    x[(a + 2) % 3] = v
    best = bound
    for dx in range(-1, 2):
        for dy in range(-1, 2):
            for dz in range(-1, 2):
                d2 = dx * dx + dy * dy + dz * dz
                if d2 >= best:
                    continue
                X, Y, Z = x[0] + dx, x[1] + dy, x[2] + dz
                if X < 0 or Y < 0 or Z < 0 or X > lim or Y > lim or Z > lim:
                    continue
                if hash_find(tk, tv, (X << 42) | (Y << 21) | Z) >= 0:
                    best = d2
    return best

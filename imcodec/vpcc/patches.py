"""Patch generation: connected components of segmented points projected to depth-map patches.

Plane p projects along axis ``a = p % 3`` onto the tangent axes ``(a + 1) % 3`` (u) and
``(a + 2) % 3`` (v). Depth is ``s * x_a`` with ``s = -1`` for the outward planes p < 3 and ``+1``
for p >= 3, so the near layer D0 (minimum depth per pixel) is the outermost surface seen from the
plane. Per patch: the depth offset (minimum D0), per pixel D0 and D1 (largest depth within the
surface thickness, TMC2 ``surfaceThickness``; with ``fill`` the decoder also rebuilds the depths in
between). Points a patch does not represent go back into patch generation (connected components of
the missed points only); what is left is coded as raw points (lossless) or, in lossy mode, raw only
where no patch point is within ``missed_dist2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from imcodec.jit import njit

from imcodec.vpcc.grid import components_26
from imcodec.vpcc.segment import (
    estimate_normals,
    estimate_normals_grid,
    initial_segmentation,
    refine_segmentation,
)

_BIG = np.int64(1) << 40


@dataclass
class PatchSet:
    """Patches of one frame (before packing).

    Per patch (P,) int64: ``plane`` 0..5, ``u1``/``v1`` 3D position of the box corner on the tangent
    axes, ``offset`` depth offset (minimum near-layer depth ``s * x_a``), ``su``/``sv`` box size in
    pixels. Per occupied pixel (M,) int64, grouped by patch: ``pix_patch``, ``pix_u``/``pix_v``
    local coordinates, ``pix_d0``/``pix_d1`` depths relative to the patch offset (d0 <= d1).
    ``raw``: (R, 3) int64 coordinates of the points left to raw coding.
    """

    plane: np.ndarray
    u1: np.ndarray
    v1: np.ndarray
    offset: np.ndarray
    su: np.ndarray
    sv: np.ndarray
    pix_patch: np.ndarray
    pix_u: np.ndarray
    pix_v: np.ndarray
    pix_d0: np.ndarray
    pix_d1: np.ndarray
    raw: np.ndarray

    @property
    def count(self) -> int:
        return int(len(self.plane))


@dataclass(frozen=True)
class PatchParams:
    """Patch-generation settings (TMC2 names in brackets).

    normal_k [nnNormalEstimation] (k nearest neighbours), or with normal_cell > 0 PCA over the
    (2 * normal_reach + 1)^3 cells of that side around each point's cell (no neighbour search),
    refine_lambda [lambdaRefineSegmentation], refine_iterations
    [iterationCountRefineSegmentation], refine_grid [voxelDimensionRefineSegmentation],
    refine_radius2 [searchRadiusRefineSegmentation], min_points [minPointCountPerCCPatchSegmentation],
    thickness [surfaceThickness], max_depth (largest relative depth the geometry video holds),
    missed_dist2 [maxAllowedDist2RawPointsDetection] (0: only exactly reconstructed points count as
    represented; then D1 ends the run of consecutive occupied depths above D0, so filling is exact),
    fill (the decoder adds the depths between D0 and D1 of each pixel), max_rounds
    (patch-generation passes over the missed points), keep_far_points (code points farther than
    missed_dist2 from every patch point as raw points; a cloud without any patch always goes raw).
    """

    normal_k: int = 16
    normal_cell: int = 0
    normal_reach: int = 1
    refine_lambda: float = 3.0
    refine_iterations: int = 10
    refine_grid: int = 4
    refine_radius2: float = 192.0
    min_points: int = 16
    thickness: int = 4
    max_depth: int = 255
    missed_dist2: int = 9
    max_rounds: int = 8
    keep_far_points: bool = True
    fill: bool = True
    workers: int = 1


def generate_patches(coords: np.ndarray, params: PatchParams) -> PatchSet:
    """Segment ``coords`` ((N, 3) distinct non-negative int64) into patches and raw points."""
    coords = np.ascontiguousarray(coords, dtype=np.int64)
    n = len(coords)
    if n == 0:
        return _empty_set(np.zeros((0, 3), dtype=np.int64))
    if params.normal_cell > 0:
        normals = estimate_normals_grid(coords, params.normal_cell, params.normal_reach)
    else:
        normals = estimate_normals(coords, params.normal_k, params.workers)
    labels = initial_segmentation(normals)
    labels = refine_segmentation(coords, normals, labels, params.refine_lambda,
                                 params.refine_iterations, params.refine_grid, params.refine_radius2)
    return patches_from_labels(coords, labels, params)


def patches_from_labels(coords: np.ndarray, labels: np.ndarray, params: PatchParams) -> PatchSet:
    """Patch generation from given plane labels ((N,) int64 in 0..5); see :func:`generate_patches`."""
    lossless = params.missed_dist2 <= 0
    todo = np.arange(len(coords), dtype=np.int64)
    parts = []
    for _ in range(max(1, params.max_rounds)):
        if len(todo) == 0:
            break
        sub = np.ascontiguousarray(coords[todo])
        sub_lab = np.ascontiguousarray(labels[todo])
        cc = components_26(sub, sub_lab)
        sizes = np.bincount(cc)
        keep = np.flatnonzero(sizes >= params.min_points)
        if len(keep) == 0:
            break
        order = np.argsort(cc, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)])[keep].astype(np.int64)
        counts = sizes[keep].astype(np.int64)
        built = _build_patches(sub, sub_lab, order, starts, counts, params.thickness,
                               params.max_depth, params.missed_dist2, lossless, params.fill,
                               lossless and params.fill)
        plane, u1, v1, off, su, sv, npp, pu, pv, d0, d1, covered = built
        if len(plane) == 0:
            break
        parts.append((plane, u1, v1, off, su, sv, npp, pu, pv, d0, d1))
        todo = todo[~covered]
    pset = _concat(parts, np.zeros((0, 3), dtype=np.int64))
    if len(todo) == 0:
        return pset
    left = coords[todo]
    if not lossless and pset.count:
        # points near some patch point are represented well enough: not coded
        from scipy.spatial import cKDTree

        rec = patch_points(pset, params.fill)
        dist, _ = cKDTree(rec).query(left.astype(np.float64), k=1, workers=max(1, params.workers))
        left = left[dist * dist > params.missed_dist2]
        if not params.keep_far_points:
            left = left[:0]
    pset.raw = np.ascontiguousarray(left, dtype=np.int64)
    return pset


def _empty_set(raw: np.ndarray) -> PatchSet:
    e = np.zeros(0, dtype=np.int64)
    return PatchSet(e, e, e, e, e, e, e, e, e, e, e, raw)


def _concat(parts, raw) -> PatchSet:
    if not parts:
        return _empty_set(raw)
    cols = [np.concatenate([p[i] for p in parts]) for i in range(11)]
    plane, u1, v1, off, su, sv, npp, pu, pv, d0, d1 = cols
    pix_patch = np.repeat(np.arange(len(plane), dtype=np.int64), npp)
    return PatchSet(plane, u1, v1, off, su, sv, pix_patch, pu, pv, d0, d1, raw)


@njit(cache=True)
def _build_patches(coords, labels, order, starts, counts, thickness, max_depth, dist2, lossless, fill,
                   contiguous):
    """Build one patch per component; returns patch fields, pixel fields and a covered mask."""
    n = coords.shape[0]
    npatch = starts.shape[0]
    plane = np.empty(npatch, dtype=np.int64)
    u1 = np.empty(npatch, dtype=np.int64)
    v1 = np.empty(npatch, dtype=np.int64)
    off = np.empty(npatch, dtype=np.int64)
    su = np.empty(npatch, dtype=np.int64)
    sv = np.empty(npatch, dtype=np.int64)
    npp = np.empty(npatch, dtype=np.int64)
    pu = np.empty(n, dtype=np.int64)
    pv = np.empty(n, dtype=np.int64)
    pd0 = np.empty(n, dtype=np.int64)
    pd1 = np.empty(n, dtype=np.int64)
    covered = np.zeros(n, dtype=np.bool_)
    m = 0
    k = 0
    for c in range(npatch):
        idx = order[starts[c]:starts[c] + counts[c]]
        p = labels[idx[0]]
        a = p % 3
        ua = (a + 1) % 3
        va = (a + 2) % 3
        s = -1 if p < 3 else 1
        umin = vmin = _BIG
        umax = vmax = -_BIG
        for i in idx:
            umin = min(umin, coords[i, ua])
            umax = max(umax, coords[i, ua])
            vmin = min(vmin, coords[i, va])
            vmax = max(vmax, coords[i, va])
        w = umax - umin + 1
        h = vmax - vmin + 1
        d0 = np.full(w * h, _BIG, dtype=np.int64)
        for i in idx:
            q = (coords[i, va] - vmin) * w + coords[i, ua] - umin
            d0[q] = min(d0[q], s * coords[i, a])
        dmin = _BIG
        for q in range(w * h):
            dmin = min(dmin, d0[q])
        for q in range(w * h):
            if d0[q] < _BIG and d0[q] - dmin > max_depth:
                d0[q] = _BIG  # out of the video's depth range: left for a later patch
        # depths present in [D0, D0 + thickness] as a bit mask per pixel
        bits = np.zeros(w * h, dtype=np.int64)
        for i in idx:
            q = (coords[i, va] - vmin) * w + coords[i, ua] - umin
            d = s * coords[i, a]
            if d0[q] < _BIG and d <= d0[q] + thickness and d - dmin <= max_depth:
                bits[q] |= np.int64(1) << (d - d0[q])
        d1 = d0.copy()
        for q in range(w * h):
            if d0[q] < _BIG:
                top = 0
                if contiguous:
                    while (bits[q] >> (top + 1)) & 1:
                        top += 1
                else:
                    for j in range(thickness + 1):
                        if (bits[q] >> j) & 1:
                            top = j
                d1[q] = d0[q] + top
        lu0 = lv0 = _BIG
        lu1 = lv1 = -_BIG
        for q in range(w * h):
            if d0[q] < _BIG:
                lv = q // w
                lu = q - lv * w
                lu0 = min(lu0, lu)
                lu1 = max(lu1, lu)
                lv0 = min(lv0, lv)
                lv1 = max(lv1, lv)
        if lu1 < 0:
            continue
        for i in idx:
            q = (coords[i, va] - vmin) * w + coords[i, ua] - umin
            if d0[q] == _BIG:
                continue
            d = s * coords[i, a]
            if fill and d <= d1[q]:
                e = 0
            else:
                e = min(d - d0[q], abs(d - d1[q]))
            if lossless:
                covered[i] = e == 0
            else:
                covered[i] = e * e <= dist2
        plane[k] = p
        u1[k] = umin + lu0
        v1[k] = vmin + lv0
        off[k] = dmin
        su[k] = lu1 - lu0 + 1
        sv[k] = lv1 - lv0 + 1
        cnt = 0
        for q in range(w * h):
            if d0[q] < _BIG:
                lv = q // w
                lu = q - lv * w
                pu[m] = lu - lu0
                pv[m] = lv - lv0
                pd0[m] = d0[q] - dmin
                pd1[m] = d1[q] - dmin
                m += 1
                cnt += 1
        npp[k] = cnt
        k += 1
    # ``covered`` is indexed by position in coords
    return (plane[:k], u1[:k], v1[:k], off[:k], su[:k], sv[:k], npp[:k],
            pu[:m], pv[:m], pd0[:m], pd1[:m], covered)


def patch_points(pset: PatchSet, fill: bool = True) -> np.ndarray:
    """(K, 3) int64 points the patches reconstruct from exact depths: D0, D1 and, with ``fill``, the
    depths between them."""
    pp = pset.pix_patch
    gap = pset.pix_d1 - pset.pix_d0
    if fill:
        steps = gap + 1
        rep = np.repeat(np.arange(len(pp)), steps)
        first = np.repeat(np.cumsum(steps) - steps, steps)
        depth = pset.pix_d0[rep] + (np.arange(len(rep)) - first)
    else:
        rep = np.concatenate([np.arange(len(pp)), np.flatnonzero(gap > 0)])
        depth = np.concatenate([pset.pix_d0, pset.pix_d1[gap > 0]])
    q = pp[rep]
    return _to_3d(pset.plane[q], pset.u1[q] + pset.pix_u[rep], pset.v1[q] + pset.pix_v[rep],
                  pset.offset[q] + depth)


def _to_3d(plane: np.ndarray, u: np.ndarray, v: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """3D points from plane, tangent coordinates and depth ``s * x_a`` (all (K,) int64)."""
    a = plane % 3
    s = np.where(plane < 3, -1, 1)
    out = np.empty((len(plane), 3), dtype=np.int64)
    rows = np.arange(len(plane))
    out[rows, a] = s * depth
    out[rows, (a + 1) % 3] = u
    out[rows, (a + 2) % 3] = v
    return out

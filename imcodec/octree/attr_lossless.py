"""Lossless colour coding: integer RAHT (weighted S-transform lifting) with prediction.

The same octree walk as :mod:`imcodec.octree.attr_lossy`, on integers: colours go to YCoCg-R
(reversible), each block of children is merged by the lifting steps ``d = vb - va``,
``L = va + floor(d·wb / (wa + wb))`` (so a node's value is a rounded weighted mean of its points),
the children's values are predicted from the already decoded neighbourhood with integer weights
(:func:`raht.predict_block_int`), the prediction goes through the same lifting, and the residuals
``d - d_pred`` are coded exactly. The decoder inverts the lifting from each node's value, so every
point's colour comes back bit-exact. Duplicate points under one leaf are merged by a chain of
lifting steps (weights j and 1) whose differences are coded without prediction.
"""

from __future__ import annotations

import numpy as np

from imcodec.jit import njit
from imcodec.octree.attr_coding import (
    EL_THRESHOLDS,
    ENCODE,
    code_residual,
    code_root_lossless,
    magnitude_class,
    sign_context,
)
from imcodec.octree.raht import block_forward_int, block_inverse_int, block_layout
from imcodec.octree.raht_predict import level_neighbours, predict_block_int, root_neighbours

RMAX = 4096  # |residual| of valid 8-bit YCoCg-R data is below 1024
OK, ERR_RANGE = 0, 1


@njit(cache=True)
def _luma_class(a):
    if a == 0:
        return 0
    if a <= 2:
        return 1
    if a <= 8:
        return 2
    return 3


@njit(cache=True)
def _bottom_up(node_code, node_weight, child_first, child_count, level_start, pvals, v):
    # leaves: lifting chain over duplicates; parents: block lifting of the children
    for leaf in range(level_start[1]):
        cf = child_first[leaf]
        for k in range(3):
            lo = pvals[cf, k]
            for j in range(1, child_count[leaf]):
                lo = lo + (pvals[cf + j, k] - lo) // (j + 1)
            v[leaf, k] = lo
    w8 = np.zeros(8, dtype=np.int64)
    v8 = np.zeros((8, 3), dtype=np.int64)
    ea = np.zeros(7, dtype=np.int64)
    eb = np.zeros(7, dtype=np.int64)
    ewa = np.zeros(7, dtype=np.int64)
    ewb = np.zeros(7, dtype=np.int64)
    ek = np.zeros(7, dtype=np.int64)
    d = np.zeros((7, 3), dtype=np.int64)
    for p in range(level_start[1], node_code.shape[0]):
        w8[:] = 0
        for c in range(child_first[p], child_first[p] + child_count[p]):
            j = node_code[c] & 7
            w8[j] = node_weight[c]
            for k in range(3):
                v8[j, k] = v[c, k]
        ne = block_layout(w8, ea, eb, ewa, ewb, ek)
        block_forward_int(v8, ne, ea, eb, ewa, ewb, ek, d)
        for k in range(3):
            v[p, k] = v8[0, k]


@njit(cache=True)
def lossless_pass(mode, node_code, node_weight, child_first, child_count, level_start,
                  pvals, st, arr, t, out_pts):
    """Code (mode ENCODE) or decode integer colours exactly; returns OK or ERR_RANGE.

    pvals: (N, 3) int64 YCoCg-R values of the points in tree order (read only when encoding);
    t: counters from :func:`attr_coding.new_lossless_models`; out_pts: (N, 3) int64 receives the
    decoded values in tree order.
    """
    n_nodes = node_code.shape[0]
    depth = level_start.shape[0] - 2
    v = np.zeros((n_nodes, 3), dtype=np.int64)
    if mode == ENCODE:
        _bottom_up(node_code, node_weight, child_first, child_count, level_start, pvals, v)
    root = level_start[depth]
    for k in range(3):
        v[root, k] = code_root_lossless(mode, st, arr, t, k, v[root, k])
        if abs(v[root, k]) > RMAX:
            return ERR_RANGE
    bmag = np.zeros((n_nodes, 3), dtype=np.int64)
    bcnt = np.zeros(n_nodes, dtype=np.int64)
    w8 = np.zeros(8, dtype=np.int64)
    v8 = np.zeros((8, 3), dtype=np.int64)
    p8 = np.zeros((8, 3), dtype=np.int64)
    ea = np.zeros(7, dtype=np.int64)
    eb = np.zeros(7, dtype=np.int64)
    ewa = np.zeros(7, dtype=np.int64)
    ewb = np.zeros(7, dtype=np.int64)
    ek = np.zeros(7, dtype=np.int64)
    d = np.zeros((7, 3), dtype=np.int64)
    dp = np.zeros((7, 3), dtype=np.int64)
    spread = np.zeros(3, dtype=np.int64)
    smag = np.zeros(3, dtype=np.float64)
    rk = np.zeros(3, dtype=np.int64)

    nbl = root_neighbours(root)
    for lev in range(depth, 0, -1):
        lo = level_start[lev]
        if lev < depth:
            nbl = level_neighbours(node_code, child_first, child_count, level_start[lev + 1],
                                   level_start[lev + 2], nbl, lo, level_start[lev + 1])
        for p in range(lo, level_start[lev + 1]):
            cf = child_first[p]
            cc = child_count[p]
            if cc == 1:
                for k in range(3):
                    v[cf, k] = v[p, k]
                continue
            nbr = nbl[p - lo]
            w8[:] = 0
            occ = 0
            for c in range(cf, cf + cc):
                j = node_code[c] & 7
                w8[j] = node_weight[c]
                occ |= 1 << j
                for k in range(3):
                    v8[j, k] = v[c, k]
            ne = block_layout(w8, ea, eb, ewa, ewb, ek)
            if mode == ENCODE:
                block_forward_int(v8, ne, ea, eb, ewa, ewb, ek, d)
            predict_block_int(v, node_code, child_first, child_count, p, nbr, occ, p8)
            spread[:] = 0
            for j in range(8):
                if (occ >> j) & 1:
                    for k in range(3):
                        spread[k] = max(spread[k], abs(p8[j, k] - v[p, k]))
            nc = block_forward_int(p8, ne, ea, eb, ewa, ewb, ek, dp)
            smag[:] = 0.0
            scnt = 0
            for i in range(1, 19):
                nn = nbr[i]
                if 0 <= nn < p:
                    scnt += bcnt[nn]
                    for k in range(3):
                        smag[k] += bmag[nn, k]
            for ci in range(nc):
                for k in range(3):
                    ex = 0.5 * spread[k] + 0.5 * abs(dp[ci, k])
                    if scnt > 0:
                        ex += smag[k] / scnt
                    ec = magnitude_class(ex, EL_THRESHOLDS)
                    lc = 0
                    if k > 0:
                        lc = _luma_class(abs(rk[0]) + (abs(rk[1]) if k == 2 else 0))
                    r = np.int64(0)
                    if mode == ENCODE:
                        r = d[ci, k] - dp[ci, k]
                    r = code_residual(mode, st, arr, t, r, k, ec, lc, sign_context(k, rk[0], rk[1]))
                    if abs(r) > RMAX:
                        return ERR_RANGE
                    rk[k] = r
                    d[ci, k] = dp[ci, k] + r
                    bmag[p, k] += abs(r)
            bcnt[p] = nc
            if mode != ENCODE:
                for k in range(3):
                    v8[0, k] = v[p, k]
                block_inverse_int(v8, ne, ea, eb, ewa, ewb, ek, d)
                for c in range(cf, cf + cc):
                    j = node_code[c] & 7
                    for k in range(3):
                        v[c, k] = v8[j, k]
    return _duplicates(mode, child_first, child_count, level_start, pvals, st, arr, t, v, out_pts)


@njit(cache=True)
def _duplicates(mode, child_first, child_count, level_start, pvals, st, arr, t, v, out_pts):
    dd = np.zeros((0, 3), dtype=np.int64)
    rk = np.zeros(3, dtype=np.int64)
    for leaf in range(level_start[1]):
        cf = child_first[leaf]
        cc = child_count[leaf]
        if cc == 1:
            for k in range(3):
                out_pts[cf, k] = v[leaf, k]
            continue
        if dd.shape[0] < cc:
            dd = np.zeros((cc, 3), dtype=np.int64)
        if mode == ENCODE:
            for k in range(3):
                lo = pvals[cf, k]
                for j in range(1, cc):
                    dd[j, k] = pvals[cf + j, k] - lo
                    lo = lo + dd[j, k] // (j + 1)
        for j in range(1, cc):
            for k in range(3):
                lc = 0 if k == 0 else _luma_class(abs(rk[0]) + (abs(rk[1]) if k == 2 else 0))
                r = code_residual(mode, st, arr, t, dd[j, k], k, 8, lc, sign_context(k, rk[0], rk[1]))
                if abs(r) > RMAX:
                    return ERR_RANGE
                rk[k] = r
                dd[j, k] = r
        for k in range(3):
            lo = v[leaf, k]
            for j in range(cc - 1, 0, -1):
                prev = lo - dd[j, k] // (j + 1)
                out_pts[cf + j, k] = prev + dd[j, k]
                lo = prev
            out_pts[cf, k] = lo
    return OK

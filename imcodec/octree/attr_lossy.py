"""Lossy colour coding: RAHT with transform-domain prediction, uniform quantisation, coding.

One kernel, :func:`lossy_pass`, serves encoder and decoder (``mode``): it walks the octree from the
root down, one level at a time in Morton order. For each node with several occupied children it

1. predicts the children's means from reconstructed data (:func:`raht.predict_block`: the node's
   and its neighbours' means one level up, and the already reconstructed child-level cells of
   earlier neighbours; G-PCC's intra RAHT prediction with "subnode" refinement);
2. transforms the prediction with the block's RAHT and subtracts its high-pass part from the
   block's true coefficients (encoder), quantising ``g·(d - d_pred) / step`` (the encoder picks
   each integer by rate-distortion cost under the live context models; not part of the format);
3. codes the integers (:mod:`attr_coding`) and reconstructs ``d = d_pred + q·step / g``;
4. inverts the block transform from the node's own reconstructed mean.

The root's mean is coded as its quantised DC (``sqrt(W)·mean / step``). Points sharing a position
(lossless geometry keeps duplicates) add one more stage under their leaf: a chain of RAHT
butterflies merging them one by one (weights j and 1), whose coefficients are quantised and coded
the same way without prediction, so each duplicate gets its own colour back.
Encoder and decoder run the same floating-point operations in the same order, so the decoder's
output equals the encoder's reconstruction exactly.
"""

from __future__ import annotations

import math

import numpy as np

from imcodec.jit import njit
from imcodec.octree.attr_coding import (
    E_THRESHOLDS,
    ENCODE,
    code_coef,
    code_root,
    magnitude_class,
    rdo_quantise,
    sign_context,
)
from imcodec.octree.raht import block_forward, block_inverse, block_layout
from imcodec.octree.raht_predict import level_neighbours, predict_block, root_neighbours

QMAX = 1 << 30  # larger decoded magnitudes can only come from a damaged stream
OK, ERR_RANGE = 0, 1


@njit(cache=True)
def _quantise(x, rnd):
    a = math.floor(abs(x) + rnd)
    return np.int64(-a if x < 0 else a)


@njit(cache=True)
def lossy_pass(mode, node_code, node_weight, child_first, child_count, level_start,
               mean, pvals, steps, rnd, lam, st, arr, t, rec_pts):
    """Code (mode ENCODE) or decode the colours of a tree; returns OK or ERR_RANGE.

    mean: (T, 3) float64 true node means and pvals: (N, 3) float64 true point values (YCbCr, tree
    order), read only when encoding; steps: (3,) float64 quantiser steps; rnd: encoder rounding
    offset (0.5 = nearest), or with lam > 0 the Lagrangian of the encoder's rate-distortion
    quantisation (:func:`attr_coding.rdo_quantise`), both encoder-only choices; st/arr: range
    coder state and buffer (encoding) or data (decoding);
    t: counters from :func:`attr_coding.new_lossy_models`. rec_pts: (N, 3) float64, receives the
    reconstructed values of the points in tree order.
    """
    n_nodes = node_code.shape[0]
    depth = level_start.shape[0] - 2
    rec = np.zeros((n_nodes, 3), dtype=np.float64)
    bmag = np.zeros((n_nodes, 3), dtype=np.float64)  # sum of |residual| (mean domain) per block
    bcnt = np.zeros(n_nodes, dtype=np.int64)  # coefficients per block
    root = level_start[depth]
    sw = math.sqrt(float(node_weight[root]))
    for k in range(3):
        q = np.int64(0)
        if mode == ENCODE:
            q = _quantise(mean[root, k] * sw / steps[k], 0.5)
        q = code_root(mode, st, arr, t, k, q)
        if abs(q) > QMAX:
            return ERR_RANGE
        rec[root, k] = q * steps[k] / sw

    w8 = np.zeros(8, dtype=np.int64)
    m8 = np.zeros((8, 3), dtype=np.float64)
    p8 = np.zeros((8, 3), dtype=np.float64)
    ea = np.zeros(7, dtype=np.int64)
    eb = np.zeros(7, dtype=np.int64)
    ewa = np.zeros(7, dtype=np.int64)
    ewb = np.zeros(7, dtype=np.int64)
    ek = np.zeros(7, dtype=np.int64)
    d = np.zeros((7, 3), dtype=np.float64)
    dp = np.zeros((7, 3), dtype=np.float64)
    spread = np.zeros(3, dtype=np.float64)
    smag = np.zeros(3, dtype=np.float64)
    qk = np.zeros(3, dtype=np.int64)

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
                    rec[cf, k] = rec[p, k]
                continue
            nbr = nbl[p - lo]
            w8[:] = 0
            occ = 0
            for c in range(cf, cf + cc):
                j = node_code[c] & 7
                w8[j] = node_weight[c]
                occ |= 1 << j
                if mode == ENCODE:
                    for k in range(3):
                        m8[j, k] = mean[c, k]
            ne = block_layout(w8, ea, eb, ewa, ewb, ek)
            if mode == ENCODE:
                block_forward(m8, ne, ea, eb, ewa, ewb, ek, d)
            predict_block(rec, node_code, child_first, child_count, p, nbr, occ, p8)
            spread[:] = 0.0
            for j in range(8):
                if (occ >> j) & 1:
                    for k in range(3):
                        spread[k] = max(spread[k], abs(p8[j, k] - rec[p, k]))
            nc = block_forward(p8, ne, ea, eb, ewa, ewb, ek, dp)
            # mean |residual| per coefficient of the already coded neighbour blocks of this level
            smag[:] = 0.0
            scnt = 0
            for i in range(1, 19):
                nn = nbr[i]
                if 0 <= nn < p:
                    scnt += bcnt[nn]
                    for k in range(3):
                        smag[k] += bmag[nn, k]
            if scnt > 0:
                for k in range(3):
                    smag[k] /= scnt
            ci = 0
            for e in range(ne):
                if ek[e] != 1:
                    continue
                wa = float(ewa[e])
                wb = float(ewb[e])
                g = math.sqrt(wa * wb / (wa + wb))
                for k in range(3):
                    ex = g / steps[k] * (0.5 * spread[k] + 0.5 * abs(dp[ci, k]) + smag[k])
                    ec = magnitude_class(ex, E_THRESHOLDS)
                    cc3 = 0
                    if k == 1:
                        cc3 = min(2, abs(qk[0]))
                    elif k == 2:
                        cc3 = min(2, abs(qk[0]) + abs(qk[1]))
                    q = np.int64(0)
                    if mode == ENCODE:
                        x = (d[ci, k] - dp[ci, k]) * g / steps[k]
                        if lam > 0.0:
                            q = rdo_quantise(x, lam, t, k, ec, cc3)
                        else:
                            q = _quantise(x, rnd)
                    q = code_coef(mode, st, arr, t, q, k, ec, cc3, sign_context(k, qk[0], qk[1]))
                    if abs(q) > QMAX:
                        return ERR_RANGE
                    qk[k] = q
                    r = q * steps[k] / g
                    d[ci, k] = dp[ci, k] + r
                    bmag[p, k] += abs(r)
                ci += 1
            bcnt[p] = nc
            for k in range(3):
                m8[0, k] = rec[p, k]
            block_inverse(m8, ne, ea, eb, ewa, ewb, ek, d)
            for c in range(cf, cf + cc):
                j = node_code[c] & 7
                for k in range(3):
                    rec[c, k] = m8[j, k]
    return _duplicates(mode, child_first, child_count, level_start, pvals, steps, rnd,
                       st, arr, t, rec, rec_pts)


@njit(cache=True)
def _duplicates(mode, child_first, child_count, level_start, pvals, steps, rnd, st, arr, t,
                rec, rec_pts):
    """Leaves to points: a chain of butterflies over each leaf's duplicate points."""
    dd = np.zeros((0, 3), dtype=np.float64)
    run = np.zeros(3, dtype=np.float64)
    qk = np.zeros(3, dtype=np.int64)
    for leaf in range(level_start[1]):
        cf = child_first[leaf]
        cc = child_count[leaf]
        if cc == 1:
            for k in range(3):
                rec_pts[cf, k] = rec[leaf, k]
            continue
        if dd.shape[0] < cc:
            dd = np.zeros((cc, 3), dtype=np.float64)
        if mode == ENCODE:  # d_j = x_j - mean(x_0 .. x_{j-1})
            for k in range(3):
                run[k] = pvals[cf, k]
            for j in range(1, cc):
                for k in range(3):
                    dd[j, k] = pvals[cf + j, k] - run[k]
                    run[k] += dd[j, k] / (j + 1)
        for j in range(1, cc):
            g = math.sqrt(j / (j + 1.0))
            for k in range(3):
                ec = magnitude_class(4.0 * g / steps[k], E_THRESHOLDS)
                cc3 = 0 if k == 0 else min(2, abs(qk[0]) + (abs(qk[1]) if k == 2 else 0))
                q = np.int64(0)
                if mode == ENCODE:
                    q = _quantise(dd[j, k] * g / steps[k], rnd)
                q = code_coef(mode, st, arr, t, q, k, ec, cc3, sign_context(k, qk[0], qk[1]))
                if abs(q) > QMAX:
                    return ERR_RANGE
                qk[k] = q
                dd[j, k] = q * steps[k] / g
        for k in range(3):
            m = rec[leaf, k]
            for j in range(cc - 1, 0, -1):
                prev = m - dd[j, k] / (j + 1)
                rec_pts[cf + j, k] = prev + dd[j, k]
                m = prev
            rec_pts[cf, k] = m
    return OK

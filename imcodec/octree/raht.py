"""RAHT kernels: Morton codes, the octree of a point set, colour spaces and the 2x2x2 block transform.

The region-adaptive hierarchical transform (R. L. de Queiroz and P. A. Chou, "Compression of 3D point
clouds using a region-adaptive hierarchical transform", IEEE TIP 25(8), 2016) merges, level by level
up the octree, pairs of occupied cells that differ along one axis. With weights (point counts) wa, wb
and weighted-normalised values xa = sqrt(wa)·ma, xb = sqrt(wb)·mb (m = mean attribute of the cell)::

    L = ( sqrt(wa)·xa + sqrt(wb)·xb ) / sqrt(wa + wb)  = sqrt(wa + wb) · (wa·ma + wb·mb) / (wa + wb)
    H = (-sqrt(wb)·xa + sqrt(wa)·xb ) / sqrt(wa + wb)  = g · (mb - ma),  g = sqrt(wa·wb / (wa + wb))

so the low band is the weighted mean of the merged cell and the orthonormal high band is the mean
difference scaled by ``g``. As in G-PCC (ISO/IEC 23090-9, the "dyadic RAHT"), the eight children of
an octree node form one block transformed along z, then y, then x (child index bits 0, 1, 2): a block
with k occupied children gives k-1 high-pass coefficients and its DC equals the parent's low band.
The kernels here work in this mean domain: a coefficient is stored as the mean difference ``d`` and
its gain ``g``; the codec quantises ``g·(d - d_pred)`` with a uniform step, which is exactly uniform
quantisation of the orthonormal coefficient after transform-domain prediction.

Also here: the integer variant used by lossless mode (weighted S-transform lifting: ``d = vb - va``,
``L = va + floor(d·wb / (wa + wb))``, exactly invertible), BT.709 RGB <-> YCbCr and the reversible
YCoCg-R colour transform. The prediction that the codec subtracts in the transform domain lives in
:mod:`imcodec.octree.raht_predict`. Everything is a module-level ``@njit(cache=True)`` kernel on
contiguous arrays; validation happens in :mod:`imcodec.octree.attributes`.
"""

from __future__ import annotations

import numpy as np

from imcodec.jit import njit
from imcodec.octree.morton import MAX_BITS as MAX_COORD_BITS
from imcodec.octree.morton import _compact, _spread, morton_encode

__all__ = ["MAX_COORD_BITS", "morton_encode", "is_sorted", "encode_xyz", "decode_xyz", "build_tree",
           "rgb_to_ycbcr", "ycbcr_to_rgb_u8", "rgb_to_ycocg", "ycocg_to_rgb", "block_layout",
           "block_forward", "block_inverse", "block_forward_int", "block_inverse_int",
           "node_means", "tree_forward", "tree_inverse"]

# --------------------------------------------------------------------------------- Morton codes


@njit(cache=True)
def is_sorted(codes):
    """True when codes (N,) int64 is non-decreasing."""
    for i in range(1, codes.shape[0]):
        if codes[i] < codes[i - 1]:
            return False
    return True


@njit(cache=True)
def encode_xyz(x, y, z):
    """Morton code of one cell (ints, non-negative, < 2**21), as :func:`morton_encode`."""
    return (_spread(x) << 2) | (_spread(y) << 1) | _spread(z)


@njit(cache=True)
def decode_xyz(code):
    """Inverse of :func:`encode_xyz`: (x, y, z)."""
    return _compact(code >> 2), _compact(code >> 1), _compact(code)


# ------------------------------------------------------------------------------------ the tree


@njit(cache=True)
def build_tree(codes):
    """Octree of sorted Morton codes.

    codes: (N,) int64, non-decreasing, N >= 1 (duplicates allowed, consecutive).
    Returns (node_code, node_weight, child_first, child_count, level_start), all int64:
      nodes of level 0 (the distinct positions) first, then level 1, ..., the root level last;
      level_start: (depth + 2,) with nodes of level l in [level_start[l], level_start[l + 1]);
      node_code: the Morton code shifted right by 3·level; node_weight: points below the node;
      child_first/child_count: children's range in the level below (for level 0: the point range).
    """
    n = codes.shape[0]
    maxc = codes[n - 1]
    depth = 0
    while (maxc >> (3 * depth)) != 0:
        depth += 1
    counts = np.zeros(depth + 1, dtype=np.int64)
    for lev in range(depth + 1):
        s = 3 * lev
        c = 1
        prev = codes[0] >> s
        for i in range(1, n):
            cur = codes[i] >> s
            if cur != prev:
                c += 1
                prev = cur
        counts[lev] = c
    level_start = np.zeros(depth + 2, dtype=np.int64)
    for lev in range(depth + 1):
        level_start[lev + 1] = level_start[lev] + counts[lev]
    total = level_start[depth + 1]
    node_code = np.empty(total, dtype=np.int64)
    node_weight = np.zeros(total, dtype=np.int64)
    child_first = np.empty(total, dtype=np.int64)
    child_count = np.zeros(total, dtype=np.int64)
    # level 0: distinct positions, children = points
    k = -1
    for i in range(n):
        if k < 0 or codes[i] != node_code[k]:
            k += 1
            node_code[k] = codes[i]
            child_first[k] = i
        child_count[k] += 1
        node_weight[k] += 1
    for lev in range(1, depth + 1):
        k = level_start[lev] - 1
        for i in range(level_start[lev - 1], level_start[lev]):
            pc = node_code[i] >> 3
            if k < level_start[lev] or pc != node_code[k]:
                k += 1
                node_code[k] = pc
                child_first[k] = i
            child_count[k] += 1
            node_weight[k] += node_weight[i]
    return node_code, node_weight, child_first, child_count, level_start


# -------------------------------------------------------------------------------- colour spaces


@njit(cache=True)
def rgb_to_ycbcr(rgb):
    """(N, 3) uint8 RGB -> (N, 3) float64 BT.709 YCbCr, chroma centred on 128 (no rounding)."""
    n = rgb.shape[0]
    out = np.empty((n, 3), dtype=np.float64)
    for i in range(n):
        r = float(rgb[i, 0])
        g = float(rgb[i, 1])
        b = float(rgb[i, 2])
        y = 0.2126 * r + 0.7152 * g + 0.0722 * b
        out[i, 0] = y
        out[i, 1] = (b - y) / 1.8556 + 128.0
        out[i, 2] = (r - y) / 1.5748 + 128.0
    return out


@njit(cache=True)
def ycbcr_to_rgb_u8(ycc):
    """(N, 3) float64 BT.709 YCbCr -> (N, 3) uint8 RGB, rounded and clipped to [0, 255]."""
    n = ycc.shape[0]
    out = np.empty((n, 3), dtype=np.uint8)
    for i in range(n):
        y = ycc[i, 0]
        cb = ycc[i, 1] - 128.0
        cr = ycc[i, 2] - 128.0
        r = y + 1.5748 * cr
        b = y + 1.8556 * cb
        g = (y - 0.2126 * r - 0.0722 * b) / 0.7152
        for k, v in enumerate((r, g, b)):
            v = np.floor(v + 0.5)
            out[i, k] = int(v) if 0.0 <= v <= 255.0 else (255 if v > 255.0 else 0)  # NaN -> 0
    return out


@njit(cache=True)
def rgb_to_ycocg(rgb):
    """(N, 3) uint8 RGB -> (N, 3) int64 YCoCg-R (Y in [0, 255], Co and Cg in [-255, 255])."""
    n = rgb.shape[0]
    out = np.empty((n, 3), dtype=np.int64)
    for i in range(n):
        r = np.int64(rgb[i, 0])
        g = np.int64(rgb[i, 1])
        b = np.int64(rgb[i, 2])
        co = r - b
        t = b + (co >> 1)
        cg = g - t
        out[i, 0] = t + (cg >> 1)
        out[i, 1] = co
        out[i, 2] = cg
    return out


@njit(cache=True)
def ycocg_to_rgb(ycc):
    """Inverse of :func:`rgb_to_ycocg`: (N, 3) int64 -> (N, 3) int64 RGB (exact for valid input)."""
    n = ycc.shape[0]
    out = np.empty((n, 3), dtype=np.int64)
    for i in range(n):
        t = ycc[i, 0] - (ycc[i, 2] >> 1)
        g = ycc[i, 2] + t
        b = t - (ycc[i, 1] >> 1)
        out[i, 0] = b + ycc[i, 1]
        out[i, 1] = g
        out[i, 2] = b
    return out


# ------------------------------------------------------------------------------ block transform


@njit(cache=True)
def block_layout(w8, ev_a, ev_b, ev_wa, ev_wb, ev_kind):
    """The butterflies of one 2x2x2 block, in transform order (z pairs, then y, then x).

    w8: (8,) int64 child weights (0 = empty child; index bits x<<2 | y<<1 | z).
    Fills ev_* (7,) int64: slot a and b, their weights, kind 1 = coefficient, 2 = pass-through
    (only b occupied: its value moves to a). Returns the number of events.
    """
    cw = w8.copy()
    ne = 0
    for s in range(3):
        st = 1 << s
        for a in range(0, 8, 2 * st):
            b = a + st
            if cw[b] == 0:
                continue
            ev_a[ne] = a
            ev_b[ne] = b
            ev_wa[ne] = cw[a]
            ev_wb[ne] = cw[b]
            ev_kind[ne] = 1 if cw[a] > 0 else 2
            cw[a] += cw[b]
            cw[b] = 0
            ne += 1
    return ne


@njit(cache=True)
def block_forward(m8, ne, ev_a, ev_b, ev_wa, ev_wb, ev_kind, d_out):
    """Forward RAHT of one block in the mean domain.

    m8: (8, 3) float64 child means (destroyed: m8[0] ends as the block mean).
    d_out: (7, 3) float64, receives d = mean_b - mean_a for each coefficient event, in event order.
    Returns the number of coefficients.
    """
    nc = 0
    for e in range(ne):
        a = ev_a[e]
        b = ev_b[e]
        if ev_kind[e] == 2:
            for k in range(3):
                m8[a, k] = m8[b, k]
            continue
        wa = float(ev_wa[e])
        wb = float(ev_wb[e])
        for k in range(3):
            d_out[nc, k] = m8[b, k] - m8[a, k]
            m8[a, k] = (wa * m8[a, k] + wb * m8[b, k]) / (wa + wb)
        nc += 1
    return nc


@njit(cache=True)
def block_inverse(m8, ne, ev_a, ev_b, ev_wa, ev_wb, ev_kind, d):
    """Inverse of :func:`block_forward`: m8[0] holds the block mean on entry, the child means on exit."""
    nc = 0
    for e in range(ne):
        if ev_kind[e] == 1:
            nc += 1
    for e in range(ne - 1, -1, -1):
        a = ev_a[e]
        b = ev_b[e]
        if ev_kind[e] == 2:
            for k in range(3):
                m8[b, k] = m8[a, k]
            continue
        nc -= 1
        wa = float(ev_wa[e])
        wb = float(ev_wb[e])
        for k in range(3):
            m = m8[a, k]
            m8[a, k] = m - wb / (wa + wb) * d[nc, k]
            m8[b, k] = m + wa / (wa + wb) * d[nc, k]


@njit(cache=True)
def block_forward_int(v8, ne, ev_a, ev_b, ev_wa, ev_wb, ev_kind, d_out):
    """Integer lifting version of :func:`block_forward` (v8: (8, 3) int64, d_out: (7, 3) int64)."""
    nc = 0
    for e in range(ne):
        a = ev_a[e]
        b = ev_b[e]
        if ev_kind[e] == 2:
            for k in range(3):
                v8[a, k] = v8[b, k]
            continue
        wb = ev_wb[e]
        w = ev_wa[e] + wb
        for k in range(3):
            dd = v8[b, k] - v8[a, k]
            d_out[nc, k] = dd
            v8[a, k] = v8[a, k] + (dd * wb) // w
        nc += 1
    return nc


@njit(cache=True)
def block_inverse_int(v8, ne, ev_a, ev_b, ev_wa, ev_wb, ev_kind, d):
    """Exact inverse of :func:`block_forward_int`."""
    nc = 0
    for e in range(ne):
        if ev_kind[e] == 1:
            nc += 1
    for e in range(ne - 1, -1, -1):
        a = ev_a[e]
        b = ev_b[e]
        if ev_kind[e] == 2:
            for k in range(3):
                v8[b, k] = v8[a, k]
            continue
        nc -= 1
        wb = ev_wb[e]
        w = ev_wa[e] + wb
        for k in range(3):
            va = v8[a, k] - (d[nc, k] * wb) // w
            v8[a, k] = va
            v8[b, k] = va + d[nc, k]


# ----------------------------------------------------------------- whole-tree transform (plain)


@njit(cache=True)
def node_means(node_weight, child_first, child_count, level_start, pvals):
    """(T, 3) float64 mean of pvals ((N, 3) float64, tree order) over the points below each node."""
    t = node_weight.shape[0]
    s = np.zeros((t, 3), dtype=np.float64)
    for i in range(level_start[1]):
        for c in range(child_first[i], child_first[i] + child_count[i]):
            for k in range(3):
                s[i, k] += pvals[c, k]
    for i in range(level_start[1], t):
        for c in range(child_first[i], child_first[i] + child_count[i]):
            for k in range(3):
                s[i, k] += s[c, k]
    for i in range(t):
        for k in range(3):
            s[i, k] /= node_weight[i]
    return s


@njit(cache=True)
def tree_forward(node_code, node_weight, child_first, child_count, level_start, mean, pvals,
                 coefs, gains):
    """Plain RAHT of a whole tree (no prediction, no quantisation), coefficients top-down.

    mean: (T, 3) float64 node means of pvals ((N, 3) float64, tree order). Fills coefs (N - 1, 3)
    with the orthonormal high-pass coefficients g·d, block by block from the root down and then the
    duplicate chains of the leaves, and gains (N - 1,) with their g. Returns the DC ((3,) float64,
    sqrt(N)·mean).
    """
    depth = level_start.shape[0] - 2
    root = level_start[depth]
    w8 = np.zeros(8, dtype=np.int64)
    m8 = np.zeros((8, 3), dtype=np.float64)
    ea = np.zeros(7, dtype=np.int64)
    eb = np.zeros(7, dtype=np.int64)
    ewa = np.zeros(7, dtype=np.int64)
    ewb = np.zeros(7, dtype=np.int64)
    ek = np.zeros(7, dtype=np.int64)
    d = np.zeros((7, 3), dtype=np.float64)
    n = 0
    for lev in range(depth, 0, -1):
        for p in range(level_start[lev], level_start[lev + 1]):
            w8[:] = 0
            for c in range(child_first[p], child_first[p] + child_count[p]):
                j = node_code[c] & 7
                w8[j] = node_weight[c]
                m8[j] = mean[c]
            ne = block_layout(w8, ea, eb, ewa, ewb, ek)
            nc = block_forward(m8, ne, ea, eb, ewa, ewb, ek, d)
            ci = 0
            for e in range(ne):
                if ek[e] == 1:
                    g = np.sqrt(ewa[e] * ewb[e] / float(ewa[e] + ewb[e]))
                    gains[n] = g
                    for k in range(3):
                        coefs[n, k] = g * d[ci, k]
                    ci += 1
                    n += 1
    for leaf in range(level_start[1]):
        cf = child_first[leaf]
        run = pvals[cf].copy()
        for j in range(1, child_count[leaf]):
            g = np.sqrt(j / (j + 1.0))
            gains[n] = g
            for k in range(3):
                dd = pvals[cf + j, k] - run[k]
                coefs[n, k] = g * dd
                run[k] += dd / (j + 1)
            n += 1
    return np.sqrt(float(node_weight[root])) * mean[root]


@njit(cache=True)
def tree_inverse(node_code, node_weight, child_first, child_count, level_start, dc, coefs, out):
    """Inverse of :func:`tree_forward`: out (N, 3) float64 receives the point values (tree order)."""
    depth = level_start.shape[0] - 2
    root = level_start[depth]
    rec = np.zeros((node_code.shape[0], 3), dtype=np.float64)
    rec[root] = dc / np.sqrt(float(node_weight[root]))
    w8 = np.zeros(8, dtype=np.int64)
    m8 = np.zeros((8, 3), dtype=np.float64)
    ea = np.zeros(7, dtype=np.int64)
    eb = np.zeros(7, dtype=np.int64)
    ewa = np.zeros(7, dtype=np.int64)
    ewb = np.zeros(7, dtype=np.int64)
    ek = np.zeros(7, dtype=np.int64)
    d = np.zeros((7, 3), dtype=np.float64)
    n = 0
    for lev in range(depth, 0, -1):
        for p in range(level_start[lev], level_start[lev + 1]):
            w8[:] = 0
            for c in range(child_first[p], child_first[p] + child_count[p]):
                w8[node_code[c] & 7] = node_weight[c]
            ne = block_layout(w8, ea, eb, ewa, ewb, ek)
            ci = 0
            for e in range(ne):
                if ek[e] == 1:
                    g = np.sqrt(ewa[e] * ewb[e] / float(ewa[e] + ewb[e]))
                    for k in range(3):
                        d[ci, k] = coefs[n, k] / g
                    ci += 1
                    n += 1
            m8[0] = rec[p]
            block_inverse(m8, ne, ea, eb, ewa, ewb, ek, d)
            for c in range(child_first[p], child_first[p] + child_count[p]):
                rec[c] = m8[node_code[c] & 7]
    for leaf in range(level_start[1]):
        cf = child_first[leaf]
        cc = child_count[leaf]
        first = n
        n += cc - 1
        for k in range(3):
            m = rec[leaf, k]
            for j in range(cc - 1, 0, -1):
                dd = coefs[first + j - 1, k] / np.sqrt(j / (j + 1.0))
                prev = m - dd / (j + 1)
                out[cf + j, k] = prev + dd
                m = prev
            out[cf, k] = m

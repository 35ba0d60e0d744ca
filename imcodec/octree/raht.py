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
YCoCg-R colour transform. Everything is a module-level ``@njit(cache=True)`` kernel on contiguous
arrays; validation happens in :mod:`imcodec.octree.attributes`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_COORD_BITS = 21  # Morton codes of three 21-bit coordinates fit in an int64

# The 19 prediction neighbours of a node (G-PCC's choice): itself, 6 face and 12 edge neighbours.
# Columns: dx, dy, dz, kind (0 = the node itself, 1 = face, 2 = edge).
_NB = []
for _dx in (-1, 0, 1):
    for _dy in (-1, 0, 1):
        for _dz in (-1, 0, 1):
            _k = abs(_dx) + abs(_dy) + abs(_dz)
            if _k <= 2:
                _NB.append((_dx, _dy, _dz, _k))
_NB.sort(key=lambda t: (t[3], t))
NEIGHBOURS = np.array(_NB, dtype=np.int64)  # (19, 4)


def _child_masks() -> np.ndarray:
    """(19,) int64: bit j set when child j (bits x<<2 | y<<1 | z) of a node touches neighbour i."""
    masks = np.zeros(len(_NB), dtype=np.int64)
    for i, (dx, dy, dz, _) in enumerate(_NB):
        for j in range(8):
            cx, cy, cz = (j >> 2) & 1, (j >> 1) & 1, j & 1
            ok = all(d == 0 or (d < 0 and c == 0) or (d > 0 and c == 1)
                     for d, c in ((dx, cx), (dy, cy), (dz, cz)))
            if ok:
                masks[i] |= 1 << j
    return masks


NEIGHBOUR_CHILD_MASKS = _child_masks()

# --------------------------------------------------------------------------------- Morton codes


@njit(cache=True)
def _spread3(v):
    v = v & 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


@njit(cache=True)
def _compact3(v):
    v = v & 0x1249249249249249
    v = (v | (v >> 2)) & 0x10C30C30C30C30C3
    v = (v | (v >> 4)) & 0x100F00F00F00F00F
    v = (v | (v >> 8)) & 0x1F0000FF0000FF
    v = (v | (v >> 16)) & 0x1F00000000FFFF
    v = (v | (v >> 32)) & 0x1FFFFF
    return v


@njit(cache=True)
def morton_codes(pos):
    """pos: (N, 3) int64 in [0, 2**21) -> (N,) int64 codes, bit 3i+2 = x_i, 3i+1 = y_i, 3i = z_i."""
    n = pos.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = (_spread3(pos[i, 0]) << 2) | (_spread3(pos[i, 1]) << 1) | _spread3(pos[i, 2])
    return out


@njit(cache=True)
def is_sorted(codes):
    """True when codes (N,) int64 is non-decreasing."""
    for i in range(1, codes.shape[0]):
        if codes[i] < codes[i - 1]:
            return False
    return True


@njit(cache=True)
def encode_xyz(x, y, z):
    """Morton code of one cell (ints, non-negative, < 2**21)."""
    return (_spread3(x) << 2) | (_spread3(y) << 1) | _spread3(z)


@njit(cache=True)
def decode_xyz(code):
    """Inverse of :func:`encode_xyz`: (x, y, z)."""
    return _compact3(code >> 2), _compact3(code >> 1), _compact3(code)


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


# ----------------------------------------------------------------------------- neighbour lookup


@njit(cache=True)
def _hash_slot(key, bits):
    x = key * -7046029254386353131  # 0x9E3779B97F4A7C15, wraps
    return (x >> (64 - bits)) & ((1 << bits) - 1)


@njit(cache=True)
def hash_level(node_code, start, end):
    """Open-addressing table of the nodes [start, end): (table int64 of node indices or -1, bits)."""
    n = end - start
    bits = 4
    while (1 << bits) < 2 * n:
        bits += 1
    table = np.full(1 << bits, -1, dtype=np.int64)
    mask = (1 << bits) - 1
    for i in range(start, end):
        h = _hash_slot(node_code[i], bits)
        while table[h] != -1:
            h = (h + 1) & mask
        table[h] = i
    return table, bits


@njit(cache=True)
def hash_find(table, bits, node_code, key):
    """Index of the node with code ``key`` in a :func:`hash_level` table, or -1."""
    mask = (1 << bits) - 1
    h = _hash_slot(key, bits)
    while True:
        j = table[h]
        if j == -1 or node_code[j] == key:
            return j
        h = (h + 1) & mask


@njit(cache=True)
def find_neighbours(node_code, table, bits, p, nb, out):
    """Fill out (19,) int64 with the node indices of the neighbours of node p (or -1); return count.

    nb: (19, 4) NEIGHBOURS. out[0] = p. The count excludes p itself.
    """
    x, y, z = decode_xyz(node_code[p])
    out[0] = p
    lim = (1 << MAX_COORD_BITS) - 1
    cnt = 0
    for i in range(1, nb.shape[0]):
        nx = x + nb[i, 0]
        ny = y + nb[i, 1]
        nz = z + nb[i, 2]
        if nx < 0 or ny < 0 or nz < 0 or nx > lim or ny > lim or nz > lim:
            out[i] = -1
            continue
        j = hash_find(table, bits, node_code, encode_xyz(nx, ny, nz))
        out[i] = j
        if j >= 0:
            cnt += 1
    return cnt


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
            out[i, k] = 0 if v < 0.0 else (255 if v > 255.0 else int(v))
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

"""Octree construction from Morton codes, its inverse, and the per-level neighbour tables.

Nodes of each level are kept in Morton order; breadth-first order is level 0 (the root), then
level 1, ..., and the children of a node are consecutive at the next level. A node's occupancy byte
has bit ``c`` set when child ``c = x << 2 | y << 1 | z`` is occupied.
"""

from __future__ import annotations

import numpy as np

from imcodec.jit import njit

# offset k of the 27-neighbourhood: k = (dx + 1) * 9 + (dy + 1) * 3 + (dz + 1); k = 13 is the node itself
SELF = 13


@njit(cache=True)
def popcount8(v):
    """Number of set bits of a byte value."""
    v = v - ((v >> 1) & 0x55)
    v = (v & 0x33) + ((v >> 2) & 0x33)
    return (v + (v >> 4)) & 0x0F


@njit(cache=True)
def level_sizes(codes, depth):
    """Nodes per level 0..depth of the octree of sorted unique Morton ``codes`` ((N,) int64).

    Returns (depth + 1,) int64; entry ``depth`` is N.
    """
    sizes = np.zeros(depth + 1, dtype=np.int64)
    n = codes.shape[0]
    sizes[depth] = n
    for d in range(depth - 1, -1, -1):
        shift = 3 * (depth - d)
        cnt = 0
        prev = -1
        for i in range(n):
            c = codes[i] >> shift
            if c != prev:
                cnt += 1
                prev = c
        sizes[d] = cnt
    return sizes


@njit(cache=True)
def build_occupancy(codes, depth, sizes):
    """Occupancy bytes of every internal node in breadth-first order.

    codes: (N,) int64 sorted unique Morton codes of the leaves (level ``depth``), N >= 1.
    sizes: (depth + 1,) int64 from :func:`level_sizes`.
    Returns (sum(sizes[:depth]),) uint8; level d starts at sum(sizes[:d]).
    """
    total = 0
    for d in range(depth):
        total += sizes[d]
    occ = np.zeros(total, dtype=np.uint8)
    start = total
    for d in range(depth - 1, -1, -1):
        start -= sizes[d]
        shift = 3 * (depth - d)
        k = start - 1
        prev = -1
        for i in range(codes.shape[0]):
            c = codes[i] >> shift
            if c != prev:
                k += 1
                prev = c
            occ[k] |= np.uint8(1 << ((codes[i] >> (shift - 3)) & 7))
    return occ


@njit(cache=True)
def expand_level(parent_codes, occ):
    """Child codes of one level: parent_codes (M,) int64 and their occupancy bytes (M,) uint8."""
    n = 0
    for i in range(occ.shape[0]):
        n += popcount8(np.int64(occ[i]))
    out = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(occ.shape[0]):
        o = occ[i]
        for c in range(8):
            if (o >> c) & 1:
                out[k] = (parent_codes[i] << 3) | c
                k += 1
    return out


@njit(cache=True)
def root_neighbours():
    """(1, 27) int32 neighbour table of the root: only itself."""
    t = np.full((1, 27), -1, dtype=np.int32)
    t[0, SELF] = 0
    return t


@njit(cache=True)
def child_neighbours(nbr, occ):
    """Neighbour table of the next level from this level's table and occupancy.

    nbr: (M, 27) int32, index of the node at offset k of each node of this level, -1 if empty.
    occ: (M,) uint8 occupancy bytes of this level.
    Returns (sum popcount(occ), 27) int32: the same table for the children, in Morton order.
    """
    m = occ.shape[0]
    first = np.empty(m + 1, dtype=np.int64)
    first[0] = 0
    for i in range(m):
        first[i + 1] = first[i] + popcount8(np.int64(occ[i]))
    out = np.empty((first[m], 27), dtype=np.int32)
    ci = 0
    for p in range(m):
        o = np.int64(occ[p])
        for c in range(8):
            if not (o >> c) & 1:
                continue
            cx, cy, cz = (c >> 2) & 1, (c >> 1) & 1, c & 1
            k = 0
            for dx in range(-1, 2):
                lx = cx + dx
                for dy in range(-1, 2):
                    ly = cy + dy
                    for dz in range(-1, 2):
                        lz = cz + dz
                        q = nbr[p, ((lx >> 1) + 1) * 9 + ((ly >> 1) + 1) * 3 + (lz >> 1) + 1]
                        r = -1
                        if q >= 0:
                            b = ((lx & 1) << 2) | ((ly & 1) << 1) | (lz & 1)
                            oq = np.int64(occ[q])
                            if (oq >> b) & 1:
                                r = first[q] + popcount8(oq & ((1 << b) - 1))
                        out[ci, k] = r
                        k += 1
            ci += 1
    return out

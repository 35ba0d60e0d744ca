"""Morton (Z-order) codes of integer 3-D coordinates, as Numba kernels.

A code interleaves the bits of x, y, z with x the most significant of each triple, so the three
low bits of a code are the child index ``x << 2 | y << 1 | z`` inside its parent octree node (the
convention of :mod:`imcodec.octree.raht` too). Coordinates have at most ``MAX_BITS`` = 21 bits, so a
code fits in a non-negative int64.
"""

from __future__ import annotations

import numpy as np

from imcodec.jit import njit

MAX_BITS = 21


@njit(cache=True)
def _spread(v):
    # 21-bit value -> bits at positions 0, 3, 6, ...
    v &= 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


@njit(cache=True)
def _compact(v):
    v &= 0x1249249249249249
    v = (v | (v >> 2)) & 0x10C30C30C30C30C3
    v = (v | (v >> 4)) & 0x100F00F00F00F00F
    v = (v | (v >> 8)) & 0x1F0000FF0000FF
    v = (v | (v >> 16)) & 0x1F00000000FFFF
    v = (v | (v >> 32)) & 0x1FFFFF
    return v


@njit(cache=True)
def morton_encode(xyz):
    """(N, 3) int64 coordinates in 0..2**21-1 -> (N,) int64 Morton codes."""
    n = xyz.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = (_spread(xyz[i, 0]) << 2) | (_spread(xyz[i, 1]) << 1) | _spread(xyz[i, 2])
    return out


@njit(cache=True)
def morton_decode(codes):
    """(N,) int64 Morton codes -> (N, 3) int64 coordinates."""
    n = codes.shape[0]
    out = np.empty((n, 3), dtype=np.int64)
    for i in range(n):
        c = codes[i]
        out[i, 0] = _compact(c >> 2)
        out[i, 1] = _compact(c >> 1)
        out[i, 2] = _compact(c)
    return out

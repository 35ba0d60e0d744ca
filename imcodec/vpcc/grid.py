"""Integer voxel keys and an open-addressing hash table from keys to indices (Numba kernels).

Used by patch generation (26-neighbour connected components, voxel-grid neighbour voting) and by
reconstruction (smoothing). Keys pack non-negative integer coordinates into one int64:
``key = (x << 42) | (y << 21) | z`` with every coordinate in 0 .. 2**21 - 1.
"""

from __future__ import annotations

import numpy as np
from imcodec.jit import njit

COORD_BITS = 21
COORD_LIMIT = 1 << COORD_BITS
_EMPTY = np.int64(-1)


def pack_keys(coords: np.ndarray) -> np.ndarray:
    """(N, 3) non-negative integer coordinates (< 2**21) -> (N,) int64 keys."""
    c = np.asarray(coords, dtype=np.int64)
    return (c[:, 0] << 42) | (c[:, 1] << 21) | c[:, 2]


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    """(N,) int64 keys -> (N, 3) int64 coordinates."""
    mask = COORD_LIMIT - 1
    return np.stack([(keys >> 42) & mask, (keys >> 21) & mask, keys & mask], axis=1)


@njit(cache=True)
def _mix(key, mask):
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64((h >> np.uint64(29)) & np.uint64(mask))


@njit(cache=True)
def hash_build(keys):
    """Hash table of ``keys`` ((N,) int64): returns (table_keys, table_vals) of size 2^k >= 2N.

    ``table_vals[slot]`` is the index of the key in ``keys`` (the last one for a repeated key).
    """
    n = keys.shape[0]
    size = 16
    while size < 2 * n:
        size *= 2
    mask = size - 1
    tk = np.full(size, -1, dtype=np.int64)
    tv = np.full(size, -1, dtype=np.int64)
    for i in range(n):
        s = _mix(keys[i], mask)
        while tk[s] != -1 and tk[s] != keys[i]:
            s = (s + 1) & mask
        tk[s] = keys[i]
        tv[s] = i
    return tk, tv


@njit(cache=True)
def hash_find(tk, tv, key):
    """Index stored for ``key``, or -1."""
    mask = tk.shape[0] - 1
    s = _mix(key, mask)
    while True:
        k = tk[s]
        if k == key:
            return tv[s]
        if k == -1:
            return np.int64(-1)
        s = (s + 1) & mask


@njit(cache=True)
def _find_root(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def components_26(coords, labels):
    """Connected components of points that are 26-neighbours (Chebyshev distance 1) with equal labels.

    coords: (N, 3) int64 distinct non-negative coordinates (< 2**21); labels: (N,) int64.
    Returns (N,) int64 component ids 0..C-1, numbered in order of first appearance.
    """
    n = coords.shape[0]
    keys = np.empty(n, dtype=np.int64)
    for i in range(n):
        keys[i] = (coords[i, 0] << 42) | (coords[i, 1] << 21) | coords[i, 2]
    tk, tv = hash_build(keys)
    parent = np.arange(n)
    for i in range(n):
        x, y, z = coords[i, 0], coords[i, 1], coords[i, 2]
        for dx in range(-1, 2):
            for dy in range(-1, 2):
                for dz in range(-1, 2):
                    # half of the 26 offsets: each pair is visited once
                    if dx * 9 + dy * 3 + dz <= 0:
                        continue
                    nx, ny, nz = x + dx, y + dy, z + dz
                    if nx < 0 or ny < 0 or nz < 0:
                        continue
                    j = hash_find(tk, tv, (nx << 42) | (ny << 21) | nz)
                    if j >= 0 and labels[j] == labels[i]:
                        ri = _find_root(parent, i)
                        rj = _find_root(parent, j)
                        if ri != rj:
                            if ri < rj:
                                parent[rj] = ri
                            else:
                                parent[ri] = rj
    out = np.empty(n, dtype=np.int64)
    ids = np.full(n, -1, dtype=np.int64)
    count = 0
    for i in range(n):
        r = _find_root(parent, i)
        if ids[r] < 0:
            ids[r] = count
            count += 1
        out[i] = ids[r]
    return out

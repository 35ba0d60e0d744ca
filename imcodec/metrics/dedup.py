"""Duplicate-point merging as MPEG pc_error does it with ``--dropdups=2``.

pc_error stores coordinates as float32, sorts the points lexicographically by (x, y, z) (stable in
file order) and merges each run of identical positions into its first point: colours become the
integer mean of the run (sum // count), normals are those of the run's first point in file order.
The merged cloud stays in that sorted order, which is also the order pc_error loops over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcodec.jit import njit

_DIGIT = 11
_RADIX = 1 << _DIGIT


@dataclass(frozen=True)
class Merged:
    """A cloud after duplicate merging, sorted lexicographically.

    points:  (K, 3) float32 distinct positions.
    colors:  (K, 3) uint8/uint16 mean colours of each run (integer division), or None.
    normals: (K, 3) float32 normals of each run's first point, or None.
    duplicates: number of input points merged away (N - K).
    """

    points: np.ndarray
    colors: np.ndarray | None
    normals: np.ndarray | None
    duplicates: int


@njit(cache=True)
def radix_argsort(keys, nbits, order):
    """Stable LSD radix argsort by one int64 key column, refining an existing order.

    keys: (N,) int64 non-negative; nbits: significant bits of the keys; order: (N,) int32 current
    permutation (its ties are kept in this order). Returns the new (N,) int32 permutation.
    """
    n = keys.shape[0]
    k = np.empty(n, np.int64)
    for i in range(n):
        k[i] = keys[order[i]]
    idx = order.copy()
    k2 = np.empty(n, np.int64)
    idx2 = np.empty(n, np.int32)
    counts = np.empty(_RADIX + 1, np.int64)
    shift = 0
    while shift < nbits:
        counts[:] = 0
        for i in range(n):
            counts[((k[i] >> shift) & (_RADIX - 1)) + 1] += 1
        for d in range(_RADIX):
            counts[d + 1] += counts[d]
        for i in range(n):
            d = (k[i] >> shift) & (_RADIX - 1)
            p = counts[d]
            counts[d] = p + 1
            k2[p] = k[i]
            idx2[p] = idx[i]
        k, k2 = k2, k
        idx, idx2 = idx2, idx
        shift += _DIGIT
    return idx


def _axis_keys(p32: np.ndarray, integer: bool) -> list[np.ndarray]:
    """Per-axis (N,) int64 non-negative keys whose order is the float order of each coordinate."""
    cols = []
    for ax in range(3):
        v = np.ascontiguousarray(p32[:, ax])
        if integer:
            k = v.astype(np.int64)
        else:
            bits = (v + np.float32(0.0)).view(np.uint32).astype(np.int64)  # +0.0 turns -0.0 into 0.0
            k = np.where(bits >= (1 << 31), 0xFFFFFFFF - bits, bits + (1 << 31))
        cols.append(k - k.min())
    return cols


def lexsort_order(p32: np.ndarray, integer: bool) -> np.ndarray:
    """Stable lexicographic (x, y, z) argsort of float32 points ((N, 3)); (N,) int32."""
    n = len(p32)
    order = np.arange(n, dtype=np.int32)
    if n == 0:
        return order
    cols = _axis_keys(p32, integer)
    bits = [int(c.max()).bit_length() for c in cols]
    if sum(bits) <= 62:  # one composite key
        key = (cols[0] << (bits[1] + bits[2])) | (cols[1] << bits[2]) | cols[2]
        return radix_argsort(key, sum(bits), order)
    for ax in (2, 1, 0):
        order = radix_argsort(cols[ax], bits[ax], order)
    return order


@njit(cache=True, nogil=True)
def _merge_runs(p32, order, colors, normals, has_colors, has_normals):
    """Merges runs of equal positions in p32[order] (see merge_duplicates); returns
    (points (K, 3) float32, colours (K, 3) same dtype, normals (K, 3) float32)."""
    n = order.shape[0]
    k = 0
    for t in range(n):
        i = order[t]
        if t == 0:
            k = 1
            continue
        j = order[t - 1]
        if p32[i, 0] != p32[j, 0] or p32[i, 1] != p32[j, 1] or p32[i, 2] != p32[j, 2]:
            k += 1
    pts = np.empty((k, 3), np.float32)
    nrm = np.empty((k if has_normals else 0, 3), np.float32)
    col = np.empty((k if has_colors else 0, 3), colors.dtype)
    sums = np.zeros((k if has_colors else 0, 3), np.int64)
    cnt = np.zeros(k, np.int64)
    u = -1
    for t in range(n):
        i = order[t]
        new = t == 0
        if not new:
            j = order[t - 1]
            new = p32[i, 0] != p32[j, 0] or p32[i, 1] != p32[j, 1] or p32[i, 2] != p32[j, 2]
        if new:
            u += 1
            pts[u, 0] = p32[i, 0]
            pts[u, 1] = p32[i, 1]
            pts[u, 2] = p32[i, 2]
            if has_normals:
                nrm[u, 0] = normals[i, 0]
                nrm[u, 1] = normals[i, 1]
                nrm[u, 2] = normals[i, 2]
        cnt[u] += 1
        if has_colors:
            sums[u, 0] += colors[i, 0]
            sums[u, 1] += colors[i, 1]
            sums[u, 2] += colors[i, 2]
    if has_colors:
        for u in range(k):
            col[u, 0] = sums[u, 0] // cnt[u]
            col[u, 1] = sums[u, 1] // cnt[u]
            col[u, 2] = sums[u, 2] // cnt[u]
    return pts, col, nrm


def merge_duplicates(points: np.ndarray, colors: np.ndarray | None = None,
                     normals: np.ndarray | None = None, integer: bool | None = None) -> Merged:
    """Merge identical positions of points ((N, 3), any float type; compared as float32).

    colors: (N, 3) uint8/uint16 or None; normals: (N, 3) float or None.
    integer: whether the float32 coordinates are all integers (computed when None).
    """
    p32 = np.ascontiguousarray(points, dtype=np.float32)
    n = len(p32)
    if integer is None:
        integer = bool(np.all(p32 == np.rint(p32))) if n else True
    order = lexsort_order(p32, integer)
    c = np.zeros((0, 3), np.uint8) if colors is None else np.ascontiguousarray(colors)
    nr = np.zeros((0, 3), np.float32) if normals is None else np.ascontiguousarray(normals, np.float32)
    pts, col, nrm = _merge_runs(p32, order, c, nr, colors is not None, normals is not None)
    return Merged(pts, col if colors is not None else None, nrm if normals is not None else None,
                  int(n - len(pts)))

"""Optional decoder-side geometry smoothing of points rebuilt at patch boundaries.

Video coding errors are largest where a patch meets the padding, and neighbouring patches meet at
slightly different depths; as in TMC2's geometry smoothing, points whose canvas pixel touches
another patch or an empty pixel are pulled toward the centroid of the reconstructed points in the
surrounding (2r + 1)^3 cube. Encoder and decoder run the same code on the same decoded points.
"""

from __future__ import annotations

import numpy as np
from imcodec.jit import njit

from imcodec.vpcc.grid import hash_build, hash_find


def boundary_mask(ys: np.ndarray, xs: np.ndarray, patch: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K,) bool: the pixel (ys, xs) of each point has an 8-neighbour that is empty or of another patch.

    ys, xs, patch: (K,) int64 pixel and patch of each point (points may share a pixel).
    """
    ids = np.full((height + 2, width + 2), -1, dtype=np.int64)
    ids[ys + 1, xs + 1] = patch
    own = ids[ys + 1, xs + 1]
    edge = np.zeros(len(ys), dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                edge |= ids[ys + 1 + dy, xs + 1 + dx] != own
    return edge


def smooth_points(points: np.ndarray, selected: np.ndarray, radius: int = 2, weight: float = 1.0) -> np.ndarray:
    """Move the ``selected`` points ((K,) bool) of ``points`` ((K, 3) int64, may repeat) by ``weight``
    toward the centroid of all points within Chebyshev distance ``radius``. Returns (K, 3) float64."""
    pts = np.ascontiguousarray(points, dtype=np.int64)
    out = pts.astype(np.float64)
    if len(pts) == 0 or not selected.any():
        return out
    lo = pts.min(axis=0)
    rel = pts - lo
    keys = (rel[:, 0] << 42) | (rel[:, 1] << 21) | rel[:, 2]
    ukeys, counts = np.unique(keys, return_counts=True)
    idx = np.flatnonzero(selected)
    out[idx] = _centroids(ukeys, counts.astype(np.int64), rel[idx], int(radius), float(weight)) + lo
    return out


@njit(cache=True)
def _centroids(ukeys, counts, sel, radius, weight):
    tk, tv = hash_build(ukeys)
    n = sel.shape[0]
    out = np.empty((n, 3))
    for i in range(n):
        x, y, z = sel[i, 0], sel[i, 1], sel[i, 2]
        sx = sy = sz = 0.0
        cnt = 0
        for dx in range(-radius, radius + 1):
            for dy in range(-radius, radius + 1):
                for dz in range(-radius, radius + 1):
                    nx, ny, nz = x + dx, y + dy, z + dz
                    if nx < 0 or ny < 0 or nz < 0:
                        continue
                    j = hash_find(tk, tv, (nx << 42) | (ny << 21) | nz)
                    if j >= 0:
                        c = counts[j]
                        sx += c * nx
                        sy += c * ny
                        sz += c * nz
                        cnt += c
        out[i, 0] = x + weight * (sx / cnt - x)
        out[i, 1] = y + weight * (sy / cnt - y)
        out[i, 2] = z + weight * (sz / cnt - z)
    return out

"""Normals for the point-to-plane (D2) metric: PCA estimation and pc_error's transfer from A to B.

Estimation: the normal of a point is the eigenvector of the smallest eigenvalue of the covariance of
its k nearest neighbours (itself included; k = 12 as in the reference set-up), computed with cyclic
Jacobi rotations in float64. Its sign is chosen so that the largest-magnitude component is positive
(the sign only matters where pc_error averages several normals).

Transfer (pc_error ``scaleNormals`` with ``--averageNormals=1``): every point of A adds its normal to
each point of B exactly at its nearest distance; a B point that received normals takes their mean;
a B point that received none takes the mean normal of the points of A exactly at its own nearest
distance. Means are not renormalised, and sums and divisions are float32, as in pc_error.
"""

from __future__ import annotations

import numpy as np

from imcodec.jit import njit
from imcodec.metrics.grid import Grid
from imcodec.metrics.nn import knn_self
from imcodec.metrics.parallel import run_ranges
from imcodec.metrics.ties import Neighbours

NORMAL_NEIGHBOURS = 12


@njit(cache=True, nogil=True)
def _jacobi_smallest(a, v):
    """Eigenvector of the smallest eigenvalue of the symmetric 3x3 a (overwritten); v is scratch (3, 3)."""
    for i in range(3):
        for j in range(3):
            v[i, j] = 1.0 if i == j else 0.0
    scale = abs(a[0, 0]) + abs(a[1, 1]) + abs(a[2, 2]) + abs(a[0, 1]) + abs(a[0, 2]) + abs(a[1, 2])
    for _sweep in range(32):
        off = abs(a[0, 1]) + abs(a[0, 2]) + abs(a[1, 2])
        if off <= 1e-18 * scale or off == 0.0:
            break
        for p in range(2):
            for q in range(p + 1, 3):
                apq = a[p, q]
                if apq == 0.0:
                    continue
                theta = (a[q, q] - a[p, p]) / (2.0 * apq)
                t = 1.0 / (abs(theta) + np.sqrt(theta * theta + 1.0))
                if theta < 0.0:
                    t = -t
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                a[p, p] -= t * apq
                a[q, q] += t * apq
                a[p, q] = 0.0
                a[q, p] = 0.0
                r = 3 - p - q  # the third index
                arp, arq = a[r, p], a[r, q]
                a[r, p] = c * arp - s * arq
                a[p, r] = a[r, p]
                a[r, q] = s * arp + c * arq
                a[q, r] = a[r, q]
                for i in range(3):
                    vip, viq = v[i, p], v[i, q]
                    v[i, p] = c * vip - s * viq
                    v[i, q] = s * vip + c * viq
    m = 0
    if a[1, 1] < a[m, m]:
        m = 1
    if a[2, 2] < a[m, m]:
        m = 2
    nx, ny, nz = v[0, m], v[1, m], v[2, m]
    big = nx
    if abs(ny) > abs(big):
        big = ny
    if abs(nz) > abs(big):
        big = nz
    if big < 0.0:
        nx, ny, nz = -nx, -ny, -nz
    return nx, ny, nz


@njit(cache=True, nogil=True)
def _pca_normals(pts, idx, count, out, lo, hi):
    """Normals of points lo..hi-1 of pts ((N, 3) float32) from neighbour lists idx ((N, k) int32,
    count (N,) used entries) into out ((N, 3) float32)."""
    a = np.empty((3, 3), np.float64)
    v = np.empty((3, 3), np.float64)
    for i in range(lo, hi):
        m = count[i]
        mx = my = mz = 0.0
        for t in range(m):
            j = idx[i, t]
            mx += pts[j, 0]
            my += pts[j, 1]
            mz += pts[j, 2]
        mx /= m
        my /= m
        mz /= m
        cxx = cxy = cxz = cyy = cyz = czz = 0.0
        for t in range(m):
            j = idx[i, t]
            dx = pts[j, 0] - mx
            dy = pts[j, 1] - my
            dz = pts[j, 2] - mz
            cxx += dx * dx
            cxy += dx * dy
            cxz += dx * dz
            cyy += dy * dy
            cyz += dy * dz
            czz += dz * dz
        a[0, 0], a[0, 1], a[0, 2] = cxx, cxy, cxz
        a[1, 0], a[1, 1], a[1, 2] = cxy, cyy, cyz
        a[2, 0], a[2, 1], a[2, 2] = cxz, cyz, czz
        nx, ny, nz = _jacobi_smallest(a, v)
        out[i, 0] = nx
        out[i, 1] = ny
        out[i, 2] = nz


def estimate_normals(grid: Grid, k: int = NORMAL_NEIGHBOURS) -> np.ndarray:
    """PCA normals ((N, 3) float32, cloud order) of the cloud indexed by grid."""
    idx, count = knn_self(grid, k)
    out = np.empty((len(grid.coords), 3), np.float32)
    run_ranges(_pca_normals, len(grid.coords), grid.coords, idx, count, out)
    return out


@njit(cache=True, nogil=True)
def _transfer(normals_a, ab_offsets, ab_index, ab_exact, ba_offsets, ba_index, ba_exact, n_b):
    nb = np.zeros((n_b, 3), np.float32)
    counts = np.zeros(n_b, np.int64)
    for i in range(normals_a.shape[0]):  # A -> B: scatter in A's order (float32 sums)
        o = ab_offsets[i]
        for t in range(o, o + ab_exact[i]):
            j = ab_index[t]
            nb[j, 0] += normals_a[i, 0]
            nb[j, 1] += normals_a[i, 1]
            nb[j, 2] += normals_a[i, 2]
            counts[j] += 1
    for j in range(n_b):
        if counts[j] > 0:
            c = np.float32(counts[j])
            nb[j, 0] = nb[j, 0] / c
            nb[j, 1] = nb[j, 1] / c
            nb[j, 2] = nb[j, 2] / c
        else:  # no A point chose j: mean normal of j's own nearest A points
            o = ba_offsets[j]
            num = ba_exact[j]
            for t in range(o, o + num):
                i = ba_index[t]
                nb[j, 0] += normals_a[i, 0]
                nb[j, 1] += normals_a[i, 1]
                nb[j, 2] += normals_a[i, 2]
            c = np.float32(num)
            nb[j, 0] = nb[j, 0] / c
            nb[j, 1] = nb[j, 1] / c
            nb[j, 2] = nb[j, 2] / c
    return nb


def transfer_normals(normals_a: np.ndarray, a_to_b: Neighbours, b_to_a: Neighbours) -> np.ndarray:
    """B's normals ((M, 3) float32) derived from A's ((N, 3)) as pc_error's scaleNormals does."""
    na = np.ascontiguousarray(normals_a, dtype=np.float32)
    return _transfer(na, a_to_b.offsets, a_to_b.index, a_to_b.n_exact,
                     b_to_a.offsets, b_to_a.index, b_to_a.n_exact, len(b_to_a.d2))


def align_normals(points_a: np.ndarray, points_n: np.ndarray, normals: np.ndarray, source: str) -> np.ndarray:
    """Normals of a normals file ((K, 3) positions points_n) put in A's point order ((N, 3) points_a).

    pc_error pairs the normals file with A by position (both are sorted before use), so a file that
    lists A's points in another order is accepted. Raises InputError naming `source` when the
    positions (compared as float32) are not the same set as A's.
    """
    from imcodec.errors import InputError
    from imcodec.metrics.dedup import lexsort_order

    na = np.ascontiguousarray(normals, dtype=np.float32)
    pa = np.ascontiguousarray(points_a, dtype=np.float32)
    pn = np.ascontiguousarray(points_n, dtype=np.float32)
    if pa.shape == pn.shape and np.array_equal(pa, pn):
        return na
    if pa.shape != pn.shape:
        raise InputError(f"{source}: has {len(pn)} points, A has {len(pa)}")
    integer = bool(np.all(pa == np.rint(pa)) and np.all(pn == np.rint(pn)))
    oa = lexsort_order(pa, integer)
    on = lexsort_order(pn, integer)
    if not np.array_equal(pa[oa], pn[on]):
        raise InputError(f"{source}: its x/y/z are not the points of A (normals must come from A's positions)")
    out = np.empty_like(na)
    out[oa] = na[on]
    return out

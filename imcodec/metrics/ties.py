"""Nearest neighbours with pc_error's equidistant-neighbour rules, for every point of a cloud.

For each query point, pc_error 0.14 (``findMetric``) asks its k-d tree for k = 10 neighbours, growing
k by 5 (up to 30) while all k are exactly at the nearest distance, and then treats as "at the same
distance" the leading neighbours each within 1e-8 (``similarPointThreshold``) of the previous one.
Its normal transfer (``scaleNormals``) uses the neighbours exactly at the nearest distance (at most
30). :func:`nearest_with_ties` returns both, with neighbours sorted by (distance, index); where
pc_error would keep an arbitrary 30 of more than 30 tied points we keep the 30 smallest indices.

The search (exact): queries are grouped by the target-grid cell they fall in. A query first looks
at its own cell and stops when no other cell can hold a point as close (after the tie window);
otherwise it scans the 3x3x3 block of cells around its cell, gathered once per group, and stops
when nothing outside the block can compete; the few queries left (far from the target, or in very
dense blocks) get the ring search of nn.py in a second pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcodec.jit import njit
from imcodec.metrics.dedup import radix_argsort
from imcodec.metrics.grid import Grid
from imcodec.metrics.nn import (BLOCK_CAP, LB_SLACK, MAX_TIES, TIE_CAP, block_gap, gather_block, grid_args,
                                lower_bound, offer_tie, sort_buffer, tie_counts, ties_range)
from imcodec.metrics.parallel import run_ranges

FLOAT_WINDOW = 3e-7  # > 29 * 1e-8: every point a chain of 30 near-ties can reach
SMALL_K = 8          # neighbour slots per query in the first pass; rows with more are redone


@dataclass(frozen=True)
class Neighbours:
    """Nearest target points of each query.

    d2:      (N,) float64 squared distance to the nearest target point.
    offsets: (N + 1,) int64 CSR offsets into ``index``.
    index:   (T,) int32 target indices per query, sorted by (distance, index): pc_error's
             "same distance" neighbours (chained within 1e-8, at most 30).
    n_exact: (N,) int32 number of leading entries exactly at d2 (at most 30).
    """

    d2: np.ndarray
    offsets: np.ndarray
    index: np.ndarray
    n_exact: np.ndarray


@njit(cache=True, nogil=True)
def _query_keys(q, origin, cell, dims):
    """(N,) int64 target-grid cell key (cx * ny + cy) * nz + cz + 1 of each query, 0 outside the grid."""
    n = q.shape[0]
    keys = np.empty(n, np.int64)
    inv = 1.0 / cell
    for i in range(n):
        cx = np.int64(np.floor((np.float64(q[i, 0]) - origin[0]) * inv))
        cy = np.int64(np.floor((np.float64(q[i, 1]) - origin[1]) * inv))
        cz = np.int64(np.floor((np.float64(q[i, 2]) - origin[2]) * inv))
        if 0 <= cx < dims[0] and 0 <= cy < dims[1] and 0 <= cz < dims[2]:
            keys[i] = (cx * dims[1] + cy) * dims[2] + cz + 1
        else:
            keys[i] = 0
    return keys


@njit(cache=True, nogil=True)
def _groups(keys, order):
    """Runs of equal keys[order]: (starts (G + 1,) int64 into order, key - 1 of each run (-1 outside))."""
    n = order.shape[0]
    g = 0
    for t in range(n):
        if t == 0 or keys[order[t]] != keys[order[t - 1]]:
            g += 1
    starts = np.empty(g + 1, np.int64)
    gkey = np.empty(g, np.int64)
    g = 0
    for t in range(n):
        k = keys[order[t]]
        if t == 0 or k != keys[order[t - 1]]:
            starts[g] = t
            gkey[g] = k - 1
            g += 1
    starts[g] = n
    return starts, gkey


@njit(cache=True)
def _finish(i, buf_d, buf_i, nb, d2, n_exact, n_chain, idx):
    sort_buffer(buf_d, buf_i, nb)
    ne, nc = tie_counts(buf_d, nb)
    d2[i] = buf_d[0]
    n_exact[i] = ne
    n_chain[i] = nc
    for t in range(min(nc, idx.shape[1])):
        idx[i, t] = buf_i[t]


@njit(cache=True, nogil=True)
def _ties_grouped(q, qorder, gstart, gkey, sx, sy, sz, order, start, cell_xyz, cell_z, col_start, origin,
                  cell, edge, dims, window, d2, n_exact, n_chain, idx, lo, hi):
    """Nearest-with-ties for the queries of groups lo..hi-1 (see module docstring) into the outputs.

    q: (N, 3) float32; qorder: (N,) int32 queries sorted by target cell; gstart/gkey: the groups.
    d2 (N,) float64, n_exact/n_chain (N,) int32, idx (N, width) int32: per-query results; n_chain is
    set to -1 for the queries the block cannot settle (the caller runs the ring search for them).
    """
    ny, nz = dims[1], dims[2]
    ox, oy, oz = origin[0], origin[1], origin[2]
    buf_d = np.empty(TIE_CAP, np.float64)
    buf_i = np.empty(TIE_CAP, np.int32)
    bx = np.empty(BLOCK_CAP, np.float32)
    by = np.empty(BLOCK_CAP, np.float32)
    bz = np.empty(BLOCK_CAP, np.float32)
    bj = np.empty(BLOCK_CAP, np.int32)
    bd = np.empty(BLOCK_CAP, np.float64)
    for g in range(lo, hi):
        key = gkey[g]
        own_lo = own_hi = 0
        kx = ky = kz = -1
        nblock = -2  # block not gathered yet; -1: unusable (outside the grid or too many points)
        if key < 0:  # outside the target grid: ring search
            nblock = -1
        else:
            kz = key % nz
            col = key // nz
            ky = col % ny
            kx = col // ny
            c1 = col_start[col + 1]
            p = lower_bound(cell_z, col_start[col], c1, kz)
            if p < c1 and cell_z[p] == kz:
                own_lo = start[p]
                own_hi = start[p + 1]
        for t in range(gstart[g], gstart[g + 1]):
            i = qorder[t]
            qx, qy, qz = q[i, 0], q[i, 1], q[i, 2]
            fx, fy, fz = np.float64(qx), np.float64(qy), np.float64(qz)
            nb = 0
            done = False
            # 1. own cell, done if no other cell can hold a point within the window of the best
            best = np.inf
            for s in range(own_lo, own_hi):
                dx = np.float64(qx - sx[s])
                dy = np.float64(qy - sy[s])
                dz = np.float64(qz - sz[s])
                d = dx * dx + dy * dy + dz * dz
                if d < best:
                    best = d
            if best < np.inf:
                gap = min(fx - (kx * cell + ox - edge), (kx + 1) * cell + ox - fx,
                          fy - (ky * cell + oy - edge), (ky + 1) * cell + oy - fy,
                          fz - (kz * cell + oz - edge), (kz + 1) * cell + oz - fz)
                gap = max(gap, 0.0)
                if gap * gap * LB_SLACK > best + window:
                    for s in range(own_lo, own_hi):
                        dx = np.float64(qx - sx[s])
                        dy = np.float64(qy - sy[s])
                        dz = np.float64(qz - sz[s])
                        d = dx * dx + dy * dy + dz * dz
                        if d <= best + window:
                            nb = offer_tie(d, order[s], buf_d, buf_i, nb, TIE_CAP, window)
                    done = True
            # 2. the 3x3x3 block, done if nothing outside it can compete
            if not done and nblock == -2:
                nblock = gather_block(kx, ky, kz, sx, sy, sz, order, start, cell_z, col_start, dims,
                                      bx, by, bz, bj)
            if not done and nblock > 0:
                best = np.inf
                for s in range(nblock):
                    dx = np.float64(qx - bx[s])
                    dy = np.float64(qy - by[s])
                    dz = np.float64(qz - bz[s])
                    d = dx * dx + dy * dy + dz * dz
                    bd[s] = d
                    best = min(best, d)
                out = block_gap(fx, fy, fz, kx, ky, kz, origin, cell, edge, dims)
                if out == np.inf or out * out * LB_SLACK > best + window:
                    lim = best + window
                    for s in range(nblock):
                        if bd[s] <= lim:
                            nb = offer_tie(bd[s], bj[s], buf_d, buf_i, nb, TIE_CAP, window)
                    done = True
            if done:
                _finish(i, buf_d, buf_i, nb, d2, n_exact, n_chain, idx)
            else:  # 3. rare: left to the ring search (nn.ties_range)
                n_chain[i] = -1


@njit(cache=True, nogil=True)
def _to_csr(n_chain, idx_small, big_rows, idx_big):
    """CSR of per-row neighbour lists: rows listed in big_rows (ascending) take their list from the
    matching row of idx_big, the others from idx_small."""
    n = n_chain.shape[0]
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    for i in range(n):
        offsets[i + 1] = offsets[i] + n_chain[i]
    flat = np.empty(offsets[n], np.int32)
    b = 0
    for i in range(n):
        o = offsets[i]
        if b < big_rows.shape[0] and big_rows[b] == i:
            for t in range(n_chain[i]):
                flat[o + t] = idx_big[b, t]
            b += 1
        else:
            for t in range(n_chain[i]):
                flat[o + t] = idx_small[i, t]
    return offsets, flat


def nearest_with_ties(queries: np.ndarray, grid: Grid, integer: bool) -> Neighbours:
    """pc_error's nearest neighbours (with equidistant ties) of queries ((N, 3) float32) in grid's cloud.

    integer: both clouds have integer coordinates (ties are then exact equalities; no 1e-8 window).
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n = len(q)
    window = 0.0 if integer else FLOAT_WINDOW
    args = grid_args(grid)
    keys = _query_keys(q, grid.origin, grid.cell, grid.dims)
    nbits = int(grid.dims[0] * grid.dims[1] * grid.dims[2]).bit_length()
    qorder = radix_argsort(keys, nbits, np.arange(n, dtype=np.int32))
    gstart, gkey = _groups(keys, qorder)
    d2 = np.empty(n, np.float64)
    n_exact = np.empty(n, np.int32)
    n_chain = np.empty(n, np.int32)
    idx = np.empty((n, SMALL_K), np.int32)
    run_ranges(_ties_grouped, len(gkey), q, qorder, gstart, gkey, *args, window, d2, n_exact, n_chain, idx)
    # ring search for the queries the blocks did not settle, and for rows with more than SMALL_K
    # neighbours (redone to keep all of them)
    redo = np.flatnonzero((n_chain < 0) | (n_chain > SMALL_K))
    m = len(redo)
    idx_big = np.empty((m, MAX_TIES), np.int32)
    if m:
        qb = np.ascontiguousarray(q[redo])
        d2b = np.empty(m, np.float64)
        neb = np.empty(m, np.int32)
        ncb = np.empty(m, np.int32)
        run_ranges(ties_range, m, qb, *args, window, d2b, neb, ncb, idx_big)
        d2[redo], n_exact[redo], n_chain[redo] = d2b, neb, ncb
    offsets, flat = _to_csr(n_chain, idx, redo, idx_big)
    return Neighbours(d2=d2, offsets=offsets, index=flat, n_exact=n_exact)

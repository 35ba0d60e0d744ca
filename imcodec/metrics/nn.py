"""Exact nearest-neighbour search on a cell grid (grid.py): the primitives behind ties.py, and k-NN.

Distances are computed the way MPEG pc_error 0.14 computes them: coordinates are float32, each
coordinate difference is a float32 subtraction, and the squares are summed in float64 in x, y, z
order. For integer clouds this is exact integer arithmetic.

Most queries are settled by the 3x3x3 block of cells around their own cell: :func:`gather_block`
copies those cells once for all the queries in a cell, and :func:`block_gap` says when the block
settles a query (nothing outside it can be as close). The others use :func:`search`, which visits
cells in growing Chebyshev rings around the query's cell, skips cells whose lower bound exceeds the
current limit and stops when the next ring cannot hold a closer (or equal) point; far-away queries
fall back to a scan of all occupied cells, so results are always exact. The buffers keep either every
point within a window of the nearest distance (ties mode, for ties.py) or the k nearest points (ties
broken by index): :func:`knn_self` gives the k nearest points of each point of a cloud (normal
estimation). :func:`tie_counts` applies pc_error's rules for which equidistant points count.
"""

from __future__ import annotations

import numpy as np

from imcodec.jit import njit
from imcodec.metrics.grid import Grid
from imcodec.metrics.parallel import run_ranges

TIE_CAP = 64        # candidates kept near the nearest distance (pc_error uses at most 30)
MAX_TIES = 30       # pc_error's num_results_max
CHAIN_EPS = 1e-8    # pc_error's similarPointThreshold
LB_SLACK = 1.0 - 1e-6  # float32 differences may round a distance down by ~2**-23 relative
BLOCK_CAP = 4096    # points of a 3x3x3 block of cells kept in scratch; larger blocks use the ring search
_BLOCK_OFFSETS = np.array(sorted(((x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)),
                                 key=lambda o: (o[0] ** 2 + o[1] ** 2 + o[2] ** 2, o)), dtype=np.int64)


@njit(cache=True)
def _gap(f, c, k, origin, cell, edge):
    """Lower bound on |f - x| for x in cell c along one axis, f lying in cell k."""
    if c < k:
        g = f - ((c + 1) * cell + origin - edge)
    elif c > k:
        g = (c * cell + origin) - f
    else:
        return 0.0
    return g if g > 0.0 else 0.0


@njit(cache=True)
def _limit(buf_d, nbuf, cap, window):
    """Largest squared distance a new candidate may have to enter the buffer."""
    if window >= 0.0:  # ties mode: everything within window of the best (kept in slot 0)
        return buf_d[0] + window if nbuf > 0 else np.inf
    return buf_d[nbuf - 1] if nbuf == cap else np.inf  # k-NN mode: the k-th best


@njit(cache=True)
def _worst(buf_d, buf_i, nbuf):
    """Slot of the largest (distance, index) entry."""
    w = 0
    for t in range(1, nbuf):
        if buf_d[t] > buf_d[w] or (buf_d[t] == buf_d[w] and buf_i[t] > buf_i[w]):
            w = t
    return w


@njit(cache=True)
def offer_tie(d, j, buf_d, buf_i, nbuf, cap, window):
    """Ties mode: unsorted buffer of the entries within window of the best, best in slot 0.

    The caller has checked d <= best + window. Returns the new length.
    """
    if nbuf > 0 and d < buf_d[0]:  # new best: drop what falls outside the window, put it first
        lim = d + window
        m = 0
        for t in range(nbuf):
            if buf_d[t] <= lim:
                buf_d[m] = buf_d[t]
                buf_i[m] = buf_i[t]
                m += 1
        if m == cap:
            w = _worst(buf_d, buf_i, m)
            m -= 1
            buf_d[w] = buf_d[m]
            buf_i[w] = buf_i[m]
        if m > 0:
            buf_d[m] = buf_d[0]
            buf_i[m] = buf_i[0]
        buf_d[0] = d
        buf_i[0] = j
        return m + 1
    if nbuf < cap:
        buf_d[nbuf] = d
        buf_i[nbuf] = j
        return nbuf + 1
    w = _worst(buf_d, buf_i, nbuf)
    if d < buf_d[w] or (d == buf_d[w] and j < buf_i[w]):
        buf_d[w] = d
        buf_i[w] = j
    return nbuf


@njit(cache=True)
def _offer_knn(d, j, buf_d, buf_i, nbuf, cap):
    """k-NN mode: sorted insertion of (d, j) into the buffer of the cap best; returns the new length."""
    if nbuf == cap:
        if d > buf_d[nbuf - 1] or (d == buf_d[nbuf - 1] and j >= buf_i[nbuf - 1]):
            return nbuf
        nbuf -= 1
    p = nbuf
    while p > 0 and (buf_d[p - 1] > d or (buf_d[p - 1] == d and buf_i[p - 1] > j)):
        buf_d[p] = buf_d[p - 1]
        buf_i[p] = buf_i[p - 1]
        p -= 1
    buf_d[p] = d
    buf_i[p] = j
    return nbuf + 1


@njit(cache=True)
def sort_buffer(buf_d, buf_i, nbuf):
    """Insertion sort of the buffer by (distance, index)."""
    for t in range(1, nbuf):
        d = buf_d[t]
        j = buf_i[t]
        p = t
        while p > 0 and (buf_d[p - 1] > d or (buf_d[p - 1] == d and buf_i[p - 1] > j)):
            buf_d[p] = buf_d[p - 1]
            buf_i[p] = buf_i[p - 1]
            p -= 1
        buf_d[p] = d
        buf_i[p] = j


@njit(cache=True)
def _scan_cell(cid, qx, qy, qz, sx, sy, sz, order, start, buf_d, buf_i, nbuf, cap, window):
    lim = _limit(buf_d, nbuf, cap, window)
    for p in range(start[cid], start[cid + 1]):
        dx = np.float64(qx - sx[p])
        dy = np.float64(qy - sy[p])
        dz = np.float64(qz - sz[p])
        d = dx * dx + dy * dy + dz * dz
        if d <= lim:
            if window >= 0.0:
                nbuf = offer_tie(d, order[p], buf_d, buf_i, nbuf, cap, window)
            else:
                nbuf = _offer_knn(d, order[p], buf_d, buf_i, nbuf, cap)
            lim = _limit(buf_d, nbuf, cap, window)
    return nbuf


@njit(cache=True)
def lower_bound(a, lo, hi, v):
    """First index in [lo, hi) with a[index] >= v (a sorted there), or hi."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def search(qx, qy, qz, sx, sy, sz, order, start, cell_xyz, cell_z, col_start, origin, cell, edge, dims,
            buf_d, buf_i, cap, window):
    """Ring search for one query (float32 coordinates); fills the buffer, returns its length.

    window >= 0: keep every point within window of the nearest squared distance (at most cap, those
    with the smallest (distance, index)); the buffer is unsorted with the nearest in slot 0.
    window < 0: keep the cap nearest points (ties broken by index), sorted.
    """
    fx, fy, fz = np.float64(qx), np.float64(qy), np.float64(qz)
    ox, oy, oz = origin[0], origin[1], origin[2]
    nx, ny, nz = dims[0], dims[1], dims[2]
    kx = np.int64(np.floor((fx - ox) / cell))
    ky = np.int64(np.floor((fy - oy) / cell))
    kz = np.int64(np.floor((fz - oz) / cell))
    r = max(0, -kx, kx - (nx - 1), -ky, ky - (ny - 1), -kz, kz - (nz - 1))
    rmax = max(kx, nx - 1 - kx, ky, ny - 1 - ky, kz, nz - 1 - kz)
    budget = 4 * cell_xyz.shape[0] + 64
    nbuf = 0
    full_scan = False
    while r <= rmax:
        x0, x1 = max(kx - r, 0), min(kx + r, nx - 1)
        y0, y1 = max(ky - r, 0), min(ky + r, ny - 1)
        z0, z1 = max(kz - r, 0), min(kz + r, nz - 1)
        budget -= (x1 - x0 + 1) * (y1 - y0 + 1)
        if budget < 0:  # far from everything: scan all occupied cells instead (below)
            full_scan = True
            break
        for cx in range(x0, x1 + 1):
            onx = cx == kx - r or cx == kx + r
            gx = _gap(fx, cx, kx, ox, cell, edge)
            gx2 = gx * gx
            if gx2 * LB_SLACK > _limit(buf_d, nbuf, cap, window):
                continue
            for cy in range(y0, y1 + 1):
                col = cx * ny + cy
                c0 = col_start[col]
                c1 = col_start[col + 1]
                if c0 == c1:
                    continue
                gy = _gap(fy, cy, ky, oy, cell, edge)
                gxy = gx2 + gy * gy
                if gxy * LB_SLACK > _limit(buf_d, nbuf, cap, window):
                    continue
                interior = not (onx or cy == ky - r or cy == ky + r)  # only its two z faces are in the ring
                p = lower_bound(cell_z, c0, c1, z0)
                while p < c1 and cell_z[p] <= z1:
                    cz = cell_z[p]
                    if interior and kz - r < cz < kz + r:
                        p = lower_bound(cell_z, p, c1, kz + r)
                        continue
                    gz = _gap(fz, cz, kz, oz, cell, edge)
                    if (gxy + gz * gz) * LB_SLACK <= _limit(buf_d, nbuf, cap, window):
                        nbuf = _scan_cell(p, qx, qy, qz, sx, sy, sz, order, start, buf_d, buf_i, nbuf, cap, window)
                    elif cz > kz:
                        break  # further cells of the column are even farther
                    p += 1
        # lower bound on any point in ring r + 1
        g = np.inf
        if kx + r + 1 <= nx - 1:
            g = min(g, (kx + r + 1) * cell + ox - fx)
        if kx - r - 1 >= 0:
            g = min(g, fx - ((kx - r) * cell + ox - edge))
        if ky + r + 1 <= ny - 1:
            g = min(g, (ky + r + 1) * cell + oy - fy)
        if ky - r - 1 >= 0:
            g = min(g, fy - ((ky - r) * cell + oy - edge))
        if kz + r + 1 <= nz - 1:
            g = min(g, (kz + r + 1) * cell + oz - fz)
        if kz - r - 1 >= 0:
            g = min(g, fz - ((kz - r) * cell + oz - edge))
        if g == np.inf:
            break
        g = max(g, 0.0)
        if g * g * LB_SLACK > _limit(buf_d, nbuf, cap, window):
            break
        r += 1
    if full_scan:
        nbuf = 0
        for cid in range(cell_xyz.shape[0]):
            gx = _gap(fx, cell_xyz[cid, 0], kx, ox, cell, edge)
            gy = _gap(fy, cell_xyz[cid, 1], ky, oy, cell, edge)
            gz = _gap(fz, cell_xyz[cid, 2], kz, oz, cell, edge)
            if (gx * gx + gy * gy + gz * gz) * LB_SLACK <= _limit(buf_d, nbuf, cap, window):
                nbuf = _scan_cell(cid, qx, qy, qz, sx, sy, sz, order, start, buf_d, buf_i, nbuf, cap, window)
    return nbuf


@njit(cache=True)
def gather_block(kx, ky, kz, sx, sy, sz, order, start, cell_z, col_start, dims, bx, by, bz, bj):
    """Copies the points of the 3x3x3 cells around (kx, ky, kz) into bx/by/bz/bj, nearest cells first
    (own cell, faces, edges, corners); returns their number, or -1 if they do not fit."""
    nx, ny, nz = dims[0], dims[1], dims[2]
    m = 0
    for o in range(_BLOCK_OFFSETS.shape[0]):
        cx = kx + _BLOCK_OFFSETS[o, 0]
        cy = ky + _BLOCK_OFFSETS[o, 1]
        cz = kz + _BLOCK_OFFSETS[o, 2]
        if cx < 0 or cx >= nx or cy < 0 or cy >= ny or cz < 0 or cz >= nz:
            continue
        col = cx * ny + cy
        c1 = col_start[col + 1]
        p = lower_bound(cell_z, col_start[col], c1, cz)
        if p == c1 or cell_z[p] != cz:
            continue
        if m + start[p + 1] - start[p] > bx.shape[0]:
            return -1
        for s in range(start[p], start[p + 1]):
            bx[m] = sx[s]
            by[m] = sy[s]
            bz[m] = sz[s]
            bj[m] = order[s]
            m += 1
    return m


@njit(cache=True)
def block_gap(fx, fy, fz, kx, ky, kz, origin, cell, edge, dims):
    """Lower bound on the distance from (fx, fy, fz) in cell (kx, ky, kz) to any grid cell outside the
    3x3x3 block around it (inf when the block covers the whole grid)."""
    nx, ny, nz = dims[0], dims[1], dims[2]
    out = np.inf
    if kx + 2 <= nx - 1:
        out = min(out, (kx + 2) * cell + origin[0] - fx)
    if kx - 2 >= 0:
        out = min(out, fx - ((kx - 1) * cell + origin[0] - edge))
    if ky + 2 <= ny - 1:
        out = min(out, (ky + 2) * cell + origin[1] - fy)
    if ky - 2 >= 0:
        out = min(out, fy - ((ky - 1) * cell + origin[1] - edge))
    if kz + 2 <= nz - 1:
        out = min(out, (kz + 2) * cell + origin[2] - fz)
    if kz - 2 >= 0:
        out = min(out, fz - ((kz - 1) * cell + origin[2] - edge))
    return out


@njit(cache=True)
def tie_counts(buf_d, nbuf):
    """(n_exact, n_chain) of a sorted tie buffer, following pc_error's k-NN growth rules."""
    n_exact = 1
    while n_exact < nbuf and buf_d[n_exact] == buf_d[0]:
        n_exact += 1
    k = 10  # findMetric: k = 10, grown by 5 while all k are exactly tied, up to 30
    while n_exact >= k and k + 5 <= MAX_TIES:
        k += 5
    lim = min(k, nbuf)
    n_chain = 1
    while n_chain < lim and abs(buf_d[n_chain] - buf_d[n_chain - 1]) < CHAIN_EPS:
        n_chain += 1
    return min(n_exact, MAX_TIES), n_chain


@njit(cache=True, nogil=True)
def ties_range(q, sx, sy, sz, order, start, cell_xyz, cell_z, col_start, origin, cell, edge, dims, window,
                d2, n_exact, n_chain, idx, lo, hi):
    """Nearest-with-ties for queries lo..hi-1 of q ((N, 3) float32) into the output rows.

    d2 (N,) float64, n_exact/n_chain (N,) int32, idx (N, width) int32: at most width indices per row.
    """
    width = idx.shape[1]
    buf_d = np.empty(TIE_CAP, np.float64)
    buf_i = np.empty(TIE_CAP, np.int32)
    for i in range(lo, hi):
        nb = search(q[i, 0], q[i, 1], q[i, 2], sx, sy, sz, order, start, cell_xyz, cell_z, col_start,
                    origin, cell, edge, dims, buf_d, buf_i, TIE_CAP, window)
        sort_buffer(buf_d, buf_i, nb)
        ne, nc = tie_counts(buf_d, nb)
        d2[i] = buf_d[0]
        n_exact[i] = ne
        n_chain[i] = nc
        for t in range(min(nc, width)):
            idx[i, t] = buf_i[t]


@njit(cache=True, nogil=True)
def _knn_self(sx, sy, sz, order, start, cell_xyz, cell_z, col_start, origin, cell, edge, dims, idx, count, lo, hi):
    """k nearest points (the point itself included) of every point in cells lo..hi-1 of a grid's own
    cloud into idx ((M, k) int32, cloud order) and count ((M,) int32). Each cell's 3x3x3 block is
    gathered once; a point whose k-th distance the block cannot guarantee gets count -1 (the caller
    runs knn_range for it)."""
    k = idx.shape[1]
    m = sx.shape[0]
    buf_d = np.empty(k, np.float64)
    buf_i = np.empty(k, np.int32)
    bx = np.empty(BLOCK_CAP, np.float32)
    by = np.empty(BLOCK_CAP, np.float32)
    bz = np.empty(BLOCK_CAP, np.float32)
    bj = np.empty(BLOCK_CAP, np.int32)
    for c in range(lo, hi):
        kx, ky, kz = cell_xyz[c, 0], cell_xyz[c, 1], cell_xyz[c, 2]
        nblock = gather_block(kx, ky, kz, sx, sy, sz, order, start, cell_z, col_start, dims, bx, by, bz, bj)
        for s in range(start[c], start[c + 1]):
            qx, qy, qz = sx[s], sy[s], sz[s]
            nb = 0
            ok = False
            if nblock > 0:
                for t in range(nblock):
                    dx = np.float64(qx - bx[t])
                    dy = np.float64(qy - by[t])
                    dz = np.float64(qz - bz[t])
                    d = dx * dx + dy * dy + dz * dz
                    if nb < k or d <= buf_d[k - 1]:
                        nb = _offer_knn(d, bj[t], buf_d, buf_i, nb, k)
                out = block_gap(np.float64(qx), np.float64(qy), np.float64(qz), kx, ky, kz, origin, cell, edge, dims)
                if out == np.inf:
                    ok = nb == min(k, m)
                else:
                    ok = nb == k and out * out * LB_SLACK > buf_d[k - 1]
            i = order[s]
            if not ok:  # left to the ring search (knn_range)
                count[i] = -1
                continue
            count[i] = nb
            for t in range(nb):
                idx[i, t] = buf_i[t]


@njit(cache=True, nogil=True)
def knn_range(q, sx, sy, sz, order, start, cell_xyz, cell_z, col_start, origin, cell, edge, dims,
              idx, count, lo, hi):
    """k nearest target points (ring search) of queries lo..hi-1 of q ((N, 3) float32) into
    idx ((N, k) int32) and count ((N,) int32)."""
    k = idx.shape[1]
    buf_d = np.empty(k, np.float64)
    buf_i = np.empty(k, np.int32)
    for i in range(lo, hi):
        nb = search(q[i, 0], q[i, 1], q[i, 2], sx, sy, sz, order, start, cell_xyz, cell_z, col_start,
                    origin, cell, edge, dims, buf_d, buf_i, k, -1.0)
        count[i] = nb
        for t in range(nb):
            idx[i, t] = buf_i[t]


def grid_args(grid: Grid) -> tuple:
    """The grid arrays in the order the kernels take them."""
    return (grid.sx, grid.sy, grid.sz, grid.order, grid.start, grid.cell_xyz, grid.cell_z,
            grid.col_start, grid.origin, grid.cell, grid.edge, grid.dims)


def knn_self(grid: Grid, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest points of every point of grid's own cloud (itself included), ties broken by index.

    Returns idx (M, k) int32 in cloud order (-1 padded when the cloud has fewer than k points) and
    counts (M,) int32.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    m = len(grid.order)
    idx = np.full((m, k), -1, np.int32)
    count = np.empty(m, np.int32)
    args = grid_args(grid)
    run_ranges(_knn_self, grid.n_cells, *args, idx, count)
    redo = np.flatnonzero(count < 0)
    if len(redo):
        sub_idx = np.full((len(redo), k), -1, np.int32)
        sub_count = np.empty(len(redo), np.int32)
        run_ranges(knn_range, len(redo), np.ascontiguousarray(grid.coords[redo]), *args, sub_idx, sub_count)
        idx[redo] = sub_idx
        count[redo] = sub_count
    return idx, count

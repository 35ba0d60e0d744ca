"""Normals and segmentation of a voxelised cloud into the six axis-aligned projection planes.

Follows the V-PCC patch-generation front end (ISO/IEC 23090-5 Annex / TMC2, Mammou et al.,
"Video-based and hierarchical approaches to point cloud compression", MPEG m41649):

1. normals by PCA over the k nearest neighbours (k = 16), oriented away from the centroid;
2. initial segmentation: each point to the plane ``argmax_p n . d_p`` with
   ``d_p`` in (+x, +y, +z, -x, -y, -z);
3. refinement by neighbour voting on a voxel grid (TMC2 ``gridBasedRefineSegmentation``): the score
   of plane p for a point is ``n . d_p + lambda * h_p / h`` with ``h_p`` the number of points labelled
   p in the voxels within the search radius of the point's voxel and ``h`` their total; iterated.
"""

from __future__ import annotations

import math

import numpy as np
from imcodec.jit import njit

from imcodec.vpcc.grid import hash_build, hash_find

# plane p: projection axis p % 3; outward normal +axis for p < 3, -axis for p >= 3
PLANE_DIRS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0], [0, -1, 0], [0, 0, -1]],
                      dtype=np.float64)


def estimate_normals(coords: np.ndarray, k: int = 16, workers: int = 1) -> np.ndarray:
    """Unit normals by PCA over the ``k`` nearest neighbours, oriented away from the centroid.

    coords: (N, 3) float64 or integer positions. Returns (N, 3) float64.
    """
    from scipy.spatial import cKDTree

    pts = np.ascontiguousarray(coords, dtype=np.float64)
    n = len(pts)
    if n == 0:
        return np.zeros((0, 3))
    k = int(min(max(k, 3), n))
    _, idx = cKDTree(pts).query(pts, k=k, workers=max(1, workers))
    idx = np.ascontiguousarray(idx.reshape(n, k), dtype=np.int64)
    centroid = pts.mean(axis=0)
    return _pca_normals(pts, idx, centroid)


def estimate_normals_grid(coords: np.ndarray, cell: int = 2, reach: int = 1) -> np.ndarray:
    """Unit normals by PCA over the points in the (2 * reach + 1)^3 cells of side ``cell`` around each
    point's cell (moments summed per cell, so no neighbour search), oriented away from the centroid.

    coords: (N, 3) non-negative integers (< 2**21). Points of one cell share a normal.
    Returns (N, 3) float64.
    """
    pts = np.ascontiguousarray(coords, dtype=np.int64)
    if len(pts) == 0:
        return np.zeros((0, 3))
    cells = pts // max(1, cell)
    keys = (cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2]
    ukeys, inv = np.unique(keys, return_inverse=True)
    inv = inv.astype(np.int64)
    centroid = pts.mean(axis=0)
    # per-cell moments about the centroid: count, sums, second moments (xx, xy, xz, yy, yz, zz)
    q = pts - np.rint(centroid).astype(np.int64)
    mom = np.zeros((len(ukeys), 10))
    mom[:, 0] = np.bincount(inv, minlength=len(ukeys))
    cols = [q[:, 0], q[:, 1], q[:, 2], q[:, 0] * q[:, 0], q[:, 0] * q[:, 1], q[:, 0] * q[:, 2],
            q[:, 1] * q[:, 1], q[:, 1] * q[:, 2], q[:, 2] * q[:, 2]]
    for j, c in enumerate(cols):
        mom[:, j + 1] = np.bincount(inv, weights=c.astype(np.float64), minlength=len(ukeys))
    normals = _grid_normals(ukeys, mom, int(reach), centroid - np.rint(centroid))
    return normals[inv]


@njit(cache=True)
def _grid_normals(ukeys, mom, reach, shift):
    """Normal per cell from the moments of the cells within ``reach``; orientation away from the
    centroid, which sits at ``-shift`` in the moment coordinates."""
    nc = ukeys.shape[0]
    tk, tv = hash_build(ukeys)
    mask = (1 << 21) - 1
    out = np.empty((nc, 3))
    acc = np.empty(10)
    vec = np.empty(3)
    for c in range(nc):
        x = (ukeys[c] >> 42) & mask
        y = (ukeys[c] >> 21) & mask
        z = ukeys[c] & mask
        acc[:] = 0.0
        for dx in range(-reach, reach + 1):
            for dy in range(-reach, reach + 1):
                for dz in range(-reach, reach + 1):
                    nx, ny, nz = x + dx, y + dy, z + dz
                    if nx < 0 or ny < 0 or nz < 0:
                        continue
                    j = hash_find(tk, tv, (nx << 42) | (ny << 21) | nz)
                    if j >= 0:
                        for t in range(10):
                            acc[t] += mom[j, t]
        n = acc[0]
        mx, my, mz = acc[1] / n, acc[2] / n, acc[3] / n
        c00 = acc[4] / n - mx * mx
        c01 = acc[5] / n - mx * my
        c02 = acc[6] / n - mx * mz
        c11 = acc[7] / n - my * my
        c12 = acc[8] / n - my * mz
        c22 = acc[9] / n - mz * mz
        _smallest_eigvec(c00, c01, c02, c11, c12, c22, vec)
        # own cell's mean, relative to the centroid
        own = c
        ox = mom[own, 1] / mom[own, 0] + shift[0]
        oy = mom[own, 2] / mom[own, 0] + shift[1]
        oz = mom[own, 3] / mom[own, 0] + shift[2]
        if vec[0] * ox + vec[1] * oy + vec[2] * oz < 0.0:
            vec[0], vec[1], vec[2] = -vec[0], -vec[1], -vec[2]
        out[c, 0], out[c, 1], out[c, 2] = vec[0], vec[1], vec[2]
    return out


@njit(cache=True)
def _smallest_eigvec(a00, a01, a02, a11, a12, a22, out):
    """Unit eigenvector of the smallest eigenvalue of a symmetric 3x3 matrix (Smith 1961)."""
    p1 = a01 * a01 + a02 * a02 + a12 * a12
    q = (a00 + a11 + a22) / 3.0
    p2 = (a00 - q) ** 2 + (a11 - q) ** 2 + (a22 - q) ** 2 + 2.0 * p1
    if p2 <= 1e-30:
        out[0], out[1], out[2] = 0.0, 0.0, 1.0
        return
    p = math.sqrt(p2 / 6.0)
    b00, b11, b22 = (a00 - q) / p, (a11 - q) / p, (a22 - q) / p
    b01, b02, b12 = a01 / p, a02 / p, a12 / p
    det = b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02) + b02 * (b01 * b12 - b11 * b02)
    r = det / 2.0
    if r <= -1.0:
        phi = math.pi / 3.0
    elif r >= 1.0:
        phi = 0.0
    else:
        phi = math.acos(r) / 3.0
    lam = q + 2.0 * p * math.cos(phi + 2.0 * math.pi / 3.0)
    r0 = (a00 - lam, a01, a02)
    r1 = (a01, a11 - lam, a12)
    r2 = (a02, a12, a22 - lam)
    best = -1.0
    for pair in range(3):
        if pair == 0:
            u, v = r0, r1
        elif pair == 1:
            u, v = r0, r2
        else:
            u, v = r1, r2
        cx = u[1] * v[2] - u[2] * v[1]
        cy = u[2] * v[0] - u[0] * v[2]
        cz = u[0] * v[1] - u[1] * v[0]
        nn = cx * cx + cy * cy + cz * cz
        if nn > best:
            best = nn
            out[0], out[1], out[2] = cx, cy, cz
    if best <= 1e-30:
        # repeated smallest eigenvalue: any vector orthogonal to the dominant row
        m = r0
        if r1[0] ** 2 + r1[1] ** 2 + r1[2] ** 2 > m[0] ** 2 + m[1] ** 2 + m[2] ** 2:
            m = r1
        if r2[0] ** 2 + r2[1] ** 2 + r2[2] ** 2 > m[0] ** 2 + m[1] ** 2 + m[2] ** 2:
            m = r2
        if abs(m[0]) < 0.9:
            out[0], out[1], out[2] = 0.0, -m[2], m[1]
        else:
            out[0], out[1], out[2] = m[2], 0.0, -m[0]
        best = out[0] ** 2 + out[1] ** 2 + out[2] ** 2
        if best <= 1e-30:
            out[0], out[1], out[2] = 0.0, 0.0, 1.0
            return
    s = 1.0 / math.sqrt(best)
    out[0] *= s
    out[1] *= s
    out[2] *= s


@njit(cache=True)
def _pca_normals(pts, idx, centroid):
    n, k = idx.shape
    out = np.empty((n, 3))
    vec = np.empty(3)
    for i in range(n):
        mx = my = mz = 0.0
        for j in range(k):
            q = idx[i, j]
            mx += pts[q, 0]
            my += pts[q, 1]
            mz += pts[q, 2]
        mx /= k
        my /= k
        mz /= k
        c00 = c01 = c02 = c11 = c12 = c22 = 0.0
        for j in range(k):
            q = idx[i, j]
            dx, dy, dz = pts[q, 0] - mx, pts[q, 1] - my, pts[q, 2] - mz
            c00 += dx * dx
            c01 += dx * dy
            c02 += dx * dz
            c11 += dy * dy
            c12 += dy * dz
            c22 += dz * dz
        _smallest_eigvec(c00, c01, c02, c11, c12, c22, vec)
        ox, oy, oz = pts[i, 0] - centroid[0], pts[i, 1] - centroid[1], pts[i, 2] - centroid[2]
        if vec[0] * ox + vec[1] * oy + vec[2] * oz < 0.0:
            vec[0], vec[1], vec[2] = -vec[0], -vec[1], -vec[2]
        out[i, 0], out[i, 1], out[i, 2] = vec[0], vec[1], vec[2]
    return out


def initial_segmentation(normals: np.ndarray) -> np.ndarray:
    """(N,) int64 plane index 0..5 maximising normal . plane direction. normals: (N, 3) float."""
    if len(normals) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.argmax(normals @ PLANE_DIRS.T, axis=1).astype(np.int64)


def refine_segmentation(coords: np.ndarray, normals: np.ndarray, labels: np.ndarray,
                        lam: float = 3.0, iterations: int = 10, grid: int = 4,
                        radius2: float = 192.0) -> np.ndarray:
    """Neighbour-voting refinement of plane labels on a voxel grid (TMC2 grid-based refinement).

    coords: (N, 3) non-negative integers; normals: (N, 3) float; labels: (N,) int64 in 0..5.
    ``grid``: voxel edge; ``radius2``: squared search radius in point units (voxels whose offset
    times ``grid`` is within it count as neighbours). Returns new (N,) int64 labels.
    """
    n = len(coords)
    if n == 0 or iterations <= 0:
        return labels.copy()
    vox = np.asarray(coords, dtype=np.int64) // max(1, grid)
    vkeys = (vox[:, 0] << 42) | (vox[:, 1] << 21) | vox[:, 2]
    ukeys, vidx = np.unique(vkeys, return_inverse=True)
    r = int(math.floor(math.sqrt(radius2) / max(1, grid)))
    offs = [(dx, dy, dz) for dx in range(-r, r + 1) for dy in range(-r, r + 1) for dz in range(-r, r + 1)
            if (dx * dx + dy * dy + dz * dz) * grid * grid <= radius2]
    offsets = np.array(offs, dtype=np.int64).reshape(-1, 3)
    ptr, nbr = _voxel_neighbours(ukeys, offsets)
    nrm = np.asarray(normals, dtype=np.float64)
    score = np.ascontiguousarray(np.concatenate([nrm, -nrm], axis=1))  # n . PLANE_DIRS
    return _refine(score, np.ascontiguousarray(labels, dtype=np.int64), vidx.astype(np.int64),
                   len(ukeys), ptr, nbr, float(lam), int(iterations))


@njit(cache=True)
def _voxel_neighbours(ukeys, offsets):
    """CSR lists of occupied voxels within the offsets of each voxel (itself included)."""
    nv = ukeys.shape[0]
    tk, tv = hash_build(ukeys)
    mask = (1 << 21) - 1
    ptr = np.zeros(nv + 1, dtype=np.int64)
    cap = nv * 16 + 16
    nbr = np.empty(cap, dtype=np.int64)
    m = 0
    for v in range(nv):
        x = (ukeys[v] >> 42) & mask
        y = (ukeys[v] >> 21) & mask
        z = ukeys[v] & mask
        for o in range(offsets.shape[0]):
            nx, ny, nz = x + offsets[o, 0], y + offsets[o, 1], z + offsets[o, 2]
            if nx < 0 or ny < 0 or nz < 0:
                continue
            j = hash_find(tk, tv, (nx << 42) | (ny << 21) | nz)
            if j >= 0:
                if m == nbr.shape[0]:
                    grown = np.empty(nbr.shape[0] * 2, dtype=np.int64)
                    grown[:m] = nbr[:m]
                    nbr = grown
                nbr[m] = j
                m += 1
        ptr[v + 1] = m
    return ptr, nbr[:m].copy()


@njit(cache=True)
def _refine(score, labels, vidx, nv, ptr, nbr, lam, iterations):
    """Synchronous neighbour-voting iterations; the per-voxel neighbourhood label counts are updated
    incrementally from the points that changed (neighbourhoods are symmetric)."""
    n = labels.shape[0]
    lab = labels.copy()
    hist = np.zeros((nv, 6), dtype=np.int64)
    for i in range(n):
        hist[vidx[i], lab[i]] += 1
    acc = np.zeros((nv, 6), dtype=np.int64)
    for v in range(nv):
        for e in range(ptr[v], ptr[v + 1]):
            u = nbr[e]
            for p in range(6):
                acc[v, p] += hist[u, p]
    scale = np.zeros(nv)
    for v in range(nv):
        tot = 0
        for p in range(6):
            tot += acc[v, p]
        scale[v] = lam / tot if tot > 0 else 0.0
    new = np.empty(n, dtype=np.int64)
    for _ in range(iterations):
        changed = 0
        for i in range(n):
            v = vidx[i]
            best = -1e300
            bp = lab[i]
            for p in range(6):
                sc = score[i, p] + scale[v] * acc[v, p]
                if sc > best:
                    best = sc
                    bp = p
            new[i] = bp
            if bp != lab[i]:
                changed += 1
        if changed == 0:
            break
        for i in range(n):
            if new[i] != lab[i]:
                u = vidx[i]
                for e in range(ptr[u], ptr[u + 1]):
                    v = nbr[e]
                    acc[v, lab[i]] -= 1
                    acc[v, new[i]] += 1
                lab[i] = new[i]
    return lab

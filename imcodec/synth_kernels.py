"""Numba kernels behind :mod:`imcodec.synth`: the voxel shell of a union of primitives.

A shape is a union of primitives in object space, each given by a field that is <= 0 inside:

    kind 0 ellipsoid  columns 0:3 centre, 3:12 rotation rows (object -> local), 12:15 semi-axes
    kind 1 capsule    columns 0:3 and 3:6 segment ends, 6 radius
    kind 2 torus      columns 0:3 centre, 3:12 rotation rows, 12 ring radius (local xz plane), 13 tube radius
    kind 3 box        columns 0:3 centre, 3:12 rotation rows, 12:15 half sizes

The voxel p = (x, y, z) is inside when q = R^T (p - ripple(x, y) e_z - pivot - shift) + pivot is in
a primitive: a rigid motion (R, pivot, shift) and a depth ripple, a sum of travelling sines of
(x, y) that shifts each z column as a whole. A z column meets a convex primitive in one interval
(a quadratic or slab computation) and a torus in at most two (a quartic, split at its critical
points), so each column's inside runs are exact and cheap. A voxel is kept when it is inside with a
6-neighbour outside (or off the grid): the inner shell, found from the runs of each column and of
its four neighbours, and emitted sorted by (x, y, z).
"""

from __future__ import annotations

import math

import numpy as np

from imcodec.jit import njit

ELLIPSOID, CAPSULE, TORUS, BOX = 0, 1, 2, 3
NPARAM = 16


# ------------------------------------------------------------------------------------------- fields

@njit(cache=True, inline="always")
def _prim_value(kind, prims, r, x, y, z):
    """Field of primitive r (row of prims (P, 16) float64) at object point (x, y, z): <= 0 inside."""
    if kind == CAPSULE:
        bx, by, bz = prims[r, 3] - prims[r, 0], prims[r, 4] - prims[r, 1], prims[r, 5] - prims[r, 2]
        ax, ay, az = x - prims[r, 0], y - prims[r, 1], z - prims[r, 2]
        den = bx * bx + by * by + bz * bz
        h = 0.0
        if den > 0.0:
            h = min(max((ax * bx + ay * by + az * bz) / den, 0.0), 1.0)
        dx, dy, dz = ax - h * bx, ay - h * by, az - h * bz
        return math.sqrt(dx * dx + dy * dy + dz * dz) - prims[r, 6]
    dx, dy, dz = x - prims[r, 0], y - prims[r, 1], z - prims[r, 2]
    lx = prims[r, 3] * dx + prims[r, 4] * dy + prims[r, 5] * dz
    ly = prims[r, 6] * dx + prims[r, 7] * dy + prims[r, 8] * dz
    lz = prims[r, 9] * dx + prims[r, 10] * dy + prims[r, 11] * dz
    if kind == ELLIPSOID:  # min(a) * (|l / a| - 1): 1-Lipschitz, |value| <= distance
        ex, ey, ez = prims[r, 12], prims[r, 13], prims[r, 14]
        ux, uy, uz = lx / ex, ly / ey, lz / ez
        return min(ex, min(ey, ez)) * (math.sqrt(ux * ux + uy * uy + uz * uz) - 1.0)
    if kind == TORUS:
        rr = math.sqrt(lx * lx + lz * lz) - prims[r, 12]
        return math.sqrt(rr * rr + ly * ly) - prims[r, 13]
    qx, qy, qz = abs(lx) - prims[r, 12], abs(ly) - prims[r, 13], abs(lz) - prims[r, 14]
    ox, oy, oz = max(qx, 0.0), max(qy, 0.0), max(qz, 0.0)
    return math.sqrt(ox * ox + oy * oy + oz * oz) + min(max(qx, max(qy, qz)), 0.0)


@njit(cache=True, inline="always")
def _to_local(rot, pivot, shift, x, y, z):
    """Undo the rigid motion: q = R^T (p - pivot - shift) + pivot (rot holds R^T)."""
    dx, dy, dz = x - pivot[0] - shift[0], y - pivot[1] - shift[1], z - pivot[2] - shift[2]
    return (rot[0, 0] * dx + rot[0, 1] * dy + rot[0, 2] * dz + pivot[0],
            rot[1, 0] * dx + rot[1, 1] * dy + rot[1, 2] * dz + pivot[1],
            rot[2, 0] * dx + rot[2, 1] * dy + rot[2, 2] * dz + pivot[2])


@njit(cache=True, inline="always")
def _ripple(waves, x, y):
    """Depth shift of column (x, y): sum of amp * sin(kx x + ky y + phase) over rows of waves (W, 4)."""
    s = 0.0
    for w in range(waves.shape[0]):
        s += waves[w, 0] * math.sin(waves[w, 1] * x + waves[w, 2] * y + waves[w, 3])
    return s


# --------------------------------------------------------------------------------- line intervals

@njit(cache=True)
def _quadratic_le0(a, b, c):
    """Real interval where a t^2 + b t + c <= 0 (a >= 0); (1, 0) when empty, (-inf, inf) when all."""
    if a <= 1e-300:
        if abs(b) <= 1e-300:
            return (-np.inf, np.inf) if c <= 0.0 else (1.0, 0.0)
        t = -c / b
        return (-np.inf, t) if b > 0.0 else (t, np.inf)
    disc = b * b - 4.0 * a * c
    if disc < 0.0:
        return 1.0, 0.0
    s = math.sqrt(disc)
    return (-b - s) / (2.0 * a), (-b + s) / (2.0 * a)


@njit(cache=True)
def _line_interval(kind, prims, r, ox, oy, oz, dx, dy, dz):
    """Interval (t0, t1) of the line o + t d (|d| = 1) inside primitive r; t0 > t1 when it misses.

    For the convex kinds (ellipsoid, capsule, box), matching _prim_value(...) <= 0; tori go
    through _torus_line.
    """
    if kind == CAPSULE:
        ax, ay, az = prims[r, 0], prims[r, 1], prims[r, 2]
        ux, uy, uz = prims[r, 3] - ax, prims[r, 4] - ay, prims[r, 5] - az
        rad2 = prims[r, 6] ** 2
        t0, t1 = np.inf, -np.inf
        for e in range(2):  # the two end balls
            cx, cy, cz = (ax, ay, az) if e == 0 else (prims[r, 3], prims[r, 4], prims[r, 5])
            wx, wy, wz = ox - cx, oy - cy, oz - cz
            s0, s1 = _quadratic_le0(1.0, 2.0 * (wx * dx + wy * dy + wz * dz), wx * wx + wy * wy + wz * wz - rad2)
            if s0 <= s1:
                t0, t1 = min(t0, s0), max(t1, s1)
        uu = ux * ux + uy * uy + uz * uz
        if uu > 0.0:  # the cylinder between them: perpendicular distance <= r and 0 <= h <= 1
            wx, wy, wz = ox - ax, oy - ay, oz - az
            wu, du = (wx * ux + wy * uy + wz * uz) / uu, (dx * ux + dy * uy + dz * uz) / uu
            px, py, pz = wx - wu * ux, wy - wu * uy, wz - wu * uz
            qx, qy, qz = dx - du * ux, dy - du * uy, dz - du * uz
            s0, s1 = _quadratic_le0(qx * qx + qy * qy + qz * qz, 2.0 * (px * qx + py * qy + pz * qz),
                                    px * px + py * py + pz * pz - rad2)
            if abs(du) > 1e-300:  # h = wu + t du in [0, 1]
                h0, h1 = -wu / du, (1.0 - wu) / du
                s0, s1 = max(s0, min(h0, h1)), min(s1, max(h0, h1))
            elif wu < 0.0 or wu > 1.0:
                s0, s1 = 1.0, 0.0
            if s0 <= s1:
                t0, t1 = min(t0, s0), max(t1, s1)
        return t0, t1
    cx, cy, cz = ox - prims[r, 0], oy - prims[r, 1], oz - prims[r, 2]
    t0, t1 = -np.inf, np.inf
    a = 0.0
    b = 0.0
    c = -1.0
    for i in range(3):
        l0 = prims[r, 3 + 3 * i] * cx + prims[r, 4 + 3 * i] * cy + prims[r, 5 + 3 * i] * cz
        dl = prims[r, 3 + 3 * i] * dx + prims[r, 4 + 3 * i] * dy + prims[r, 5 + 3 * i] * dz
        h = prims[r, 12 + i]
        if kind == ELLIPSOID:
            a += (dl / h) ** 2
            b += 2.0 * l0 * dl / (h * h)
            c += (l0 / h) ** 2
        elif abs(dl) > 1e-300:  # box slab |l0 + t dl| <= h
            s0, s1 = (-h - l0) / dl, (h - l0) / dl
            t0, t1 = max(t0, min(s0, s1)), min(t1, max(s0, s1))
        elif abs(l0) > h:
            return 1.0, 0.0
    if kind == ELLIPSOID:
        return _quadratic_le0(a, b, c)
    return t0, t1


@njit(cache=True)
def _add_interval(ia, ib, ni, a, b):
    """Insert the integer interval [a, b] (if not empty) into ia/ib[:ni], kept sorted by start."""
    if a > b:
        return ni
    j = ni
    while j > 0 and ia[j - 1] > a:
        ia[j], ib[j] = ia[j - 1], ib[j - 1]
        j -= 1
    ia[j], ib[j] = a, b
    return ni + 1


@njit(cache=True)
def _cbrt(v):
    return math.copysign(abs(v) ** (1.0 / 3.0), v)


@njit(cache=True)
def _quartic(u, a3, a2, a1, a0):
    return (((u + a3) * u + a2) * u + a1) * u + a0


@njit(cache=True)
def _torus_line(prims, r, ox, oy, oz, dx, dy, dz, zlo, zhi, ia, ib, ni):
    """Add to ia/ib the integer z in zlo..zhi where the line o + z d (|d| = 1) is inside torus r.

    With l(u) the local point at z = zc + u (zc the integer nearest the closest approach), the torus
    (sqrt(lx^2 + lz^2) - R)^2 + ly^2 <= r^2 is P(u) = (|l|^2 + R^2 - r^2)^2 - 4 R^2 (lx^2 + lz^2) <= 0,
    a monic quartic. Between its critical points (a cubic's roots) P is monotone, so each piece's
    inside integers are a prefix or a suffix, found by bisection on integers.
    """
    big, tube = prims[r, 12], prims[r, 13]
    cx, cy, cz = ox - prims[r, 0], oy - prims[r, 1], oz - prims[r, 2]
    lx = prims[r, 3] * cx + prims[r, 4] * cy + prims[r, 5] * cz
    ly = prims[r, 6] * cx + prims[r, 7] * cy + prims[r, 8] * cz
    lz = prims[r, 9] * cx + prims[r, 10] * cy + prims[r, 11] * cz
    ex = prims[r, 3] * dx + prims[r, 4] * dy + prims[r, 5] * dz
    ey = prims[r, 6] * dx + prims[r, 7] * dy + prims[r, 8] * dz
    ez = prims[r, 9] * dx + prims[r, 10] * dy + prims[r, 11] * dz
    zc = int(round(-(lx * ex + ly * ey + lz * ez)))
    mx, my, mz = lx + zc * ex, ly + zc * ey, lz + zc * ez
    b = mx * ex + my * ey + mz * ez
    ck = mx * mx + my * my + mz * mz + big * big - tube * tube
    alpha = ex * ex + ez * ez
    beta = mx * ex + mz * ez
    gamma = mx * mx + mz * mz
    r4 = 4.0 * big * big
    a3 = 4.0 * b
    a2 = 4.0 * b * b + 2.0 * ck - r4 * alpha
    a1 = 4.0 * b * ck - 2.0 * r4 * beta
    a0 = ck * ck - r4 * gamma
    # critical points: roots of u^3 + A u^2 + B u + C (P' / 4), via the depressed cubic s^3 + p s + q
    aa, bb, cc = 0.75 * a3, 0.5 * a2, 0.25 * a1
    p = bb - aa * aa / 3.0
    q = 2.0 * aa ** 3 / 27.0 - aa * bb / 3.0 + cc
    reach = big + tube + 1.0
    # the pieces' ends: -reach, the critical points (sorted), +reach
    disc = (q / 2.0) ** 2 + (p / 3.0) ** 3
    if disc > 0.0 or p >= 0.0:
        sq = math.sqrt(max(disc, 0.0))
        k1 = _cbrt(-q / 2.0 + sq) + _cbrt(-q / 2.0 - sq) - aa / 3.0
        k2 = k3 = k1
    else:  # three real roots, smallest first
        m = 2.0 * math.sqrt(-p / 3.0)
        th = math.acos(min(1.0, max(-1.0, 3.0 * q / (p * m)))) / 3.0
        k1 = m * math.cos(th - 4.0 * math.pi / 3.0) - aa / 3.0
        k2 = m * math.cos(th - 2.0 * math.pi / 3.0) - aa / 3.0
        k3 = m * math.cos(th) - aa / 3.0
    for k in range(4):
        left = -reach if k == 0 else (k1 if k == 1 else (k2 if k == 2 else k3))
        right = k1 if k == 0 else (k2 if k == 1 else (k3 if k == 2 else reach))
        ua = max(math.ceil(min(max(left, -reach), reach)), zlo - zc)
        ub = min(math.floor(min(max(right, -reach), reach)), zhi - zc)
        if ua > ub:
            continue
        ina = _quartic(ua, a3, a2, a1, a0) <= 0.0
        inb = _quartic(ub, a3, a2, a1, a0) <= 0.0
        if ina and inb:
            ni = _add_interval(ia, ib, ni, zc + ua, zc + ub)
        elif ina or inb:
            u0, u1 = ua, ub  # (P(u0) <= 0) == ina, (P(u1) <= 0) == inb, u0 < u1
            while u1 - u0 > 1:
                mid = (u0 + u1) // 2
                if (_quartic(mid, a3, a2, a1, a0) <= 0.0) == ina:
                    u0 = mid
                else:
                    u1 = mid
            if ina:
                ni = _add_interval(ia, ib, ni, zc + ua, zc + u0)
            else:
                ni = _add_interval(ia, ib, ni, zc + u1, zc + ub)
    return ni


# ------------------------------------------------------------------------------------ column runs

@njit(cache=True)
def _push_run(st, en, n, a, b):
    """Append run [a, b] to st/en (growing them); returns (st, en, n + 1)."""
    if n == st.shape[0]:
        st2 = np.empty(2 * n, np.int32)
        en2 = np.empty(2 * n, np.int32)
        st2[:n] = st[:n]
        en2[:n] = en[:n]
        st, en = st2, en2
    st[n], en[n] = a, b
    return st, en, n + 1


@njit(cache=True)
def _row_runs(x, lo, hi, prims, kinds, bsph, rot, pivot, shift, waves):
    """Inside runs [start, end] (inclusive z, within lo[2]..hi[2]) of every column (x, y), y in lo[1]..hi[1].

    Returns offs (ny + 1,) int64 and starts, ends int32: column y's runs are [offs[y], offs[y+1]).
    """
    ny = hi[1] - lo[1] + 1
    offs = np.zeros(ny + 1, np.int64)
    st = np.empty(64, np.int32)
    en = np.empty(64, np.int32)
    n = 0
    n_prims = prims.shape[0]
    ia = np.empty(4 * n_prims, np.int64)  # a torus adds up to 3 intervals, the others 1
    ib = np.empty(4 * n_prims, np.int64)
    dx, dy, dz = rot[0, 2], rot[1, 2], rot[2, 2]  # the column direction in object space
    for yi in range(ny):
        y = lo[1] + yi
        # object-space line of the column: q(z) = o + z d, the ripple moving its origin along d
        ox, oy, oz = _to_local(rot, pivot, shift, x, y, 0)
        dzc = _ripple(waves, x, y)
        ox, oy, oz = ox - dzc * dx, oy - dzc * dy, oz - dzc * dz
        ni = 0
        for r in range(n_prims):
            wx, wy, wz = bsph[r, 0] - ox, bsph[r, 1] - oy, bsph[r, 2] - oz
            along = wx * dx + wy * dy + wz * dz
            if wx * wx + wy * wy + wz * wz - along * along > bsph[r, 3] ** 2:
                continue  # the line misses the primitive's bounding ball
            if kinds[r] == TORUS:
                ni = _torus_line(prims, r, ox, oy, oz, dx, dy, dz, lo[2], hi[2], ia, ib, ni)
                continue
            t0, t1 = _line_interval(kinds[r], prims, r, ox, oy, oz, dx, dy, dz)
            ni = _add_interval(ia, ib, ni, max(math.ceil(max(t0, -1e9)), lo[2]),
                               min(math.floor(min(t1, 1e9)), hi[2]))
        if ni:  # merge the sorted intervals into disjoint runs
            a, b = ia[0], ib[0]
            for j in range(1, ni):
                if ia[j] <= b + 1:
                    b = max(b, ib[j])
                else:
                    st, en, n = _push_run(st, en, n, a, b)
                    a, b = ia[j], ib[j]
            st, en, n = _push_run(st, en, n, a, b)
        offs[yi + 1] = n
    return offs, st, en


@njit(cache=True)
def _gaps(st, en, r0, r1, a, b, gs, ge, ng):
    """Append to gs/ge the parts of [a, b] outside the sorted runs st/en[r0:r1]; returns the count."""
    pos = a
    for r in range(r0, r1):
        if en[r] < pos:
            continue
        if st[r] > b:
            break
        if st[r] > pos:
            gs[ng], ge[ng] = pos, st[r] - 1
            ng += 1
        pos = en[r] + 1
        if pos > b:
            return ng
    if pos <= b:
        gs[ng], ge[ng] = pos, b
        ng += 1
    return ng


# ------------------------------------------------------------------------------------------ shell

@njit(cache=True)
def shell_voxels(prims, kinds, bsph, rot, pivot, shift, waves, lo, hi, size):
    """Inner shell voxels of the solid within the box lo..hi (int64 (3,)) of a size^3 grid.

    prims: (P, 16) float64; kinds: (P,) int64; bsph: (P, 4) float64 bounding balls (centre, radius)
    in object space; rot: (3, 3) float64 holding R^T; pivot, shift: (3,) float64; waves: (W, 4)
    float64 ripple rows (amplitude, kx, ky, phase). The solid must lie inside lo..hi.
    Returns coords (M, 3) int32 sorted by (x, y, z) and part (M,) int32, the primitive each voxel
    lies deepest in.
    """
    ny = hi[1] - lo[1] + 1
    empty_offs = np.zeros(ny + 1, np.int64)
    empty = np.empty(1, np.int32)
    p_offs, p_st, p_en = empty_offs, empty, empty
    c_offs, c_st, c_en = _row_runs(lo[0], lo, hi, prims, kinds, bsph, rot, pivot, shift, waves)
    out = np.empty((1 << 16, 3), np.int32)
    n = 0
    gs = np.empty(64, np.int64)
    ge = np.empty(64, np.int64)
    for x in range(lo[0], hi[0] + 1):
        if x + 1 <= hi[0]:
            n_offs, n_st, n_en = _row_runs(x + 1, lo, hi, prims, kinds, bsph, rot, pivot, shift, waves)
        else:
            n_offs, n_st, n_en = empty_offs, empty, empty
        for yi in range(ny):
            y = lo[1] + yi
            edge = x == 0 or y == 0 or x == size - 1 or y == size - 1
            for r in range(c_offs[yi], c_offs[yi + 1]):
                s, e = c_st[r], c_en[r]
                ng = 0
                if not edge and e - s >= 2:
                    # voxels strictly inside the run are shell where a side neighbour is outside
                    need = 8 + (p_offs[yi + 1] - p_offs[yi]) + (n_offs[yi + 1] - n_offs[yi])
                    need += (c_offs[yi] - c_offs[yi - 1]) if yi > 0 else 0
                    need += (c_offs[yi + 2] - c_offs[yi + 1]) if yi + 1 < ny else 0
                    if need > gs.shape[0]:
                        gs = np.empty(2 * need, np.int64)
                        ge = np.empty(2 * need, np.int64)
                    ng = _gaps(p_st, p_en, p_offs[yi], p_offs[yi + 1], s + 1, e - 1, gs, ge, ng)
                    ng = _gaps(n_st, n_en, n_offs[yi], n_offs[yi + 1], s + 1, e - 1, gs, ge, ng)
                    r0, r1 = (c_offs[yi - 1], c_offs[yi]) if yi > 0 else (0, 0)
                    ng = _gaps(c_st, c_en, r0, r1, s + 1, e - 1, gs, ge, ng)
                    r0, r1 = (c_offs[yi + 1], c_offs[yi + 2]) if yi + 1 < ny else (0, 0)
                    ng = _gaps(c_st, c_en, r0, r1, s + 1, e - 1, gs, ge, ng)
                    for g in range(1, ng):  # insertion sort of the few gaps by start
                        a0, b0 = gs[g], ge[g]
                        h = g - 1
                        while h >= 0 and gs[h] > a0:
                            gs[h + 1], ge[h + 1] = gs[h], ge[h]
                            h -= 1
                        gs[h + 1], ge[h + 1] = a0, b0
                # emit the whole run on the grid's edge, else its two ends and the gap voxels, in z order
                last = s - 1
                for g in range(-1, ng + 1):
                    if edge:
                        a0, b0 = s, e
                    elif g == -1:
                        a0, b0 = s, s
                    elif g == ng:
                        a0, b0 = e, e
                    else:
                        a0, b0 = gs[g], ge[g]
                    for z in range(max(a0, last + 1), b0 + 1):
                        if n == out.shape[0]:
                            grown = np.empty((2 * n, 3), np.int32)
                            grown[:n] = out[:n]
                            out = grown
                        out[n, 0], out[n, 1], out[n, 2] = x, y, z
                        n += 1
                    last = max(last, b0)
                    if edge:
                        break
        p_offs, p_st, p_en = c_offs, c_st, c_en
        c_offs, c_st, c_en = n_offs, n_st, n_en
    coords = out[:n].copy()
    return coords, _parts(coords, prims, kinds, bsph, rot, pivot, shift, waves)


@njit(cache=True)
def _parts(coords, prims, kinds, bsph, rot, pivot, shift, waves):
    """(M,) int32: for each voxel, the primitive with the lowest field among those whose ball holds it."""
    n_prims = prims.shape[0]
    part = np.zeros(coords.shape[0], np.int32)
    if n_prims == 1:
        return part
    for i in range(coords.shape[0]):
        x, y = coords[i, 0], coords[i, 1]
        qx, qy, qz = _to_local(rot, pivot, shift, x, y, coords[i, 2] - _ripple(waves, x, y))
        best = np.inf
        for r in range(n_prims):
            if (qx - bsph[r, 0]) ** 2 + (qy - bsph[r, 1]) ** 2 + (qz - bsph[r, 2]) ** 2 > bsph[r, 3] ** 2:
                continue
            v = _prim_value(kinds[r], prims, r, qx, qy, qz)
            if v < best:
                best = v
                part[i] = r
    return part

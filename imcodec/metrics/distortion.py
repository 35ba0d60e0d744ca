"""One direction of pc_error's ``findMetric``: D1, D2 and colour errors of a reference cloud against
a test cloud, given each reference point's equidistant nearest neighbours (ties.py).

Per reference point i (pc_error 0.14, ``--neighborsProc=1 --averageNormals=1 --mseSpace=1``):

- D1 (point-to-point): the squared distance to the nearest test point.
- D2 (point-to-plane): the mean, over the equidistant neighbours j, of ``((p_i - q_j) . n_j)**2``
  computed in float32 with the test cloud's normals n_j. A neighbour whose normal has a NaN adds
  the float32 sum ``((((x_i - x_j) + y_i) - y_j) + z_i) - z_j`` instead (pc_error's fallback).
- Colour: the neighbours' RGB are averaged (round half up of the mean), both colours converted to
  BT.709 Y'CbCr scaled to [0, 1] (float32) and the squared differences accumulated per channel.

The sums are float64; the caller divides by the number of reference points.
"""

from __future__ import annotations

import math

import numpy as np

from imcodec.jit import njit
from imcodec.metrics.parallel import run_ranges

SLOTS = 10  # sse_d1, max_d1, sse_d2, max_d2, sse_y, sse_cb, sse_cr, max_r, max_g, max_b


@njit(cache=True)
def ycbcr709(r, g, b, cmax):
    """BT.709 Y'CbCr in [0, 1] of an RGB triple (float64 values, cmax = 255 for 8-bit), as float32."""
    y = np.float32((0.2126 * r + 0.7152 * g + 0.0722 * b) / cmax)
    cb = np.float32((-0.1146 * r - 0.3854 * g + 0.5000 * b) / cmax + 0.5)
    cr = np.float32((0.5000 * r - 0.4542 * g - 0.0458 * b) / cmax + 0.5)
    return y, cb, cr


@njit(cache=True, nogil=True)
def _direction(ref, test, test_normals, d2, offsets, index, ref_rgb, test_rgb, do_color, cmax, lo, hi):
    """Sums/maxima ((SLOTS,) float64) of one direction over reference points lo..hi-1.

    ref: (N, 3) float32; test: (M, 3) float32; test_normals: (M, 3) float32; d2: (N,) float64 nearest
    squared distances; offsets (N + 1,) int64 / index (T,) int32 the neighbour lists; ref_rgb (N, 3),
    test_rgb (M, 3) integer colours (ignored unless do_color); cmax the colour peak (255 for 8-bit).
    """
    sse1 = 0.0
    max1 = 0.0
    sse2 = 0.0
    max2 = 0.0
    sy = 0.0
    su = 0.0
    sv = 0.0
    mr = 0.0
    mg = 0.0
    mb = 0.0
    for i in range(lo, hi):
        d1 = d2[i]
        sse1 += d1
        if d1 > max1:
            max1 = d1
        o0 = offsets[i]
        o1 = offsets[i + 1]
        px, py, pz = ref[i, 0], ref[i, 1], ref[i, 2]
        dp = 0.0
        for t in range(o0, o1):
            j = index[t]
            nx, ny, nz = test_normals[j, 0], test_normals[j, 1], test_normals[j, 2]
            if math.isnan(nx) or math.isnan(ny) or math.isnan(nz):
                dp += np.float64(((((px - test[j, 0]) + py) - test[j, 1]) + pz) - test[j, 2])
            else:
                dot = (px - test[j, 0]) * nx + (py - test[j, 1]) * ny + (pz - test[j, 2]) * nz
                dp += np.float64(dot * dot)
        dp /= o1 - o0
        sse2 += dp
        if dp > max2:
            max2 = dp
        if do_color:
            rs = 0
            gs = 0
            bs = 0
            for t in range(o0, o1):
                j = index[t]
                rs += np.int64(test_rgb[j, 0])
                gs += np.int64(test_rgb[j, 1])
                bs += np.int64(test_rgb[j, 2])
            cnt = o1 - o0
            cr = math.floor(rs / cnt + 0.5)
            cg = math.floor(gs / cnt + 0.5)
            cb = math.floor(bs / cnt + 0.5)
            ar = np.float64(ref_rgb[i, 0])
            ag = np.float64(ref_rgb[i, 1])
            ab = np.float64(ref_rgb[i, 2])
            y0, u0, v0 = ycbcr709(ar, ag, ab, cmax)
            y1, u1, v1 = ycbcr709(np.float64(cr), np.float64(cg), np.float64(cb), cmax)
            ey = y0 - y1
            eu = u0 - u1
            ev = v0 - v1
            sy += np.float64(ey * ey)
            su += np.float64(eu * eu)
            sv += np.float64(ev * ev)
            mr = max(mr, (ar - cr) * (ar - cr))
            mg = max(mg, (ag - cg) * (ag - cg))
            mb = max(mb, (ab - cb) * (ab - cb))
    out = np.empty(SLOTS, np.float64)
    out[0] = sse1
    out[1] = max1
    out[2] = sse2
    out[3] = max2
    out[4] = sy
    out[5] = su
    out[6] = sv
    out[7] = mr
    out[8] = mg
    out[9] = mb
    return out


def direction_errors(ref: np.ndarray, test: np.ndarray, test_normals: np.ndarray, nbrs,
                     ref_rgb: np.ndarray | None, test_rgb: np.ndarray | None, cmax: float) -> dict:
    """Mean and max errors of one direction (ref loops, test is searched).

    ref/test: (N, 3)/(M, 3) float32; test_normals: (M, 3) float32; nbrs: nn.Neighbours of ref in
    test (ties.Neighbours); ref_rgb/test_rgb: (N, 3)/(M, 3) uint8/uint16 or None. Returns a dict of float64 values:
    d1_mse, d1_max, d2_mse, d2_max and, with colours, y_mse, cb_mse, cr_mse, rgb_max (3 values).
    """
    do_color = ref_rgb is not None and test_rgb is not None
    if not do_color:
        ref_rgb = np.zeros((1, 3), np.uint8)
        test_rgb = ref_rgb
    n = ref.shape[0]
    part = np.array(run_ranges(_direction, n, ref, test, np.ascontiguousarray(test_normals, np.float32),
                               nbrs.d2, nbrs.offsets, nbrs.index, np.ascontiguousarray(ref_rgb),
                               np.ascontiguousarray(test_rgb), do_color, float(cmax)))
    sums = part.sum(axis=0)
    maxs = part.max(axis=0)
    out = {"d1_mse": sums[0] / n, "d1_max": maxs[1], "d2_mse": sums[2] / n, "d2_max": maxs[3]}
    if do_color:
        out.update(y_mse=sums[4] / n, cb_mse=sums[5] / n, cr_mse=sums[6] / n, rgb_max=maxs[7:10].copy())
    return out

"""Numba kernels of the look-up-table depth filter (:mod:`imcodec.learned.depth_lut` drives them).

A filter stage maps every occupied pixel of a depth image to a table key built from its
neighbourhood, and adds the table's correction. All arithmetic is in integers: depths are held in
fixed point (``FX`` units per depth unit), the local mean enters through exact integer window sums,
and every quantiser rounds with :func:`round_div`, so training and decoding compute the same keys on
every machine.

Key digits, least significant first:

* one per neighbour offset ``(dy, dx)``: the neighbour's depth minus the pixel's, in steps of
  ``step`` fixed-point units, rounded and clipped to ``[-L, L]`` (``2L + 1`` values), or ``2L + 1``
  when the neighbour is outside the canvas or unoccupied;
* with ``radius > 0``: the mean of the occupied pixels of the ``(2 radius + 1)``-square window minus
  the pixel, in units of ``1 / mq`` depth units, clipped to ``[-ML, ML]``;
* with ``gap``: the pixel minus the guide image (the denoised near layer, for the far layer) in
  half depth units, clipped to ``[GAP_LO, GAP_HI]``.
"""

from __future__ import annotations

import numpy as np

from imcodec.jit import njit

FX = 256  # fixed-point units per depth unit (the gap digit's shift assumes 256)
GAP_LO, GAP_HI = -4, 12  # range of the far layer's gap digit, in half depth units
CORRECTION_FX = 8 * FX  # largest table correction (fixed point; fits int16)


@njit(cache=True, nogil=True)
def round_div(a, b):
    """a / b rounded half up, for integers with b > 0 (floor division of 2a + b by 2b)."""
    return (2 * a + b) // (2 * b)


@njit(cache=True, nogil=True)
def _add_row(y, occ, i, sign, col_sum, col_count):
    # branch-free (vectorisable): y is 0 outside the mask, occ is the mask as 0/1
    for j in range(y.shape[1]):
        col_sum[j] += sign * y[i, j]
        col_count[j] += sign * occ[i, j]


@njit(cache=True, nogil=True)
def _stage(y, m, guide, offsets, levels, shift, radius, mq, mlevels, gap, table, keys, out, i0, i1):
    """Shared loop of :func:`stage_keys` and :func:`stage_apply`, over rows i0..i1-1: row by row, the
    window sums come from column sums over the window's rows (updated as the row advances) and a
    running sum along the row, so no canvas-sized buffer is needed. Writes ``keys`` (when it is
    canvas-sized) and ``out = y + table[key]`` (when ``table`` is not empty)."""
    h, w = y.shape
    nb = 2 * levels + 2
    half = 1 << (shift - 1)
    col_sum = np.zeros(w, dtype=np.int64)
    col_count = np.zeros(w, dtype=np.int64)
    row_sum = np.zeros(w, dtype=np.int64)
    row_count = np.zeros(w, dtype=np.int64)
    write_keys = keys.shape[0] == h
    apply = table.shape[0] > 0
    occ = m.view(np.uint8)
    if radius > 0:
        for ii in range(max(0, i0 - radius - 1), min(i0 + radius, h)):
            _add_row(y, occ, ii, 1, col_sum, col_count)
    for i in range(i0, i1):
        if radius > 0:
            if i + radius < h:
                _add_row(y, occ, i + radius, 1, col_sum, col_count)
            if i - radius - 1 >= 0:
                _add_row(y, occ, i - radius - 1, -1, col_sum, col_count)
            s = 0
            c = 0
            for j in range(min(radius, w)):
                s += col_sum[j]
                c += col_count[j]
            for j in range(w):
                if j + radius < w:
                    s += col_sum[j + radius]
                    c += col_count[j + radius]
                if j - radius - 1 >= 0:
                    s -= col_sum[j - radius - 1]
                    c -= col_count[j - radius - 1]
                row_sum[j] = s
                row_count[j] = c
        for j in range(w):
            if not m[i, j]:
                continue
            v = y[i, j]
            key = 0
            base = 1
            for k in range(offsets.shape[0]):
                ii = i + offsets[k, 0]
                jj = j + offsets[k, 1]
                digit = 2 * levels + 1
                if 0 <= ii < h and 0 <= jj < w and m[ii, jj]:
                    q = (y[ii, jj] - v + half) >> shift
                    digit = min(max(q, -levels), levels) + levels
                key += digit * base
                base *= nb
            if radius > 0:
                n = row_count[j]
                q = round_div(mq * (row_sum[j] - n * v), n * FX)
                key += (min(max(q, -mlevels), mlevels) + mlevels) * base
                base *= 2 * mlevels + 1
            if gap:
                q = (2 * (v - guide[i, j]) + FX // 2) >> 8
                key += (min(max(q, GAP_LO), GAP_HI) - GAP_LO) * base
            if write_keys:
                keys[i, j] = key
            if apply:
                out[i, j] = v + table[key]


@njit(cache=True, nogil=True)
def stage_keys(y, m, guide, offsets, levels, shift, radius, mq, mlevels, gap):
    """(H, W) int64 table key of every occupied pixel of the fixed-point image ``y`` (-1 elsewhere);
    ``y`` must be 0 outside the mask ``m`` (see :func:`fixed_point`).

    ``offsets``: (K, 2) int64 neighbour offsets; ``shift``: log2 of the neighbour step; ``guide``:
    fixed-point guide image (read only when ``gap``). See the module docstring for the digits."""
    keys = np.full(y.shape, -1, dtype=np.int64)
    _stage(y, m, guide, offsets, levels, shift, radius, mq, mlevels, gap, np.zeros(0, dtype=np.int64), keys, y,
           0, y.shape[0])
    return keys


@njit(cache=True, nogil=True)
def stage_apply(y, m, guide, offsets, levels, shift, radius, mq, mlevels, gap, table, out, i0, i1):
    """Rows i0..i1-1 of ``out`` = ``y`` plus ``table[key]`` at every occupied pixel: :func:`stage_keys`
    and :func:`apply_table` in one pass, without the key image. Only occupied pixels are written
    (``out`` must hold ``y``'s values elsewhere, e.g. both 0); disjoint row ranges can run on
    several threads."""
    _stage(y, m, guide, offsets, levels, shift, radius, mq, mlevels, gap, table, np.zeros((0, 0), dtype=np.int64),
           out, i0, i1)


@njit(cache=True, nogil=True)
def fixed_point(d, m):
    """The depth image ``d`` in fixed point (int64), 0 outside the mask ``m`` (what the stages expect)."""
    h, w = d.shape
    out = np.zeros((h, w), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            if m[i, j]:
                out[i, j] = np.int64(d[i, j]) * FX
    return out


@njit(cache=True, nogil=True)
def apply_table(y, keys, table):
    """``y`` plus ``table[key]`` at every pixel with a key (>= 0); a new int64 image."""
    out = y.copy()
    h, w = y.shape
    for i in range(h):
        for j in range(w):
            k = keys[i, j]
            if k >= 0:
                out[i, j] += table[k]
    return out


@njit(cache=True, nogil=True)
def accumulate(keys, y, target, sums, counts):
    """Training: add (target - y) and 1 into ``sums``/``counts`` at every pixel's key."""
    h, w = y.shape
    for i in range(h):
        for j in range(w):
            k = keys[i, j]
            if k >= 0:
                sums[k] += target[i, j] - y[i, j]
                counts[k] += 1


@njit(cache=True, nogil=True)
def to_depth(y, m, orig, max_value):
    """The filtered depth image: occupied pixels of ``y`` rounded to depth units and clipped to
    [0, max_value], other pixels those of ``orig``."""
    out = orig.copy()
    h, w = y.shape
    for i in range(h):
        for j in range(w):
            if m[i, j]:
                out[i, j] = min(max(round_div(y[i, j], FX), 0), max_value)
    return out


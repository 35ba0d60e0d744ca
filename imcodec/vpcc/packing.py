"""Patch packing into the canvas and the canvas <-> patch pixel mapping.

Patches are placed on a grid of ``BLOCK`` x ``BLOCK`` blocks (TMC2 ``occupancyResolution`` 16), largest
first, at the first free position in raster order (row by row, exhaustive), trying each allowed
orientation at every position; only the blocks a patch actually occupies must be free, so boxes may
overlap (the decoder resolves shared blocks from coded block-to-patch indices, see
:mod:`imcodec.vpcc.metadata`). The canvas has a fixed width and grows in height as needed.

Orientation o in 0..7: bit 1 mirrors u, bit 2 mirrors v (about the patch's block-padded size), bit 0
then swaps the two canvas axes. Orientations 0 and 1 (identity and transpose) are the two TMC2 uses
by default; all eight are legal in a stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from imcodec.jit import njit

BLOCK = 16
NEAR = 3  # blocks around a preferred place tried before the raster search (pack_preferred)


@dataclass
class Packing:
    """Where every patch went.

    bu, bv: (P,) int64 canvas block position of the patch's oriented box; orient: (P,) int64 0..7;
    width, height: canvas size in pixels (multiples of BLOCK).
    """

    bu: np.ndarray
    bv: np.ndarray
    orient: np.ndarray
    width: int
    height: int


def padded_blocks(su: np.ndarray, sv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block counts (bw, bh) of patch boxes of su x sv pixels ((P,) int64 each)."""
    return (su + BLOCK - 1) // BLOCK, (sv + BLOCK - 1) // BLOCK


@njit(cache=True)
def orient_coords(lu, lv, bw, bh, o):
    """Canvas offsets (x, y) inside the oriented box of local pixel (lu, lv); bw/bh in blocks."""
    if o & 2:
        lu = bw * 16 - 1 - lu
    if o & 4:
        lv = bh * 16 - 1 - lv
    if o & 1:
        return lv, lu
    return lu, lv


@njit(cache=True)
def unorient_coords(x, y, bw, bh, o):
    """Inverse of :func:`orient_coords`: local pixel (lu, lv) of box offset (x, y)."""
    if o & 1:
        lu, lv = y, x
    else:
        lu, lv = x, y
    if o & 2:
        lu = bw * 16 - 1 - lu
    if o & 4:
        lv = bh * 16 - 1 - lv
    return lu, lv


def block_masks(pix_patch, pix_u, pix_v, su, sv):
    """Per patch the occupied blocks of its (unoriented) box: (ptr, mask) with mask flat uint8.

    Patch p's mask is ``mask[ptr[p]:ptr[p+1]].reshape(bh[p], bw[p])``.
    """
    bw, bh = padded_blocks(su, sv)
    sizes = bw * bh
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    mask = np.zeros(int(ptr[-1]), dtype=np.uint8)
    mask[ptr[pix_patch] + (pix_v // BLOCK) * bw[pix_patch] + pix_u // BLOCK] = 1
    return ptr, mask


def pack(su: np.ndarray, sv: np.ndarray, ptr: np.ndarray, mask: np.ndarray, width: int = 1280,
         orientations: int = 2) -> Packing:
    """Pack patches (sizes su, sv in pixels; block masks from :func:`block_masks`).

    ``orientations``: how many of the orientations 0..7 to try (1, 2, 4 or 8).
    The canvas width grows to fit a patch that fits in no allowed orientation.
    """
    n = len(su)
    bw, bh = padded_blocks(su, sv)
    if n == 0:
        return Packing(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                       int(width), BLOCK)
    if orientations not in (1, 2, 4, 8):
        raise ValueError(f"orientations must be 1, 2, 4 or 8, got {orientations}")
    wb = max(width // BLOCK, int(np.min(np.stack([bw, bh]), axis=0).max() if orientations > 1 else bw.max()))
    # largest first: by box area, then height, then coding order
    order = np.lexsort((np.arange(n), -bh, -(bw * bh))).astype(np.int64)
    bu, bv, orient, hb = _pack(bw.astype(np.int64), bh.astype(np.int64), ptr, mask, order, wb,
                               int(orientations))
    return Packing(bu, bv, orient, int(wb * BLOCK), int(max(hb, 1) * BLOCK))


@njit(cache=True)
def _fits(grid, mask, m0, bw, bh, o, x0, y0):
    for j in range(bh):
        for i in range(bw):
            if mask[m0 + j * bw + i]:
                x, y = _oriented_block(i, j, bw, bh, o)
                if grid[y0 + y, x0 + x]:
                    return False
    return True


@njit(cache=True)
def _oriented_block(i, j, bw, bh, o):
    if o & 2:
        i = bw - 1 - i
    if o & 4:
        j = bh - 1 - j
    if o & 1:
        return j, i
    return i, j


@njit(cache=True)
def _pack(bw, bh, ptr, mask, order, wb, n_orient):
    n = bw.shape[0]
    cap = 64
    for p in range(n):
        cap += max(bw[p], bh[p])
    grid = np.zeros((cap, wb), dtype=np.uint8)
    bu = np.zeros(n, dtype=np.int64)
    bv = np.zeros(n, dtype=np.int64)
    orient = np.zeros(n, dtype=np.int64)
    used_h = 0
    for k in range(n):
        p = order[k]
        placed = False
        y0 = 0
        while not placed:
            for x0 in range(wb):
                for o in range(n_orient):
                    w = bh[p] if o & 1 else bw[p]
                    h = bw[p] if o & 1 else bh[p]
                    if x0 + w > wb or y0 + h > cap:
                        continue
                    if _fits(grid, mask, ptr[p], bw[p], bh[p], o, x0, y0):
                        bu[p] = x0
                        bv[p] = y0
                        orient[p] = o
                        placed = True
                        for j in range(bh[p]):
                            for i in range(bw[p]):
                                if mask[ptr[p] + j * bw[p] + i]:
                                    x, y = _oriented_block(i, j, bw[p], bh[p], o)
                                    grid[y0 + y, x0 + x] = 1
                        if y0 + h > used_h:
                            used_h = y0 + h
                        break
                if placed:
                    break
            y0 += 1
    return bu, bv, orient, used_h


def pack_preferred(su: np.ndarray, sv: np.ndarray, ptr: np.ndarray, mask: np.ndarray, order: np.ndarray,
                   pref_bu: np.ndarray, pref_bv: np.ndarray, pref_orient: np.ndarray,
                   width: int = 1280, orientations: int = 2) -> Packing:
    """Pack patches in the given ``order`` ((P,) int64), each first at its preferred place.

    Temporally consistent packing: a patch matched to one of the previous frame gets that patch's
    block position and orientation (pref_bu/pref_bv/pref_orient, (P,) int64; pref_bu -1 = none) when
    its occupied blocks are free there, else the nearest free place within ``NEAR`` blocks (same
    orientation; rings of growing Chebyshev distance, raster order within a ring); otherwise, and for
    unmatched patches, the first free position in raster order as :func:`pack`. The canvas is at least ``width`` wide (grown as :func:`pack`).
    """
    n = len(su)
    bw, bh = padded_blocks(su, sv)
    if n == 0:
        return Packing(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                       int(width), BLOCK)
    wb = max(width // BLOCK, int(np.min(np.stack([bw, bh]), axis=0).max() if orientations > 1 else bw.max()))
    bu, bv, orient, hb = _pack_pref(bw.astype(np.int64), bh.astype(np.int64), ptr, mask,
                                    np.ascontiguousarray(order, dtype=np.int64), wb, int(orientations),
                                    np.ascontiguousarray(pref_bu, dtype=np.int64),
                                    np.ascontiguousarray(pref_bv, dtype=np.int64),
                                    np.ascontiguousarray(pref_orient, dtype=np.int64))
    return Packing(bu, bv, orient, int(wb * BLOCK), int(max(hb, 1) * BLOCK))


@njit(cache=True)
def _pack_pref(bw, bh, ptr, mask, order, wb, n_orient, pbu, pbv, por):
    n = bw.shape[0]
    cap = 64
    for p in range(n):
        cap += max(bw[p], bh[p])
        if pbu[p] >= 0:
            cap = max(cap, pbv[p] + bw[p] + bh[p] + 64)
    grid = np.zeros((cap, wb), dtype=np.uint8)
    bu = np.zeros(n, dtype=np.int64)
    bv = np.zeros(n, dtype=np.int64)
    orient = np.zeros(n, dtype=np.int64)
    used_h = 0
    for k in range(n):
        p = order[k]
        placed = False
        if pbu[p] >= 0:
            o = por[p]
            w = bh[p] if o & 1 else bw[p]
            h = bw[p] if o & 1 else bh[p]
            for r in range(NEAR + 1):  # the preferred place, then rings of growing distance
                for dy in range(-r, r + 1):
                    for dx in range(-r, r + 1):
                        if placed or max(abs(dx), abs(dy)) != r:
                            continue
                        x0 = pbu[p] + dx
                        y0 = pbv[p] + dy
                        if x0 < 0 or y0 < 0 or x0 + w > wb or y0 + h > cap:
                            continue
                        if _fits(grid, mask, ptr[p], bw[p], bh[p], o, x0, y0):
                            bu[p], bv[p], orient[p] = x0, y0, o
                            placed = True
        y0 = 0
        while not placed:
            for x0 in range(wb):
                for o in range(n_orient):
                    w = bh[p] if o & 1 else bw[p]
                    h = bw[p] if o & 1 else bh[p]
                    if x0 + w > wb or y0 + h > cap:
                        continue
                    if _fits(grid, mask, ptr[p], bw[p], bh[p], o, x0, y0):
                        bu[p], bv[p], orient[p] = x0, y0, o
                        placed = True
                        break
                if placed:
                    break
            y0 += 1
        o = orient[p]
        for j in range(bh[p]):
            for i in range(bw[p]):
                if mask[ptr[p] + j * bw[p] + i]:
                    x, y = _oriented_block(i, j, bw[p], bh[p], o)
                    grid[bv[p] + y, bu[p] + x] = 1
        h = bw[p] if o & 1 else bh[p]
        if bv[p] + h > used_h:
            used_h = bv[p] + h
    return bu, bv, orient, used_h

"""Occupancy map at precision B0 and the block-to-patch map, coded losslessly with the range coder.

The occupancy map marks which B0 x B0 cells of the canvas hold patch pixels (V-PCC
``occupancyPrecision``; B0 = 1 is exact). It is coded cell by cell in raster order with a JBIG-like
context of ten causal neighbours (1024 adaptive contexts); cells outside every patch box are known
to be empty and are skipped.

Blocks of 16 x 16 pixels covered by more than one patch box (boxes may overlap, only occupied blocks
may not) carry the index of their owner among the covering patches, in patch order (TMC2's
block-to-patch candidate index); it is coded for occupied blocks only, after the map.
"""

from __future__ import annotations

import numpy as np
from imcodec.jit import njit

from imcodec.entropy.intcode import UINT_BLOCK, dec_uint, enc_uint
from imcodec.entropy.models import counter_p16, counter_update, new_counters
from imcodec.entropy.rangecoder import (
    D_POS,
    dec_bit,
    dec_init,
    dec_overrun,
    enc_bit,
    enc_finish,
    new_decoder_state,
    new_encoder_state,
)
from imcodec.errors import BitstreamError
from imcodec.vpcc.packing import BLOCK

_LIMIT = 255
_NCTX = 1 << 10


def occupancy_cells(x: np.ndarray, y: np.ndarray, width: int, height: int, b0: int) -> np.ndarray:
    """(height/b0, width/b0) uint8 map: 1 where some pixel (x, y) ((K,) int64 each) falls."""
    occ = np.zeros((height // b0, width // b0), dtype=np.uint8)
    occ[y // b0, x // b0] = 1
    return occ


def box_blocks(bu, bv, bw_o, bh_o, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate patches per canvas block: CSR (ptr (Hb*Wb+1,), idx) in patch order.

    bu, bv: block positions; bw_o, bh_o: oriented box sizes in blocks ((P,) int64 each).
    Boxes reaching past the canvas are clipped to it.
    """
    return _box_blocks(np.ascontiguousarray(bu, np.int64), np.ascontiguousarray(bv, np.int64),
                       np.ascontiguousarray(bw_o, np.int64), np.ascontiguousarray(bh_o, np.int64),
                       width // BLOCK, height // BLOCK)


@njit(cache=True)
def _box_blocks(bu, bv, bw, bh, wb, hb):
    cnt = np.zeros(wb * hb + 1, dtype=np.int64)
    for p in range(bu.shape[0]):
        for y in range(bv[p], min(bv[p] + bh[p], hb)):
            for x in range(bu[p], min(bu[p] + bw[p], wb)):
                cnt[y * wb + x + 1] += 1
    ptr = np.cumsum(cnt)
    fill = ptr[:-1].copy()
    idx = np.empty(ptr[-1], dtype=np.int64)
    for p in range(bu.shape[0]):
        for y in range(bv[p], min(bv[p] + bh[p], hb)):
            for x in range(bu[p], min(bu[p] + bw[p], wb)):
                idx[fill[y * wb + x]] = p
                fill[y * wb + x] += 1
    return ptr, idx


def cell_allowed(ptr: np.ndarray, width: int, height: int, b0: int) -> np.ndarray:
    """(height/b0, width/b0) bool: cells inside some patch box (the only ones coded)."""
    wb, hb = width // BLOCK, height // BLOCK
    covered = (np.diff(ptr) > 0).reshape(hb, wb)
    r = BLOCK // b0
    return np.repeat(np.repeat(covered, r, axis=0), r, axis=1)


def _reference(ref, shape) -> tuple[np.ndarray, int]:
    if ref is None:
        return np.zeros((1, 1), dtype=np.uint8), 0
    ref = np.ascontiguousarray(ref, dtype=np.uint8)
    if ref.shape != tuple(shape):
        raise ValueError(f"reference occupancy {ref.shape} differs from the map {tuple(shape)}")
    return ref, 1


def encode_occupancy(occ: np.ndarray, allowed: np.ndarray, owner_index: np.ndarray,
                     ref: np.ndarray | None = None) -> bytes:
    """Code the cell map ``occ`` ((Hc, Wc) uint8) where ``allowed`` and the owner indices.

    owner_index: (K,) int64, one per occupied block with several candidate patches, in raster order.
    ref: the previous frame's decoded map of the same shape (inter coding in a GOF, whose patches
    keep their canvas place): two more context bits, the co-located reference cell and whether any of
    its four neighbours is occupied. None = intra (the original contexts).
    """
    occ = np.ascontiguousarray(occ, dtype=np.uint8)
    allowed = np.ascontiguousarray(allowed, dtype=np.uint8)
    owners = np.ascontiguousarray(owner_index, dtype=np.int64)
    refm, use = _reference(ref, occ.shape)
    buf = np.empty(int(allowed.sum()) // 6 + 4 * len(owners) + 64, dtype=np.uint8)
    while True:
        n = _encode(new_encoder_state(), new_counters(5 * _NCTX), new_counters(UINT_BLOCK), occ, allowed,
                    owners, buf, refm, use)
        if n <= len(buf):
            return buf[:n].tobytes()
        buf = np.empty(n, dtype=np.uint8)


def decode_occupancy_map(data: bytes, allowed: np.ndarray, ptr: np.ndarray, idx: np.ndarray,
                         b0: int, ref: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode (occ (Hc, Wc) uint8, block_owner (Hb, Wb) int64 patch index or -1).

    ``ptr``/``idx``: candidates from :func:`box_blocks`; ``ref`` as for :func:`encode_occupancy`.
    Damaged data raises BitstreamError.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    allowed = np.ascontiguousarray(allowed, dtype=np.uint8)
    occ = np.zeros(allowed.shape, dtype=np.uint8)
    hc, wc = allowed.shape
    r = BLOCK // b0
    owner = np.full((hc // r, wc // r), -1, dtype=np.int64)
    st = new_decoder_state()
    refm, use = _reference(ref, allowed.shape)
    ok = _decode(st, arr, new_counters(5 * _NCTX), new_counters(UINT_BLOCK), allowed, occ, ptr, idx, owner,
                 r, refm, use)
    if not ok or dec_overrun(st) > 0 or st[D_POS] != len(arr):
        raise BitstreamError(f"occupancy sub-stream of {len(arr)} bytes is damaged "
                             f"(decoder consumed {int(st[D_POS])})")
    return occ, owner


@njit(cache=True)
def _ctx(occ, y, x, wc):
    c = 0
    for dy, dx in ((0, -1), (0, -2), (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2), (-2, -1), (-2, 0),
                   (-2, 1)):
        yy = y + dy
        xx = x + dx
        c <<= 1
        if yy >= 0 and 0 <= xx < wc:
            c |= occ[yy, xx]
    return c


@njit(cache=True)
def _ref_ctx(ref, y, x, use):
    """Context offset from the reference map: (1 + 2 * co-located + any 4-neighbour) * 1024, 0 without one."""
    if not use:
        return 0
    hc, wc = ref.shape
    near = 0
    for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0)):
        yy = y + dy
        xx = x + dx
        if 0 <= yy < hc and 0 <= xx < wc and ref[yy, xx]:
            near = 1
    return (1 + 2 * ref[y, x] + near) << 10


@njit(cache=True)
def _encode(st, t, tu, occ, allowed, owners, buf, ref, use):
    hc, wc = occ.shape
    for y in range(hc):
        for x in range(wc):
            if allowed[y, x]:
                c = _ctx(occ, y, x, wc) + _ref_ctx(ref, y, x, use)
                b = occ[y, x]
                enc_bit(st, buf, b, counter_p16(t, c))
                counter_update(t, c, b, _LIMIT)
    for i in range(owners.shape[0]):
        enc_uint(st, buf, tu, 0, owners[i])
    return enc_finish(st, buf)


@njit(cache=True)
def _decode(st, data, t, tu, allowed, occ, ptr, idx, owner, r, ref, use):
    dec_init(st, data)
    hc, wc = occ.shape
    for y in range(hc):
        for x in range(wc):
            if allowed[y, x]:
                c = _ctx(occ, y, x, wc) + _ref_ctx(ref, y, x, use)
                b = dec_bit(st, data, counter_p16(t, c))
                counter_update(t, c, b, _LIMIT)
                occ[y, x] = b
    hb, wb = owner.shape
    for by in range(hb):
        for bx in range(wb):
            busy = False
            for y in range(by * r, by * r + r):
                for x in range(bx * r, bx * r + r):
                    if occ[y, x]:
                        busy = True
            if not busy:
                continue
            b = by * wb + bx
            n = ptr[b + 1] - ptr[b]
            if n == 0:
                return False
            k = 0
            if n > 1:
                k = dec_uint(st, data, tu, 0)
                if k >= n:
                    return False
            owner[by, bx] = idx[ptr[b] + k]
    return True


def owner_indices(occ: np.ndarray, owner: np.ndarray, ptr: np.ndarray, idx: np.ndarray, b0: int) -> np.ndarray:
    """Encoder side: (K,) int64 candidate index of the owner of each occupied shared block (raster)."""
    r = BLOCK // b0
    hb, wb = owner.shape
    busy = occ.reshape(hb, r, wb, r).max(axis=(1, 3)) > 0
    out = []
    for b in np.flatnonzero(busy.ravel()):
        cands = idx[ptr[b]:ptr[b + 1]]
        if len(cands) > 1:
            out.append(int(np.flatnonzero(cands == owner.ravel()[b])[0]))
    return np.array(out, dtype=np.int64)

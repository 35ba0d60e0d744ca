"""Frame metadata (canvas, patch parameters) and raw points, range-coded with adaptive contexts.

Patch data in packing order (largest first), per patch: plane (3 bins), orientation (``orient_bits``
bins), block position (u as an unsigned value, v as the signed difference to the previous patch's),
box size in blocks (height as the difference to the previous patch's, width plain), and the 3D
position: tangent corner u1, v1 and near-surface coordinate ``dpos`` as fixed-length numbers with one
adaptive context per bit position. Raw points are sorted (x, y, z) and coded as coordinate
differences to the previous raw point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from imcodec.jit import njit

from imcodec.entropy.intcode import SINT_BLOCK, UINT_BLOCK, dec_sint, dec_uint, enc_sint, enc_uint
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

MAX_CANVAS_SIDE = 1 << 14  # pixels
MAX_CANVAS_AREA = 1 << 26
MAX_PATCHES = 1 << 20
MAX_RAW = 1 << 26
_LIMIT = 255
_FIX_BITS = 24  # contexts per fixed-length field


@dataclass
class FrameMeta:
    """Decoded frame header and patch table.

    origin: (3,) int64 added to every decoded coordinate; coord_bits: bits of relative coordinates;
    width, height: geometry canvas in pixels (height 0 without patches); per patch (P,) int64:
    plane 0..5, orient 0..7, bu/bv block position, bw/bh unoriented box size in blocks, u1/v1 tangent
    corner, dpos near-surface coordinate along the projection axis (offset = s * dpos).
    """

    origin: np.ndarray
    coord_bits: int
    width: int
    height: int
    plane: np.ndarray
    orient: np.ndarray
    bu: np.ndarray
    bv: np.ndarray
    bw: np.ndarray
    bh: np.ndarray
    u1: np.ndarray
    v1: np.ndarray
    dpos: np.ndarray

    @property
    def count(self) -> int:
        return int(len(self.plane))


# context block layout of the metadata coder
_C_HDR = 0                                   # header values, one uint block each
_C_HDR_S = _C_HDR + 4 * UINT_BLOCK           # origin, three sint blocks
_C_PLANE = _C_HDR_S + 3 * SINT_BLOCK         # 7 tree contexts
_C_ORIENT = _C_PLANE + 8                     # 8 tree contexts
_C_BU = _C_ORIENT + 8
_C_BV = _C_BU + UINT_BLOCK
_C_BW = _C_BV + SINT_BLOCK
_C_BH = _C_BW + UINT_BLOCK
_C_FIX = _C_BH + SINT_BLOCK                  # three fixed-length fields
_C_COPY = _C_FIX + 3 * _FIX_BITS             # inter: "copy of a reference patch" flag
_C_REF = _C_COPY + 1                         # inter: reference index step
_N_CTX = _C_REF + SINT_BLOCK


def _columns(meta: FrameMeta) -> np.ndarray:
    return np.ascontiguousarray(np.stack([meta.plane, meta.orient, meta.bu, meta.bv, meta.bw, meta.bh,
                                          meta.u1, meta.v1, meta.dpos]).astype(np.int64).reshape(9, -1))


def encode_meta(meta: FrameMeta, orient_bits: int, ref: FrameMeta | None = None) -> bytes:
    """Range-code a :class:`FrameMeta`.

    ref: the previous frame's metadata in a GOF (inter coding): each patch then starts with a flag
    telling whether it repeats a reference patch exactly (all nine fields); such a patch costs the
    flag and its reference index as a step from the previous copied patch's index + 1. None = intra.
    """
    hdr = np.array([meta.coord_bits, meta.width, meta.height, meta.count], dtype=np.int64)
    origin = np.ascontiguousarray(meta.origin, dtype=np.int64)
    cols = _columns(meta)
    refcols = _columns(ref) if ref is not None else np.zeros((9, 0), dtype=np.int64)
    refidx = np.full(meta.count, -1, dtype=np.int64)
    if ref is not None:
        lookup: dict = {}
        for j in range(refcols.shape[1] - 1, -1, -1):
            lookup[tuple(refcols[:, j])] = j
        for i in range(meta.count):
            refidx[i] = lookup.get(tuple(cols[:, i]), -1)
    buf = np.empty(64 + 16 * meta.count, dtype=np.uint8)
    while True:
        n = _enc_meta(new_encoder_state(), new_counters(_N_CTX), hdr, origin, cols, orient_bits, buf,
                      refidx, int(ref is not None))
        if n <= len(buf):
            return buf[:n].tobytes()
        buf = np.empty(n, dtype=np.uint8)


def decode_meta(data: bytes, orient_bits: int, ref: FrameMeta | None = None) -> FrameMeta:
    """Inverse of :func:`encode_meta` (``ref`` as given to it); BitstreamError on damaged data or
    implausible values."""
    arr = np.frombuffer(data, dtype=np.uint8)
    st = new_decoder_state()
    hdr = np.zeros(4, dtype=np.int64)
    origin = np.zeros(3, dtype=np.int64)
    t = new_counters(_N_CTX)
    dec_init(st, arr)
    _dec_header(st, arr, t, hdr, origin)
    coord_bits, width, height, count = (int(v) for v in hdr)
    if not (1 <= coord_bits <= 21 and 0 < width <= MAX_CANVAS_SIDE and 0 <= height <= MAX_CANVAS_SIDE
            and width * height <= MAX_CANVAS_AREA and width % 16 == 0 and height % 16 == 0
            and 0 <= count <= MAX_PATCHES and (count == 0) == (height == 0)):
        raise BitstreamError(f"patch metadata header is damaged (coordinate bits {coord_bits}, "
                             f"canvas {width}x{height}, {count} patches)")
    cols = np.zeros((9, count), dtype=np.int64)
    refcols = _columns(ref) if ref is not None else np.zeros((9, 0), dtype=np.int64)
    ok = _dec_patches(st, arr, t, cols, coord_bits, orient_bits, refcols, int(ref is not None))
    if not ok or dec_overrun(st) > 0 or st[D_POS] != len(arr):
        raise BitstreamError(f"patch metadata sub-stream of {len(arr)} bytes is truncated or damaged")
    plane, orient, bu, bv, bw, bh, u1, v1, dpos = cols
    wo = np.where(orient & 1, bh, bw)
    ho = np.where(orient & 1, bw, bh)
    if count and (plane.max() > 5 or bu.min() < 0 or bv.min() < 0 or bw.min() < 1 or bh.min() < 1
                  or (bu + wo).max() * 16 > width or (bv + ho).max() * 16 > height):
        raise BitstreamError("patch metadata holds a patch outside the canvas or an invalid plane")
    return FrameMeta(origin, coord_bits, width, height, plane, orient, bu, bv, bw, bh, u1, v1, dpos)


@njit(cache=True)
def _enc_fixed(st, buf, t, base, value, nbits):
    for i in range(nbits):
        b = (value >> (nbits - 1 - i)) & 1
        c = base + min(i, _FIX_BITS - 1)
        enc_bit(st, buf, b, counter_p16(t, c))
        counter_update(t, c, b, _LIMIT)


@njit(cache=True)
def _dec_fixed(st, data, t, base, nbits):
    v = 0
    for i in range(nbits):
        c = base + min(i, _FIX_BITS - 1)
        b = dec_bit(st, data, counter_p16(t, c))
        counter_update(t, c, b, _LIMIT)
        v = (v << 1) | b
    return v


@njit(cache=True)
def _enc_tree(st, buf, t, base, value, nbits):
    node = 1
    for i in range(nbits):
        b = (value >> (nbits - 1 - i)) & 1
        enc_bit(st, buf, b, counter_p16(t, base + node))
        counter_update(t, base + node, b, _LIMIT)
        node = node * 2 + b


@njit(cache=True)
def _dec_tree(st, data, t, base, nbits):
    node = 1
    for _ in range(nbits):
        b = dec_bit(st, data, counter_p16(t, base + node))
        counter_update(t, base + node, b, _LIMIT)
        node = node * 2 + b
    return node - (1 << nbits)


@njit(cache=True)
def _enc_meta(st, t, hdr, origin, cols, orient_bits, buf, refidx, use_ref):
    for i in range(4):
        enc_uint(st, buf, t, _C_HDR + i * UINT_BLOCK, hdr[i])
    for i in range(3):
        enc_sint(st, buf, t, _C_HDR_S + i * SINT_BLOCK, origin[i])
    nb = hdr[0]
    pbv = 0
    pbh = 0
    pref = -1
    for p in range(cols.shape[1]):
        if use_ref:
            copy = 1 if refidx[p] >= 0 else 0
            enc_bit(st, buf, copy, counter_p16(t, _C_COPY))
            counter_update(t, _C_COPY, copy, _LIMIT)
            if copy:
                enc_sint(st, buf, t, _C_REF, refidx[p] - pref - 1)
                pref = refidx[p]
                pbv = cols[3, p]
                pbh = cols[5, p]
                continue
        _enc_tree(st, buf, t, _C_PLANE, cols[0, p], 3)
        _enc_tree(st, buf, t, _C_ORIENT, cols[1, p], orient_bits)
        enc_uint(st, buf, t, _C_BU, cols[2, p])
        enc_sint(st, buf, t, _C_BV, cols[3, p] - pbv)
        enc_uint(st, buf, t, _C_BW, cols[4, p] - 1)
        enc_sint(st, buf, t, _C_BH, cols[5, p] - pbh)
        pbv = cols[3, p]
        pbh = cols[5, p]
        for f in range(3):
            _enc_fixed(st, buf, t, _C_FIX + f * _FIX_BITS, cols[6 + f, p], nb)
    return enc_finish(st, buf)


@njit(cache=True)
def _dec_header(st, data, t, hdr, origin):
    for i in range(4):
        hdr[i] = dec_uint(st, data, t, _C_HDR + i * UINT_BLOCK)
    for i in range(3):
        origin[i] = dec_sint(st, data, t, _C_HDR_S + i * SINT_BLOCK)


@njit(cache=True)
def _dec_patches(st, data, t, cols, nb, orient_bits, refcols, use_ref):
    pbv = 0
    pbh = 0
    pref = -1
    for p in range(cols.shape[1]):
        if use_ref:
            copy = dec_bit(st, data, counter_p16(t, _C_COPY))
            counter_update(t, _C_COPY, copy, _LIMIT)
            if copy:
                r = pref + 1 + dec_sint(st, data, t, _C_REF)
                if r < 0 or r >= refcols.shape[1]:
                    return False
                for f in range(9):
                    cols[f, p] = refcols[f, r]
                pref = r
                pbv = cols[3, p]
                pbh = cols[5, p]
                continue
        cols[0, p] = _dec_tree(st, data, t, _C_PLANE, 3)
        cols[1, p] = _dec_tree(st, data, t, _C_ORIENT, orient_bits)
        cols[2, p] = dec_uint(st, data, t, _C_BU)
        cols[3, p] = pbv + dec_sint(st, data, t, _C_BV)
        cols[4, p] = dec_uint(st, data, t, _C_BW) + 1
        cols[5, p] = pbh + dec_sint(st, data, t, _C_BH)
        pbv = cols[3, p]
        pbh = cols[5, p]
        for f in range(3):
            cols[6 + f, p] = _dec_fixed(st, data, t, _C_FIX + f * _FIX_BITS, nb)
        if dec_overrun(st) > 0:
            return False
    return True


# ------------------------------------------------------------------------------------ raw points

def sort_raw(raw: np.ndarray) -> np.ndarray:
    """Raw points in coding order: lexicographic (x, y, z). raw: (R, 3) int64."""
    if len(raw) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    order = np.lexsort((raw[:, 2], raw[:, 1], raw[:, 0]))
    return np.ascontiguousarray(raw[order], dtype=np.int64)


def encode_raw(raw: np.ndarray) -> bytes:
    """Range-code distinct raw points ((R, 3) non-negative int64, sorted by :func:`sort_raw`)."""
    raw = np.ascontiguousarray(raw, dtype=np.int64)
    buf = np.empty(16 + 8 * len(raw), dtype=np.uint8)
    while True:
        n = _enc_raw(new_encoder_state(), new_counters(8 * UINT_BLOCK), raw, buf)
        if n <= len(buf):
            return buf[:n].tobytes()
        buf = np.empty(n, dtype=np.uint8)


def decode_raw(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_raw`: (R, 3) int64; BitstreamError on damaged data."""
    arr = np.frombuffer(data, dtype=np.uint8)
    st = new_decoder_state()
    t = new_counters(8 * UINT_BLOCK)
    dec_init(st, arr)
    count = dec_uint(st, arr, t, 0)
    if count > MAX_RAW or count > 8 * len(arr) + 8:
        raise BitstreamError(f"raw-point sub-stream claims {count} points in {len(arr)} bytes")
    out = np.zeros((count, 3), dtype=np.int64)
    _dec_raw(st, arr, t, out)
    if dec_overrun(st) > 0 or st[D_POS] != len(arr):
        raise BitstreamError(f"raw-point sub-stream of {len(arr)} bytes is truncated or damaged")
    return out


@njit(cache=True)
def _enc_raw(st, t, raw, buf):
    enc_uint(st, buf, t, 0, raw.shape[0])
    px = py = pz = 0
    for i in range(raw.shape[0]):
        x, y, z = raw[i, 0], raw[i, 1], raw[i, 2]
        enc_uint(st, buf, t, 1 * UINT_BLOCK, x - px)
        if x != px or i == 0:
            enc_uint(st, buf, t, 2 * UINT_BLOCK, y)
            enc_uint(st, buf, t, 3 * UINT_BLOCK, z)
        else:
            enc_uint(st, buf, t, 4 * UINT_BLOCK, y - py)
            if y != py:
                enc_uint(st, buf, t, 5 * UINT_BLOCK, z)
            else:
                enc_uint(st, buf, t, 6 * UINT_BLOCK, z - pz - 1)
        px, py, pz = x, y, z
    return enc_finish(st, buf)


@njit(cache=True)
def _dec_raw(st, data, t, out):
    px = py = pz = 0
    for i in range(out.shape[0]):
        x = px + dec_uint(st, data, t, 1 * UINT_BLOCK)
        if x != px or i == 0:
            y = dec_uint(st, data, t, 2 * UINT_BLOCK)
            z = dec_uint(st, data, t, 3 * UINT_BLOCK)
        else:
            y = py + dec_uint(st, data, t, 4 * UINT_BLOCK)
            if y != py:
                z = dec_uint(st, data, t, 5 * UINT_BLOCK)
            else:
                z = pz + 1 + dec_uint(st, data, t, 6 * UINT_BLOCK)
        out[i, 0], out[i, 1], out[i, 2] = x, y, z
        px, py, pz = x, y, z
        if dec_overrun(st) > 0:  # read past the end: stop early, the caller reports it
            return

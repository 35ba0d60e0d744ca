"""Octree geometry coding: voxel positions <-> the ``geometry`` component.

Payload layout::

    u8      depth D (bits 0-4, 1..21: positions are < 2**D on every axis) | flags << 5
            (flag 1: duplicate counts are coded; flag 2: inter-coded against a reference frame)
    varint  occupied voxels L
    varint  N - L, only with the duplicates flag (N = points; otherwise N = L)
    ... range-coded bytes: the occupancy bits of every level, breadth-first, Morton order
        (:mod:`imcodec.octree.contexts` models them), then, with flag bit 0, for each voxel in Morton
        order a "repeated" bin and the repeat count - 2 (adaptive exp-Golomb)

Inter coding: with a reference (:class:`Levels` of the previous decoded frame, same depth D), every
node's contexts include the reference's occupancy byte of the co-located node (found by merging the
two levels' sorted Morton codes, :func:`co_located`). Positions are not moved: static parts of a
sequence become almost free, moving parts cost about what they cost intra.

Encoder and decoder run the same kernel (:func:`code_level`) in the two directions, so the models on
both sides evolve identically. The decoder bounds every level by the declared L and the duplicate
counts by the declared N, and rejects a stream whose arithmetic decoder reads past its end or stops
short of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imcodec.entropy.intcode import UINT_BLOCK, dec_uint, enc_uint
from imcodec.entropy.models import counter_p16, counter_update
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
from imcodec.io.bitstream import get_varint, put_varint
from imcodec.jit import njit
from imcodec.octree.build import (
    build_occupancy,
    child_neighbours,
    expand_level,
    level_sizes,
    popcount8,
    root_neighbours,
)
from imcodec.octree.contexts import (
    bit_contexts,
    fill_reference,
    fill_window,
    new_model,
    new_scratch,
    predict,
    update,
)
from imcodec.octree.morton import MAX_BITS, morton_decode, morton_encode

FLAG_DUPLICATES, FLAG_INTER = 1, 2


@njit(cache=True)
def code_level(occ, nbr, pocc, tabs, toff, bits, sym, imap, wa, wb, wc, wf, a1, a2, meta,
               w, slots, sel, x, xf, pm, apslot, pw, st, buf, decoding):
    """Code (or, with ``decoding``, decode into ``occ``) the occupancy bytes of one level.

    occ: (M,) uint8 the level's occupancy; nbr: (M, 27) int32 its neighbour table (build.py);
    pocc: (M,) int16 the reference frame's occupancy of each node (:func:`co_located`; -1 for all
    without a reference); then the model state (:func:`imcodec.octree.contexts.new_model`), scratch arrays
    (:func:`imcodec.octree.contexts.new_scratch`) and the range encoder state and output buffer, or
    the decoder state and input bytes.
    """
    for node in range(occ.shape[0]):
        p26, n3, e3 = fill_window(w, nbr, occ, node)
        pv = np.int64(pocc[node])
        if pv >= 0:
            fill_reference(pw, nbr, pocc, node)
        o = 0 if decoding else np.int64(occ[node])
        partial = 0
        for j in range(8):
            if j == 7 and partial == 0:
                bit = 1  # an occupied node has at least one child
            else:
                bit_contexts(slots, sel, w, nbr, node, j, partial, p26, n3, e3, bits, toff, sym, pv, pw)
                p = predict(slots, sel, j, x, xf, pm, apslot, tabs, imap, wa, wb, wc, wf, a1, a2)
                if decoding:
                    bit = dec_bit(st, buf, p)
                else:
                    bit = (o >> j) & 1
                    enc_bit(st, buf, bit, p)
                update(bit, slots, sel, j, x, xf, pm, apslot, tabs, imap, wa, wb, wc, wf, a1, a2, meta)
            partial |= bit << j
            w[(2 + ((j >> 2) & 1)) * 36 + (2 + ((j >> 1) & 1)) * 6 + 2 + (j & 1)] = bit
        if decoding:
            occ[node] = partial


@njit(cache=True)
def co_located(ref_codes, ref_occ, codes, out):
    """out[i] = occupancy byte of the reference node with Morton code codes[i] (0 when the reference
    has no such node); both code arrays sorted ascending."""
    k = 0
    n = ref_codes.shape[0]
    for i in range(codes.shape[0]):
        c = codes[i]
        while k < n and ref_codes[k] < c:
            k += 1
        out[i] = ref_occ[k] if k < n and ref_codes[k] == c else 0


@dataclass
class Levels:
    """A coded frame's octree, kept as the reference for the next frame: depth, per level
    0..depth-1 the node Morton codes (sorted) and occupancy bytes, and the leaf codes."""

    depth: int
    codes: list = field(default_factory=list)
    occ: list = field(default_factory=list)
    leaves: np.ndarray | None = None


@njit(cache=True)
def _children_before(occ, b):
    """Number of children of nodes 0..b-1 (the first index of the part after them, one level down)."""
    n = 0
    for i in range(b):
        n += popcount8(np.int64(occ[i]))
    return n


@njit(cache=True)
def _encode_counts(counts, st, buf):
    t = _fresh_counters(2 + UINT_BLOCK)
    prev = 0
    for i in range(counts.shape[0]):
        rep = 1 if counts[i] > 1 else 0
        enc_bit(st, buf, rep, counter_p16(t, prev))
        counter_update(t, prev, rep, 255)
        if rep:
            enc_uint(st, buf, t, 2, counts[i] - 2)
        prev = rep


@njit(cache=True)
def _decode_counts(n_points, counts, st, data):
    """Fill counts (L,) int64; returns False when they would exceed n_points or miss it."""
    t = _fresh_counters(2 + UINT_BLOCK)
    prev = 0
    total = 0
    n = counts.shape[0]
    for i in range(n):
        rep = dec_bit(st, data, counter_p16(t, prev))
        counter_update(t, prev, rep, 255)
        c = 1
        if rep:
            c = dec_uint(st, data, t, 2) + 2
        total += c
        if total > n_points - (n - 1 - i):
            return False
        counts[i] = c
        prev = rep
    return total == n_points


@njit(cache=True)
def _fresh_counters(n):
    return np.full(n, np.uint32((1 << 21) << 10), dtype=np.uint32)


def _depth_of(codes_max_coord: int) -> int:
    return max(1, int(codes_max_coord).bit_length())


def _coder(n_leaves: int, decoding: bool, buf: np.ndarray) -> tuple:
    """(model, scratch, coder state, buffer) of one coding pass."""
    if decoding:
        st = new_decoder_state()
        dec_init(st, buf)
    else:
        st = new_encoder_state()
    return new_model(n_leaves), new_scratch(), st, buf


def encode_geometry(q: np.ndarray, keep_duplicates: bool) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Code integer positions without a reference; see :func:`encode_geometry_ref`."""
    payload, order, mult, _ = encode_geometry_ref(q, keep_duplicates, None)
    return payload, order, mult


def encode_geometry_ref(q: np.ndarray, keep_duplicates: bool,
                        reference: Levels | None) -> tuple[bytes, np.ndarray, np.ndarray, Levels | None]:
    """Code integer positions, inter-coded against ``reference`` when it has the same depth.

    q: (N, 3) int64 in 0 .. 2**21 - 1, N >= 0.
    Returns (payload, order, mult, levels): ``order`` (N,) int64 sorts the input into Morton order (a
    stable sort, so repeated positions keep their input order), ``mult`` (L,) int64 is the number of
    input points in each occupied voxel, in that order (with ``keep_duplicates`` the decoder returns
    every voxel ``mult`` times, otherwise once), and ``levels`` this frame's octree as the reference
    for the next frame (None for an empty frame). Whether the reference was used is
    :func:`is_inter` of the payload.
    """
    n = len(q)
    if n == 0:
        return bytes([1]) + put_varint(0), np.zeros(0, np.int64), np.zeros(0, np.int64), None
    q = np.ascontiguousarray(q, dtype=np.int64)
    codes = morton_encode(q)
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    first = np.empty(n, dtype=bool)  # run starts of the sorted codes (np.unique would sort again)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    uniq = ordered[starts]
    mult = np.diff(np.append(starts, n)).astype(np.int64)
    n_leaves = len(uniq)
    n_points = int(mult.sum()) if keep_duplicates else n_leaves
    dup = n_points > n_leaves
    depth = _depth_of(int(q.max()))
    sizes = level_sizes(uniq, depth)
    occ = build_occupancy(uniq, depth, sizes)
    if reference is not None and reference.depth != depth:
        reference = None
    cap = max(64, len(occ) // 2)
    while True:
        coder = _coder(n_leaves, False, np.empty(cap, np.uint8))
        levels = _code_all(occ, sizes, depth, coder, decoding=False, reference=reference)
        if dup:
            _encode_counts(mult, coder[2], coder[3])
        used = int(enc_finish(coder[2], coder[3]))
        if used <= cap:
            break
        cap = used
    flags = (FLAG_DUPLICATES if dup else 0) | (FLAG_INTER if reference is not None else 0)
    head = bytes([depth | (flags << 5)]) + put_varint(n_leaves)
    if dup:
        head += put_varint(n_points - n_leaves)
    return head + coder[3][:used].tobytes(), order, mult, levels


def is_inter(payload: bytes) -> bool:
    """Whether a geometry payload was coded against a reference frame."""
    return bool(len(payload) and (payload[0] >> 5) & FLAG_INTER)


def _code_all(occ, sizes, depth, coder, decoding, reference=None, check=None) -> Levels:
    """Code every level of the breadth-first occupancy ``occ`` with one model and range coder,
    against ``reference`` (:class:`Levels` of the same depth) when given; ``check(d, level)`` runs
    after each level (it may raise). For decoding, ``occ`` is a list that receives the levels and
    ``sizes[d + 1]`` must be set by ``check``. Returns the frame's :class:`Levels`."""
    model, scratch, st, buf = coder
    nbr = root_neighbours()
    start = 0
    codes = np.zeros(1, dtype=np.int64)
    out = Levels(depth)
    for d in range(depth):
        if decoding:
            level = np.zeros(sizes[d], dtype=np.uint8)
            occ.append(level)
        else:
            level = occ[start:start + sizes[d]]
            start += sizes[d]
        pocc = np.full(len(level), -1, dtype=np.int16)
        if reference is not None:
            co_located(reference.codes[d], reference.occ[d], codes, pocc)
        code_level(level, nbr, pocc, *model, *scratch, st, buf, decoding)
        if check is not None:
            check(d, level)
        out.codes.append(codes)
        out.occ.append(level)
        codes = expand_level(codes, level)
        if d + 1 < depth:
            nbr = child_neighbours(nbr, level)
    out.leaves = codes
    return out


def decode_geometry(payload: bytes, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a geometry payload coded without a reference; see :func:`decode_geometry_ref`."""
    vox, counts, _ = decode_geometry_ref(payload, max_points, None)
    return vox, counts


def decode_geometry_ref(payload: bytes, max_points: int,
                        reference: Levels | None) -> tuple[np.ndarray, np.ndarray, Levels | None]:
    """Decode a geometry payload into (positions (L, 3) int64 in Morton order, counts (L,) int64,
    the frame's :class:`Levels` for the next frame).

    ``max_points`` bounds the declared point count (from the container header); ``reference`` is the
    previous frame's levels, needed when the payload is inter-coded. Every inconsistency raises
    BitstreamError.
    """
    if len(payload) < 2:
        raise BitstreamError(f"geometry payload of {len(payload)} bytes is shorter than its header")
    depth, flags = payload[0] & 31, payload[0] >> 5
    if flags & ~(FLAG_DUPLICATES | FLAG_INTER) or not 1 <= depth <= MAX_BITS:
        raise BitstreamError(f"geometry header has bad flags {flags} or depth {depth}")
    n_leaves, pos = get_varint(payload, 1, max_points, "geometry voxel count")
    n_points = n_leaves
    if flags & FLAG_DUPLICATES:
        extra, pos = get_varint(payload, pos, max_points, "geometry duplicate count")
        n_points += extra
        if extra == 0 or n_points > max_points:
            raise BitstreamError(f"geometry header declares {n_points} points (stream limit {max_points})")
    if flags & FLAG_INTER:
        if reference is None:
            raise BitstreamError("geometry is inter-coded but no reference frame was decoded before it")
        if reference.depth != depth:
            raise BitstreamError(f"inter-coded geometry of depth {depth} refers to a frame of depth {reference.depth}")
    else:
        reference = None
    if n_leaves == 0:
        if len(payload) != pos or flags & FLAG_INTER:
            raise BitstreamError("empty geometry payload has trailing bytes or an inter flag")
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64), None
    data = np.frombuffer(payload, dtype=np.uint8, offset=pos).copy()  # kernels take writable arrays
    coder = _coder(n_leaves, True, data)
    st = coder[2]
    sizes = np.ones(depth + 1, dtype=np.int64)
    levels: list[np.ndarray] = []

    def check(d, level):
        if dec_overrun(st) > 4:
            raise BitstreamError(f"geometry data truncated (level {d})")
        sizes[d + 1] = _children_before(level, len(level))
        if sizes[d + 1] > n_leaves or (d + 1 == depth and sizes[d + 1] != n_leaves):
            raise BitstreamError(f"geometry level {d + 1} decodes to {sizes[d + 1]} nodes, the header "
                                 f"declares {n_leaves} voxels")

    tree = _code_all(levels, sizes, depth, coder, decoding=True, reference=reference, check=check)
    counts = np.ones(n_leaves, dtype=np.int64)
    if flags & FLAG_DUPLICATES and not _decode_counts(n_points, counts, st, data):
        raise BitstreamError(f"geometry duplicate counts do not add up to the declared {n_points} points")
    if dec_overrun(st) > 0 or st[D_POS] != len(data):
        raise BitstreamError(f"geometry data damaged: decoder used {int(st[D_POS])} of {len(data)} bytes")
    return morton_decode(tree.leaves), counts, tree

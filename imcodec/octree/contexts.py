"""The occupancy model shared by the octree encoder and decoder: contexts, mixing, secondary estimation.

Each occupied node of level d codes its 8 child-occupancy bits in child order j = x<<2 | y<<1 | z
(bit 7 is implied when bits 0..6 are all zero). A bit's probability comes only from data the decoder
already has:

* ``w`` - a 6x6x6 window of child-level voxels (level d + 1) around the node: the children of the
  node's 27-neighbourhood (every voxel within distance 2 of any child). A voxel is 0 (empty: its
  level-d node is empty, or it was coded empty), 1 (coded occupied: in a node earlier in breadth-first
  Morton order, or a sibling coded earlier) or 2 (unknown: its node is occupied, not coded yet).
* the level-d neighbourhood of the node (``p26``: which of its 26 neighbours are occupied), and the
  occupancy bytes of its causal face and edge neighbours (always coded before it: moving down any
  axis lowers the Morton code), plus the bits already coded in this node.
* for inter-coded frames, the occupancy byte of the co-located node in the reference frame (the
  previous decoded frame of the sequence; ``pv``), which both sides have.

Ten context models turn these into table slots. Two of them are invariant under the 48 symmetries
of the cube (the canonical form of the face and distance-2 pattern around the child), which pools
statistics 48 ways and lets small clouds learn fast. Each slot holds a direct adaptive probability
and a bit-history state whose own adaptive map gives a second opinion (indirect modelling). The 20
stretched probabilities feed three PAQ-style logistic mixers (weight sets chosen by the face pattern,
by the octant neighbour pattern with the reference bit, and by the symmetry class of the face
pattern); a final mixer combines them and two APM stages refine the result (M. Mahoney, "Adaptive
weighing of context models for lossless data compression", 2005). Node-level models keep a node's 8
bits in one 16-slot bucket (one cache line).

Model state is a tuple of arrays from :func:`new_model`, sized from the voxel count so that the
decoder allocates exactly what the encoder did.
"""

from __future__ import annotations

import itertools

import numpy as np

from imcodec.entropy.models import (
    RECIP,
    apm_predict,
    apm_update,
    counter_p16,
    counter_update,
    mix_predict,
    mix_update,
    new_apm,
    new_counters,
    new_mixer,
    squash,
    stretch,
)
from imcodec.jit import njit

# model ids; P26, N3, E3, PRV are node-level (bucketed)
M26, M18, MP, SYM, SYMC, P26, N3, E3, CNT, PRV = range(10)
N_MODELS = 10
N_INPUTS = 2 * N_MODELS + 1
TABLE_CAPS = np.array([21, 18, 16, 16, 18, 20, 20, 20, 18, 20], dtype=np.int64)  # log2 table slots, M26 .. PRV
LIMIT = 127  # direct counters: rate 1/(n + 1.5) down to 1/128.5
IMAP_LIMIT = 1023
HIST_STATES = 128
LR_MIX = 2  # mixer learning rate once warmed up ...
LR_BOOST = 4  # ... plus LR_BOOST * BOOST_HALF / (BOOST_HALF + bits coded) at the start
BOOST_HALF = 16384
LR_FINAL = 1
APM_RATE = 6
N_FACE_CLASSES = 56  # symmetry classes of the 6-face pattern (checked in symmetry_table)
_H1 = 0x2545F4914F6CDD1D
_H2 = 0x5851F42D4C957F2D


def _window_offsets():
    """Flat offsets (x*36 + y*6 + z) in the 6x6x6 window: the 26 neighbours (with a flag for the 18
    face + edge ones), the 6 faces and the 6 cells at distance 2 (order -x, +x, -y, +y, -z, +z)."""
    n26, in18 = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                a = abs(dx) + abs(dy) + abs(dz)
                if a:
                    n26.append(dx * 36 + dy * 6 + dz)
                    in18.append(1 if a <= 2 else 0)
    face = [s * axis for axis in (36, 6, 1) for s in (-1, 1)]
    return (np.array(n26, np.int64), np.array(in18, np.int64), np.array(face, np.int64),
            2 * np.array(face, np.int64))


OFF26, IN18, OFF_FACE, OFF_D2 = _window_offsets()


def _pat_bits() -> np.ndarray:
    """(8, 7) int64: for child j, the p26 bit positions of the 7 neighbours of the node in the
    child's octant (p26 holds neighbour k != 13 of the 27-neighbourhood at bit 25 - index)."""
    out = np.zeros((8, 7), dtype=np.int64)
    for j in range(8):
        s = [2 * ((j >> b) & 1) - 1 for b in (2, 1, 0)]
        i = 0
        for ax in range(2):
            for ay in range(2):
                for az in range(2):
                    if ax or ay or az:
                        k = (1 + ax * s[0]) * 9 + (1 + ay * s[1]) * 3 + 1 + az * s[2]
                        out[j, i] = 25 - (k if k < 13 else k - 1)
                        i += 1
    return out


PAT_BITS = _pat_bits()
_SYM: np.ndarray | None = None


def symmetry_table() -> np.ndarray:
    """(729 * 729 + 729,) int32, computed once: entry ``face * 729 + d2`` is the canonical id of a
    (face, distance-2) pattern pair under the 48 cube symmetries (the smallest code over all of them;
    base-3 digits in the order -x, +x, -y, +y, -z, +z, first most significant); entry
    ``729 * 729 + face`` is the symmetry class (0..55) of a face pattern alone."""
    global _SYM
    if _SYM is None:
        digits = np.stack([(np.arange(729) // 3 ** (5 - i)) % 3 for i in range(6)], axis=1)
        best = np.full((729, 729), np.iinfo(np.int32).max, dtype=np.int32)  # codes < 729**2 fit int32
        for perm in itertools.permutations(range(3)):
            for flips in itertools.product((0, 1), repeat=3):
                src = [2 * perm[a] + (sign ^ flips[a]) for a in range(3) for sign in (0, 1)]
                moved = sum(digits[:, src[i]] * 3 ** (5 - i) for i in range(6)).astype(np.int32)
                np.minimum(best, moved[:, None] * 729 + moved[None, :], out=best)
        flat = best.reshape(-1)
        classes, face_class = np.unique(flat[np.arange(729) * 729], return_inverse=True)
        assert len(classes) == N_FACE_CLASSES
        _SYM = np.concatenate([flat, face_class]).astype(np.int32)
    return _SYM


def _history_table() -> np.ndarray:
    """(256,) uint8: next bit-history state for (state << 1 | bit). A state holds n0, n1 (0..7; the
    count of the other bit is cut back toward 2 on each change, favouring recent bits) and the last
    bit; state 0 means "never seen"."""
    out = np.zeros(256, dtype=np.uint8)
    for h in range(128):
        for b in (0, 1):
            n0, n1 = h & 7, (h >> 3) & 7
            if b:
                n1, n0 = min(7, n1 + 1), ((n0 + 2) >> 1 if n0 > 2 else n0)
            else:
                n0, n1 = min(7, n0 + 1), ((n1 + 2) >> 1 if n1 > 2 else n1)
            out[(h << 1) | b] = n0 | (n1 << 3) | (b << 6)
    return out


NEXT_HISTORY = _history_table()


def new_model(n_leaves: int) -> tuple:
    """Fresh model state for a frame with ``n_leaves`` voxels (identical on both sides):
    (tabs, toff, bits, sym, imap, wa, wb, wc, wf, a1, a2, meta)."""
    base = max(10, min(21, int(n_leaves).bit_length() + 1))
    bits = np.minimum(TABLE_CAPS, base).astype(np.int64)
    toff = np.zeros(N_MODELS + 1, dtype=np.int64)
    toff[1:] = np.cumsum(np.int64(1) << bits)
    tabs = np.full(int(toff[-1]), np.uint32(32768 << 16), dtype=np.uint32)  # p = 1/2, n = 0, state 0
    imap = new_counters(N_MODELS * HIST_STATES)
    wa = new_mixer(729, N_INPUTS, 0.15)
    wb = new_mixer(3072, N_INPUTS, 0.15)
    wc = new_mixer(N_FACE_CLASSES, N_INPUTS, 0.15)
    wf = new_mixer(8, 4, 0.33)
    a1 = new_apm(N_FACE_CLASSES)
    a2 = new_apm(4096)
    meta = np.zeros(1, dtype=np.int64)  # bits coded so far
    return tabs, toff, bits, symmetry_table(), imap, wa, wb, wc, wf, a1, a2, meta


def new_scratch() -> tuple:
    """Per-call scratch arrays: window (216,) int8, slots (N_MODELS,), sel (4,), x (N_INPUTS,)
    int32, xf (4,) int32, pm (4,), apslot (4,) int64, reference window (216,) int8."""
    return (np.zeros(216, np.int8), np.zeros(N_MODELS, np.int64), np.zeros(4, np.int64),
            np.zeros(N_INPUTS, np.int32), np.zeros(4, np.int32), np.zeros(4, np.int64), np.zeros(4, np.int64),
            np.zeros(216, np.int8))


@njit(cache=True)
def hash_index(h, bits):
    """Table index (``bits`` wide) of a 64-bit context value (integer multiply-xorshift hash)."""
    h = h * _H1
    h ^= (h >> 29) & 0x7FFFFFFFF
    h = h * _H2
    return (h >> (64 - bits)) & ((np.int64(1) << bits) - 1)


@njit(cache=True)
def combine(h, v):
    """Fold value ``v`` into running context hash ``h``."""
    return (h + v + 1) * 0x100000001B3


@njit(cache=True, inline="always")
def fill_window(w, nbr, occ, node):
    """Fill w ((216,) int8) with the child-level states around ``node`` (nbr: (M, 27) int32 table,
    occ: (M,) uint8 of the level, valid below ``node``). Returns the node-level contexts: p26 (bit
    25 - i set when neighbour i of the 26 is occupied), n3 / e3 (occupancy bytes of the causal face /
    edge neighbours, 256 for an empty one)."""
    p26 = np.int64(0)
    for k in range(27):
        q = nbr[node, k]
        base = (k // 9) * 72 + ((k // 3) % 3) * 12 + (k % 3) * 2
        if k != 13:
            p26 = (p26 << 1) | (1 if q >= 0 else 0)
        known = 0 <= q < node
        o = np.int64(occ[q]) if known else 0
        for c in range(8):
            s = ((o >> c) & 1) if known or q < 0 else 2
            w[base + ((c >> 2) & 1) * 36 + ((c >> 1) & 1) * 6 + (c & 1)] = s
    n3 = np.int64(0)
    for k in (4, 10, 12):  # -x, -y, -z
        q = nbr[node, k]
        n3 = n3 * 257 + (256 if q < 0 else np.int64(occ[q]))
    e3 = np.int64(0)
    for k in (1, 3, 9):  # -x-y, -x-z, -y-z
        q = nbr[node, k]
        e3 = e3 * 257 + (256 if q < 0 else np.int64(occ[q]))
    return p26, n3, e3


@njit(cache=True, inline="always")
def fill_reference(pw, nbr, pocc, node):
    """Fill pw ((216,) int8) with the reference frame's voxels in the window around ``node``: the
    co-located children of the node's 27-neighbourhood (pocc: the reference occupancy of each node
    of the level; a neighbour absent from this frame counts as empty)."""
    for k in range(27):
        q = nbr[node, k]
        base = (k // 9) * 72 + ((k // 3) % 3) * 12 + (k % 3) * 2
        po = np.int64(pocc[q]) if q >= 0 else 0
        if po < 0:
            po = 0
        for c in range(8):
            pw[base + ((c >> 2) & 1) * 36 + ((c >> 1) & 1) * 6 + (c & 1)] = (po >> c) & 1


@njit(cache=True, inline="always")
def bit_contexts(slots, sel, w, nbr, node, j, partial, p26, n3, e3, bits, toff, sym, pv, pw):
    """Table slots of the models for child bit ``j`` (into ``slots``) and the selector contexts
    (into ``sel``: mixer A set, mixer B set, face symmetry class, APM-2 context). ``pv``: the
    reference frame's occupancy byte of the co-located node (0: empty there), -1 without a reference."""
    c = (2 + ((j >> 2) & 1)) * 36 + (2 + ((j >> 1) & 1)) * 6 + 2 + (j & 1)
    face = np.int64(0)
    d2 = np.int64(0)
    fcnt = np.int64(0)
    for i in range(6):
        v = np.int64(w[c + OFF_FACE[i]])
        face = face * 3 + v
        fcnt += (v & 1) + ((v >> 1) << 3)
        d2 = d2 * 3 + w[c + OFF_D2[i]]
    h18 = np.int64(0)
    h26 = np.int64(0)
    o26 = 0
    u26 = 0
    o18 = 0
    for i in range(26):
        v = np.int64(w[c + OFF26[i]])
        h26 = (h26 << 2) | v
        if IN18[i]:
            h18 = (h18 << 2) | v
            o18 += v & 1
        o26 += v & 1
        u26 += v >> 1
    pat = np.int64(0)
    for i in range(7):  # occupancy of the 7 level-d neighbours on the child's side, from p26
        pat = (pat << 1) | ((p26 >> PAT_BITS[j, i]) & 1)
    canon = np.int64(sym[face * 729 + d2])
    slots[M26] = toff[M26] + hash_index(combine(combine(1, h26), d2), bits[M26])
    slots[M18] = toff[M18] + hash_index(combine(2, h18), bits[M18])
    slots[MP] = toff[MP] + hash_index(combine(combine(combine(3, pat), face), j), bits[MP])
    slots[SYM] = toff[SYM] + hash_index(combine(4, canon), bits[SYM])
    slots[SYMC] = toff[SYMC] + hash_index(combine(combine(combine(5, canon), o26), u26), bits[SYMC])
    # node-level models: a 16-slot bucket per (context, nibble prefix); slot = position in the nibble
    if j < 4:
        nib, sub = 0, (1 << j) | partial
    else:
        nib, sub = 16 + (partial & 15), (1 << (j - 4)) | (partial >> 4)
    slots[P26] = toff[P26] + ((hash_index(combine(6, p26), bits[P26] - 4) << 4) | j)
    slots[N3] = toff[N3] + ((hash_index(combine(combine(7, n3), nib), bits[N3] - 4) << 4) | sub)
    slots[E3] = toff[E3] + ((hash_index(combine(combine(8, e3), nib), bits[E3] - 4) << 4) | sub)
    pb = 2 if pv < 0 else (pv >> j) & 1  # the co-located child in the reference frame: 0, 1, or none
    slots[PRV] = toff[PRV] + ((hash_index(combine(combine(combine(10, pv), nib), pb), bits[PRV] - 4) << 4) | sub)
    if pv < 0:
        slots[CNT] = toff[CNT] + hash_index(combine(9, fcnt + 64 * o18), bits[CNT])
    else:  # inter: the reference's voxels around the child (26 neighbours, the 6 faces count 9)
        pc = np.int64(0)
        for i in range(26):
            pc += pw[c + OFF26[i]]
        for i in range(6):
            pc += 8 * pw[c + OFF_FACE[i]]
        slots[CNT] = toff[CNT] + hash_index(combine(combine(combine(11, face), pc * 3 + pb), j), bits[CNT])
    sel[0] = face
    sel[1] = (pat * 8 + j) * 3 + pb
    sel[2] = sym[531441 + face]
    sel[3] = hash_index(canon * 3 + pb, 12)


@njit(cache=True, inline="always")
def predict(slots, sel, j, x, xf, pm, apslot, tabs, imap, wa, wb, wc, wf, a1, a2):
    """Final 16-bit P(bit = 1); leaves the mixer inputs (x, xf), mixer outputs (pm) and APM cells
    (apslot) for :func:`update`."""
    for k in range(N_MODELS):
        v = np.int64(tabs[slots[k]])
        x[k] = stretch(v >> 16)
        x[N_MODELS + 1 + k] = stretch(counter_p16(imap, k * HIST_STATES + (v & 127)))
    x[N_MODELS] = 256
    sa, sb, sc = sel[0], sel[1], sel[2]
    da = np.int64(0)
    db = np.int64(0)
    dc = np.int64(0)
    for i in range(N_INPUTS):  # the three first-layer mixers share their inputs: one pass
        xi = np.int64(x[i])
        da += xi * wa[sa, i]
        db += xi * wb[sb, i]
        dc += xi * wc[sc, i]
    pm[0] = squash(da >> 16)
    pm[1] = squash(db >> 16)
    pm[2] = squash(dc >> 16)
    for i in range(3):
        xf[i] = stretch(pm[i])
    xf[3] = 256
    p = mix_predict(wf, j, xf, 4)
    pm[3] = p
    pa = apm_predict(a1, sel[2], p, apslot, 0)
    pb = apm_predict(a2, sel[3], p, apslot, 2)
    pf = (2 * p + 3 * pa + 3 * pb) >> 3
    return max(np.int64(1), min(np.int64(65535), pf))


@njit(cache=True)
def _clamp_weight(v):
    return np.int32(max(-0x7FFFFF, min(0x7FFFFF, v)))


@njit(cache=True, inline="always")
def update(bit, slots, sel, j, x, xf, pm, apslot, tabs, imap, wa, wb, wc, wf, a1, a2, meta):
    """Adapt every model, mixer and APM to the coded ``bit`` (the mirror of :func:`predict`)."""
    t = meta[0]
    meta[0] = t + 1
    lr = LR_MIX + (LR_BOOST * BOOST_HALF) // (BOOST_HALF + t)  # fast at first: small clouds learn
    sa, sb, sc = sel[0], sel[1], sel[2]
    ea = ((np.int64(bit) << 16) - pm[0]) * lr
    eb = ((np.int64(bit) << 16) - pm[1]) * lr
    ec = ((np.int64(bit) << 16) - pm[2]) * lr
    for i in range(N_INPUTS):  # mix_update of the three first-layer mixers, fused
        xi = np.int64(x[i])
        wa[sa, i] = _clamp_weight(wa[sa, i] + ((xi * ea) >> 16))
        wb[sb, i] = _clamp_weight(wb[sb, i] + ((xi * eb) >> 16))
        wc[sc, i] = _clamp_weight(wc[sc, i] + ((xi * ec) >> 16))
    mix_update(wf, j, xf, 4, pm[3], bit, LR_FINAL)
    apm_update(a1, apslot, 0, bit, APM_RATE)
    apm_update(a2, apslot, 2, bit, APM_RATE)
    target = np.int64(bit) << 16
    for k in range(N_MODELS):
        s = slots[k]
        v = np.int64(tabs[s])
        p = v >> 16
        n = (v >> 8) & 255
        h = v & 127
        counter_update(imap, k * HIST_STATES + h, bit, IMAP_LIMIT)
        p += ((target - p) * RECIP[n]) >> 16
        p = max(np.int64(32), min(np.int64(65504), p))
        if n < LIMIT:
            n += 1
        tabs[s] = np.uint32((p << 16) | (n << 8) | NEXT_HISTORY[(h << 1) | bit])

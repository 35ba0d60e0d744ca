"""Adaptive binary probability models, logistic mixing and secondary estimation, as Numba kernels.

All arithmetic is integer, so encoder and decoder agree bit for bit on every machine.

Counters (one per context)
    ``t = new_counters(n)``: (n,) uint32, each ``p22 << 10 | count``: P(1) in 22-bit fixed point and a
    hit count (capped at ``limit``). ``counter_p16(t, i)`` reads P(1) in 16 bits;
    ``counter_update(t, i, bit, limit)`` moves P(1) toward the bit by 1/(count + 1.5): fast at first,
    then a fixed rate 1/(limit + 1.5) (limit <= 1023).

Logistic domain
    ``stretch(p16)`` = ln(p / (1 - p)) scaled by 256 and clipped to -2047..2047 (int);
    ``squash(x)`` is its inverse and returns a 16-bit probability (32..65504).

Mixer (PAQ-style, Mahoney 2005)
    ``w = new_mixer(n_sets, n_inputs)``: (n_sets, n_inputs) int32 weights (16.16 fixed point).
    ``p = mix_predict(w, s, x, n)`` dots the stretched inputs ``x[:n]`` (int32) with weight set ``s``
    and returns a 16-bit probability; ``mix_update(w, s, x, n, p, bit, lr)`` does the gradient step
    (``lr`` ~ 1..32; larger = faster; 2..6 suits
    slowly varying sources).

APM / SSE (secondary estimation)
    ``a = new_apm(n_ctx)``: (n_ctx, 33) uint16 interpolation tables, initialised to the identity.
    ``p = apm_predict(a, ctx, p16, slot, k)`` refines a probability given a context (``slot[k:k+2]``
    of an int64 scratch array remembers the cell for the update);
    ``apm_update(a, slot, k, bit, rate)`` (rate 5..7: larger = slower).
"""

from __future__ import annotations

import math

import numpy as np

from imcodec.jit import njit

COUNTER_INIT = np.uint32((1 << 21) << 10)  # P(1) = 1/2, count 0


def _recip_table() -> np.ndarray:
    return np.array([int(65536 / (n + 1.5)) for n in range(1024)], dtype=np.int64)


def _stretch_table() -> np.ndarray:
    # stretch over 12-bit probabilities (index = p16 >> 4)
    out = np.empty(4096, dtype=np.int32)
    for i in range(4096):
        p = (i + 0.5) / 4096.0
        v = int(round(math.log(p / (1.0 - p)) * 256.0))
        out[i] = max(-2047, min(2047, v))
    return out


def _squash_table() -> np.ndarray:
    out = np.empty(4095, dtype=np.int32)
    for i in range(4095):
        x = (i - 2047) / 256.0
        v = int(round(65536.0 / (1.0 + math.exp(-x))))
        out[i] = max(32, min(65504, v))
    return out


RECIP = _recip_table()
STRETCH = _stretch_table()
SQUASH = _squash_table()


def new_counters(n: int) -> np.ndarray:
    """(n,) uint32 adaptive counters, all at P(1) = 1/2 with count 0."""
    return np.full(n, COUNTER_INIT, dtype=np.uint32)


@njit(cache=True, inline="always")
def counter_p16(t, i):
    """P(1) of counter ``i`` as a 16-bit probability (1..65535)."""
    p = np.int64(t[i] >> 16)
    if p < 1:
        return np.int64(1)
    return p


@njit(cache=True, inline="always")
def counter_update(t, i, bit, limit):
    """Move counter ``i`` toward ``bit`` by 1/(count + 1.5); count capped at ``limit`` (<= 1023)."""
    v = np.int64(t[i])
    n = v & 1023
    p = v >> 10
    target = np.int64(bit) << 22
    p += ((target - p) * RECIP[n]) >> 16
    if p < 64:
        p = 64
    elif p > (1 << 22) - 64:
        p = (1 << 22) - 64
    if n < limit:
        n += 1
    t[i] = np.uint32((p << 10) | n)


@njit(cache=True, inline="always")
def stretch(p16):
    """ln(p/(1-p)) * 256 of a 16-bit probability, clipped to -2047..2047."""
    return np.int64(STRETCH[p16 >> 4])


@njit(cache=True, inline="always")
def squash(x):
    """Inverse of stretch: 16-bit probability (32..65504) of a logistic-domain value."""
    if x > 2047:
        x = 2047
    elif x < -2047:
        x = -2047
    return np.int64(SQUASH[x + 2047])


def new_mixer(n_sets: int, n_inputs: int, init: float = 0.3) -> np.ndarray:
    """(n_sets, n_inputs) int32 mixer weights, 16.16 fixed point, all equal to ``init``."""
    return np.full((n_sets, n_inputs), int(init * 65536), dtype=np.int32)


@njit(cache=True, inline="always")
def mix_predict(w, s, x, n):
    """16-bit probability from stretched inputs x[:n] (int32) mixed with weight set ``s``."""
    dot = np.int64(0)
    for i in range(n):
        dot += np.int64(x[i]) * np.int64(w[s, i])
    return squash(dot >> 16)


@njit(cache=True, inline="always")
def mix_update(w, s, x, n, p16, bit, lr):
    """One gradient step of weight set ``s`` after coding ``bit`` with mixed probability ``p16``."""
    err = ((np.int64(bit) << 16) - p16) * lr
    for i in range(n):
        v = np.int64(w[s, i]) + ((np.int64(x[i]) * err) >> 16)
        if v > 0x7FFFFF:
            v = 0x7FFFFF
        elif v < -0x7FFFFF:
            v = -0x7FFFFF
        w[s, i] = np.int32(v)


def new_apm(n_ctx: int) -> np.ndarray:
    """(n_ctx, 33) uint16 APM tables mapping a stretched probability to a refined one (identity)."""
    row = np.array([min(65535, max(1, int(round(65536.0 / (1.0 + math.exp(-((j - 16) * 128) / 256.0))))))
                    for j in range(33)], dtype=np.uint16)
    return np.tile(row, (n_ctx, 1))


@njit(cache=True, inline="always")
def apm_predict(a, ctx, p16, slot, k):
    """Refined 16-bit probability of ``p16`` in context ``ctx``; remembers the cell in
    ``slot[k:k + 2]`` (an int64 scratch array) for :func:`apm_update`."""
    s = stretch(p16) + 2048  # 1..4095
    lo = s >> 7  # 0..31
    wt = s & 127
    slot[k] = ctx
    slot[k + 1] = (lo << 7) | wt
    r = (np.int64(a[ctx, lo]) * (128 - wt) + np.int64(a[ctx, lo + 1]) * wt) >> 7
    if r < 1:
        r = 1
    elif r > 65535:
        r = 65535
    return r


@njit(cache=True, inline="always")
def apm_update(a, slot, k, bit, rate):
    """Move the two cells used by the last :func:`apm_predict` (``slot[k:k + 2]``) toward ``bit``
    (rate 5..7: larger = slower)."""
    ctx = slot[k]
    lo = slot[k + 1] >> 7
    wt = slot[k + 1] & 127
    target = (np.int64(bit) << 16) - bit  # 0 or 65535
    v = np.int64(a[ctx, lo])
    v += ((target - v) * (128 - wt)) >> (rate + 7)
    a[ctx, lo] = np.uint16(min(65535, max(1, v)))
    v = np.int64(a[ctx, lo + 1])
    v += ((target - v) * wt) >> (rate + 7)
    a[ctx, lo + 1] = np.uint16(min(65535, max(1, v)))

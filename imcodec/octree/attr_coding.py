"""Context modelling and binarisation of colour coefficients (Numba kernels over imcodec.entropy).

Every kernel takes ``mode`` (ENCODE or DECODE), the range coder state ``st`` and its byte array
``arr`` (the output buffer when encoding, the input data when decoding) and returns the value coded,
so one function serves both sides and the decoder cannot drift from the encoder.

Lossy RAHT coefficients (integers ``q``, one per channel of a transform coefficient) are binarised
as significance, |q| > 1, |q| > 2, then |q| - 3 with the adaptive exp-Golomb code of
:mod:`imcodec.entropy.intcode`, and the sign. The contexts are

* ``e``: a 16-level class of the *expected magnitude* of the coefficient in quantiser steps,
  ``g / step · (spread/2 + |d_pred|/2 + neighbour residual)``: the gain of the coefficient, the
  spread of the block's prediction, the predicted coefficient and the mean residual of the
  already-coded neighbour blocks of the same level, all known to the decoder;
* ``k``: the channel (Y, Cb, Cr), and for chroma ``c`` = min(2, |q| of the channels already coded
  for the same coefficient); signs are coded in the context of the signs of those channels
  (chroma edges follow luma edges, and Cb and Cr residuals mostly have opposite signs).

Lossless residuals use a zero flag, a sign and the adaptive exp-Golomb code, with contexts from the
channel, the magnitude class and the residuals already coded for the same coefficient (luma, then
Co). :func:`rdo_quantise` is the encoder's rate-distortion quantiser, priced with the live models.
"""

from __future__ import annotations

import numpy as np

from imcodec.entropy.intcode import SINT_BLOCK, UINT_BLOCK, dec_sint, dec_uint, enc_sint, enc_uint
from imcodec.entropy.models import counter_p16, counter_update, new_counters
from imcodec.entropy.rangecoder import dec_bit, dec_bypass, enc_bit, enc_bypass
from imcodec.jit import njit

ENCODE = 0
DECODE = 1
RATE_LIMIT = 255

# ------------------------------------------------------------------ counter layout, lossy mode
N_E = 16  # expected-magnitude classes
_SIG = 0  # (k, c, e)
_GT1 = _SIG + 3 * 3 * N_E  # (k, e)
_GT2 = _GT1 + 3 * N_E
_REM = _GT2 + 3 * N_E  # (k, e // 4) uint blocks
_SIGN = _REM + 3 * 4 * UINT_BLOCK  # sign_context()
_ROOT = _SIGN + 13  # (k) sint blocks
LOSSY_COUNTERS = _ROOT + 3 * SINT_BLOCK
# class e holds E in [2**((e - 11) / 2), 2**((e - 10) / 2)); comparisons only, no log(), so the
# class is the same on every machine
E_THRESHOLDS = np.array([2.0 ** ((i - 10) / 2.0) for i in range(1, N_E)], dtype=np.float64)

# ---------------------------------------------------------------- counter layout, lossless mode
N_EL = 20
_LZERO = 0  # (k, e, c4)
_LMAG = _LZERO + 3 * N_EL * 4  # (k, e // 2, c4) uint blocks
_LSIGN = _LMAG + 3 * (N_EL // 2) * 4 * UINT_BLOCK  # sign_context()
_LROOT = _LSIGN + 13
LOSSLESS_COUNTERS = _LROOT + 3 * SINT_BLOCK
EL_THRESHOLDS = np.array([2.0 ** ((i - 4) / 2.0) for i in range(1, N_EL)], dtype=np.float64)


def _cost_table() -> np.ndarray:
    """Bits to code a 1 with P(1) = (i + 0.5) / 4096: the encoder's rate estimate (not normative)."""
    return np.array([-np.log2((i + 0.5) / 4096.0) for i in range(4096)], dtype=np.float64)


COST1 = _cost_table()


def new_lossy_models() -> np.ndarray:
    """Fresh adaptive counters for :func:`code_coef` and :func:`code_root`."""
    return new_counters(LOSSY_COUNTERS)


def new_lossless_models() -> np.ndarray:
    """Fresh adaptive counters for :func:`code_residual` and :func:`code_root_lossless`."""
    return new_counters(LOSSLESS_COUNTERS)


# -------------------------------------------------------------------------------- primitives


@njit(cache=True)
def code_bit(mode, st, arr, t, i, bit):
    """Code ``bit`` with adaptive counter t[i]; returns the bit (decoded when mode == DECODE)."""
    p = counter_p16(t, i)
    if mode == ENCODE:
        enc_bit(st, arr, bit, p)
    else:
        bit = dec_bit(st, arr, p)
    counter_update(t, i, bit, RATE_LIMIT)
    return bit


@njit(cache=True)
def code_bypass(mode, st, arr, value, nbits):
    """Code ``nbits`` equiprobable bits of ``value``."""
    if mode == ENCODE:
        enc_bypass(st, arr, value, nbits)
        return value
    return dec_bypass(st, arr, nbits)


@njit(cache=True)
def code_uint(mode, st, arr, t, base, value):
    """Adaptive exp-Golomb code of ``value`` >= 0 with the counter block at t[base:]."""
    if mode == ENCODE:
        enc_uint(st, arr, t, base, value)
        return value
    return dec_uint(st, arr, t, base)


@njit(cache=True)
def code_sint(mode, st, arr, t, base, value):
    """Adaptive code of a signed value with the counter block at t[base:]."""
    if mode == ENCODE:
        enc_sint(st, arr, t, base, value)
        return value
    return dec_sint(st, arr, t, base)


@njit(cache=True)
def sign_context(k, v0, v1):
    """Context of the sign of channel k from the values v0 (channel 0), v1 (channel 1) already coded
    for the same coefficient: 0 for luma, 1..3 for channel 1, 4..12 for channel 2."""
    s0 = 0 if v0 == 0 else (1 if v0 > 0 else 2)
    if k == 0:
        return 0
    if k == 1:
        return 1 + s0
    return 4 + 3 * s0 + (0 if v1 == 0 else (1 if v1 > 0 else 2))


@njit(cache=True)
def magnitude_class(x, thresholds):
    """Number of thresholds (ascending float64 array) that are <= x."""
    c = 0
    for i in range(thresholds.shape[0]):
        if x >= thresholds[i]:
            c += 1
        else:
            break
    return c


# ------------------------------------------------------------------------------ lossy mode


@njit(cache=True)
def code_root(mode, st, arr, t, k, q):
    """The quantised DC of the root for channel k."""
    return code_sint(mode, st, arr, t, _ROOT + k * SINT_BLOCK, q)


@njit(cache=True)
def code_coef(mode, st, arr, t, q, k, e, c, sc):
    """One quantised coefficient q of channel k with magnitude class e (0..15), chroma class c (0..2)
    and sign context sc (:func:`sign_context`)."""
    a = q if q >= 0 else -q
    if code_bit(mode, st, arr, t, _SIG + (k * 3 + c) * N_E + e, 1 if a > 0 else 0) == 0:
        return 0
    if code_bit(mode, st, arr, t, _GT1 + k * N_E + e, 1 if a > 1 else 0) == 0:
        mag = 1
    elif code_bit(mode, st, arr, t, _GT2 + k * N_E + e, 1 if a > 2 else 0) == 0:
        mag = 2
    else:
        mag = 3 + code_uint(mode, st, arr, t, _REM + (k * 4 + e // 4) * UINT_BLOCK, a - 3)
    neg = code_bit(mode, st, arr, t, _SIGN + sc, 1 if q < 0 else 0)
    return -mag if neg else mag


# --------------------------------------------------------------------------- lossless mode


@njit(cache=True)
def code_root_lossless(mode, st, arr, t, k, v):
    """The integer root value of channel k."""
    return code_sint(mode, st, arr, t, _LROOT + k * SINT_BLOCK, v)


@njit(cache=True)
def code_residual(mode, st, arr, t, r, k, e, c, sc):
    """One integer residual r of channel k, magnitude class e (0..19), class c (0..3) of the
    residuals already coded for the coefficient, sign context sc (:func:`sign_context`)."""
    if code_bit(mode, st, arr, t, _LZERO + (k * N_EL + e) * 4 + c, 1 if r == 0 else 0) == 1:
        return 0
    neg = code_bit(mode, st, arr, t, _LSIGN + sc, 1 if r < 0 else 0)
    a = r if r >= 0 else -r
    mag = 1 + code_uint(mode, st, arr, t, _LMAG + ((k * (N_EL // 2) + e // 2) * 4 + c) * UINT_BLOCK,
                        a - 1)
    return -mag if neg else mag


@njit(cache=True)
def _bit_cost(t, i, bit):
    p = counter_p16(t, i)
    if bit == 0:
        p = 65536 - p
    return min(RDO_BIN_COST_MAX, COST1[min(4095, p >> 4)])


@njit(cache=True)
def coef_cost(t, m, k, e, c):
    """Estimated bits of :func:`code_coef` for a magnitude m >= 0 under the current models."""
    bits = _bit_cost(t, _SIG + (k * 3 + c) * N_E + e, 1 if m > 0 else 0)
    if m == 0:
        return bits
    bits += 1.0 + _bit_cost(t, _GT1 + k * N_E + e, 1 if m > 1 else 0)
    if m == 1:
        return bits
    bits += _bit_cost(t, _GT2 + k * N_E + e, 1 if m > 2 else 0)
    if m > 2:
        r = m - 2
        nb = 0
        while r > 1:
            r >>= 1
            nb += 1
        bits += 2 * nb + 1
    return bits


RDO_ZERO_MAX = 1.0
RDO_BIN_COST_MAX = 12.0  # caps the estimate so rare bins cannot snowball into a wide dead zone


@njit(cache=True)
def rdo_quantise(x, lam, t, k, e, c):
    """Encoder-only rate-distortion quantisation of x (in steps): the magnitude among 0, floor(|x|)
    and floor(|x|) + 1 minimising (|x| - m)**2 + lam * bits(m), with the models' current bit costs."""
    a = abs(x)
    lo = np.int64(np.floor(a))
    best = np.int64(0)
    best_j = a * a + lam * coef_cost(t, 0, k, e, c)
    if a >= RDO_ZERO_MAX:
        best_j = np.inf
    for m in (lo, lo + 1):
        if m <= 0:
            continue
        j = (a - m) * (a - m) + lam * coef_cost(t, m, k, e, c)
        if j < best_j:
            best_j = j
            best = m
    return -best if x < 0 else best

"""The entropy coder: a binary range coder plus adaptive models, all ``@njit(cache=True)`` kernels.

Numba-level interface (call these from your own ``@njit`` kernels; all state is in plain arrays):

:mod:`imcodec.entropy.rangecoder`
    ``st = new_encoder_state()`` ((8,) int64), ``buf`` a (capacity,) uint8 array you own;
    ``enc_bit(st, buf, bit, p1)`` with p1 = P(bit == 1) * 65536 in 1..65535;
    ``enc_bypass(st, buf, value, nbits)``; ``n = enc_finish(st, buf)`` -> bytes needed: if
    ``n > len(buf)`` the buffer was too small (nothing is written out of bounds): rerun with ``n``.
    ``st = new_decoder_state()``; ``dec_init(st, data)``; ``dec_bit(st, data, p1)``;
    ``dec_bypass(st, data, nbits)``; afterwards ``dec_overrun(st) > 0`` or ``st[D_POS] != len(data)``
    means the input was truncated or damaged.
:mod:`imcodec.entropy.models`
    counters ``t = new_counters(n)`` ((n,) uint32): ``counter_p16(t, i)``,
    ``counter_update(t, i, bit, limit)`` (count-based rate 1/(n+1.5) until ``limit``);
    ``stretch(p16)`` / ``squash(x)``; mixer ``new_mixer``/``mix_predict``/``mix_update``;
    APM ``new_apm``/``apm_predict``/``apm_update``.
:mod:`imcodec.entropy.intcode`
    adaptive exp-Golomb integers: ``enc_uint(st, buf, t, base, v)`` / ``dec_uint(st, data, t, base)``
    with a block of ``UINT_BLOCK`` counters at ``t[base:]``; ``enc_sint`` / ``dec_sint`` with
    ``SINT_BLOCK`` counters (zero flag, sign, magnitude).

Python-level helpers below (:func:`encode_bits`, :func:`decode_bits`) code a bit array under given
probabilities; they exist for tests and simple callers.
"""

from __future__ import annotations

import numpy as np

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
from imcodec.jit import njit

__all__ = ["encode_bits", "decode_bits"]


def encode_bits(bits: np.ndarray, p16: np.ndarray) -> bytes:
    """Range-code ``bits`` ((N,) 0/1) with P(1) = ``p16`` / 65536 ((N,) ints in 1..65535)."""
    bits = np.ascontiguousarray(bits, dtype=np.int64)
    p16 = np.ascontiguousarray(p16, dtype=np.int64)
    if bits.shape != p16.shape or bits.ndim != 1:
        raise ValueError(f"bits {bits.shape} and p16 {p16.shape} must be equal 1-D shapes")
    if len(p16) and (p16.min() < 1 or p16.max() > 65535):
        raise ValueError("probabilities must be in 1..65535")
    buf = np.empty(len(bits) // 4 + 16, dtype=np.uint8)
    while True:
        st = new_encoder_state()
        n = _encode_with(st, bits, p16, buf)
        if n <= len(buf):
            return buf[:n].tobytes()
        buf = np.empty(n, dtype=np.uint8)


@njit(cache=True)
def _encode_with(st, bits, p16, buf):
    for i in range(bits.shape[0]):
        enc_bit(st, buf, bits[i], p16[i])
    return enc_finish(st, buf)


@njit(cache=True)
def _decode_with(st, data, p16, out):
    dec_init(st, data)
    for i in range(p16.shape[0]):
        out[i] = dec_bit(st, data, p16[i])


def decode_bits(data: bytes, p16: np.ndarray) -> np.ndarray:
    """Decode ``len(p16)`` bits coded by :func:`encode_bits`; BitstreamError if ``data`` is damaged."""
    p16 = np.ascontiguousarray(p16, dtype=np.int64)
    arr = np.frombuffer(data, dtype=np.uint8)
    out = np.zeros(len(p16), dtype=np.uint8)
    st = new_decoder_state()
    _decode_with(st, arr, p16, out)
    if dec_overrun(st) > 0 or st[D_POS] != len(arr):
        raise BitstreamError(f"range-coded data of {len(arr)} bytes is truncated or damaged "
                             f"(decoder consumed {int(st[D_POS])})")
    return out

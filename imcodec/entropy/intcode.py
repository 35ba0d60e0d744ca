"""Adaptive coding of integers with the binary range coder: exp-Golomb binarisation whose every
bin has its own adaptive counter.

A *context block* is ``UINT_BLOCK`` consecutive counters of a counter array (see
:mod:`imcodec.entropy.models`); callers choose the block (``base`` = block index * UINT_BLOCK) from
their own context, so different kinds of values adapt separately.

Unsigned value v >= 0: k = bit_length(v + 1) - 1 is sent in unary (k ones then a zero, bin i uses
counter ``base + i``), then the k bits below the leading one of v + 1, MSB first: the top 4 of them are adaptive
(bit j of an order-k code uses counter ``base + 32 + 4 * k + j``), lower ones are bypass-coded
(they are near-uniform).
Signed values: a zero flag, a sign bin, then |v| - 1 as unsigned (``SINT_BLOCK`` counters).
Values are limited to |v| < 2**31.
"""

from __future__ import annotations


from imcodec.entropy.models import counter_p16, counter_update
from imcodec.entropy.rangecoder import dec_bit, dec_bypass, enc_bit, enc_bypass
from imcodec.jit import njit

MAX_EXP = 31
_ADAPTIVE_MANTISSA = 4  # top mantissa bits with their own counters
UINT_BLOCK = 32 + 32 * _ADAPTIVE_MANTISSA
SINT_BLOCK = 2 + UINT_BLOCK
RATE_LIMIT = 255


@njit(cache=True)
def enc_uint(st, buf, t, base, value):
    """Code ``value`` (0 <= value < 2**31) with counter block ``t[base:base + UINT_BLOCK]``."""
    v1 = value + 1
    k = 0
    while (v1 >> (k + 1)) != 0:
        k += 1
    for i in range(k):
        enc_bit(st, buf, 1, counter_p16(t, base + i))
        counter_update(t, base + i, 1, RATE_LIMIT)
    if k < MAX_EXP:
        enc_bit(st, buf, 0, counter_p16(t, base + k))
        counter_update(t, base + k, 0, RATE_LIMIT)
    mbase = base + 32 + _ADAPTIVE_MANTISSA * k
    for j in range(k):
        b = (v1 >> (k - 1 - j)) & 1
        if j < _ADAPTIVE_MANTISSA:
            enc_bit(st, buf, b, counter_p16(t, mbase + j))
            counter_update(t, mbase + j, b, RATE_LIMIT)
        else:
            enc_bypass(st, buf, v1, k - j)
            break


@njit(cache=True)
def dec_uint(st, data, t, base):
    """Decode a value coded by :func:`enc_uint`; any input gives a value in 0 .. 2**32 - 2."""
    k = 0
    while k < MAX_EXP:
        b = dec_bit(st, data, counter_p16(t, base + k))
        counter_update(t, base + k, b, RATE_LIMIT)
        if b == 0:
            break
        k += 1
    mbase = base + 32 + _ADAPTIVE_MANTISSA * k
    v1 = 1
    j = 0
    while j < k:
        if j < _ADAPTIVE_MANTISSA:
            b = dec_bit(st, data, counter_p16(t, mbase + j))
            counter_update(t, mbase + j, b, RATE_LIMIT)
            v1 = (v1 << 1) | b
            j += 1
        else:
            rest = k - j
            v1 = (v1 << rest) | dec_bypass(st, data, rest)
            j = k
    return v1 - 1


@njit(cache=True)
def enc_sint(st, buf, t, base, value):
    """Code a signed ``value`` (|value| < 2**31) with block ``t[base:base + SINT_BLOCK]``."""
    if value == 0:
        enc_bit(st, buf, 1, counter_p16(t, base))
        counter_update(t, base, 1, RATE_LIMIT)
        return
    enc_bit(st, buf, 0, counter_p16(t, base))
    counter_update(t, base, 0, RATE_LIMIT)
    neg = 1 if value < 0 else 0
    enc_bit(st, buf, neg, counter_p16(t, base + 1))
    counter_update(t, base + 1, neg, RATE_LIMIT)
    mag = -value if neg else value
    enc_uint(st, buf, t, base + 2, mag - 1)


@njit(cache=True)
def dec_sint(st, data, t, base):
    """Decode a value coded by :func:`enc_sint`."""
    z = dec_bit(st, data, counter_p16(t, base))
    counter_update(t, base, z, RATE_LIMIT)
    if z:
        return 0
    neg = dec_bit(st, data, counter_p16(t, base + 1))
    counter_update(t, base + 1, neg, RATE_LIMIT)
    mag = dec_uint(st, data, t, base + 2) + 1
    return -mag if neg else mag

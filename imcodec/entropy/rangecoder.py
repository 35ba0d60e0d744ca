"""Binary range coder (LZMA-style, 32-bit range, carry propagation) as Numba kernels.

The coder state lives in a small ``int64`` array so that any ``@njit`` kernel can carry it around;
output goes to a caller-owned ``uint8`` buffer. Probabilities are ``p1`` = P(bit == 1) in 16-bit
fixed point, 1..65535 (callers clamp; :func:`clamp_p16` helps).

Encoder::

    st = new_encoder_state()            # (ENC_STATE_SIZE,) int64
    buf = np.empty(capacity, np.uint8)
    enc_bit(st, buf, bit, p1)           # any number of times (inside @njit code)
    n = enc_finish(st, buf)             # bytes needed; if n > len(buf) nothing was lost but
                                        # the buffer overflowed: rerun with a buffer of n bytes

Decoder::

    st = new_decoder_state()
    dec_init(st, data)                  # data: (M,) uint8
    bit = dec_bit(st, data, p1)
    dec_overrun(st)                     # > 0 when the decoder read past the end (truncated input)

Writes past the end of ``buf`` are dropped and counted (``st[E_POS]`` keeps growing), reads past
the end of ``data`` return zero bytes and are counted; kernels never index out of bounds. A valid
stream is read exactly to its end (the encoder flushes 4 bytes), so ``dec_overrun(st) > 0`` or
``st[D_POS] != len(data)`` after decoding means a damaged stream.
"""

from __future__ import annotations

import numpy as np

from imcodec.jit import njit

# encoder state slots
E_LOW, E_RANGE, E_CACHE, E_CACHE_SIZE, E_POS, E_STARTED = 0, 1, 2, 3, 4, 5
ENC_STATE_SIZE = 8
# decoder state slots
D_CODE, D_RANGE, D_POS, D_OVERRUN = 0, 1, 2, 3
DEC_STATE_SIZE = 4

_TOP = 1 << 24
_MASK32 = (1 << 32) - 1


def new_encoder_state() -> np.ndarray:
    """A fresh encoder state: (ENC_STATE_SIZE,) int64."""
    st = np.zeros(ENC_STATE_SIZE, dtype=np.int64)
    enc_init(st)
    return st


def new_decoder_state() -> np.ndarray:
    """An uninitialised decoder state: (DEC_STATE_SIZE,) int64; call :func:`dec_init`."""
    return np.zeros(DEC_STATE_SIZE, dtype=np.int64)


@njit(cache=True)
def enc_init(st):
    """Reset encoder state ``st`` ((ENC_STATE_SIZE,) int64)."""
    st[E_LOW] = 0
    st[E_RANGE] = _MASK32
    st[E_CACHE] = 0
    st[E_CACHE_SIZE] = 1
    st[E_POS] = 0
    st[E_STARTED] = 0


@njit(cache=True)
def _put(st, buf, byte):
    pos = st[E_POS]
    if st[E_STARTED] == 0:
        # the very first byte of an LZMA-style coder is always 0: it is not stored
        st[E_STARTED] = 1
        return
    if pos < buf.shape[0]:
        buf[pos] = byte
    st[E_POS] = pos + 1


@njit(cache=True)
def _shift_low(st, buf):
    low = st[E_LOW]
    if low < 0xFF000000 or low > _MASK32:
        carry = low >> 32
        temp = st[E_CACHE]
        while True:
            _put(st, buf, (temp + carry) & 0xFF)
            temp = 0xFF
            st[E_CACHE_SIZE] -= 1
            if st[E_CACHE_SIZE] == 0:
                break
        st[E_CACHE] = (low >> 24) & 0xFF
    st[E_CACHE_SIZE] += 1
    st[E_LOW] = (low & 0x00FFFFFF) << 8


@njit(cache=True, inline="always")
def enc_bit(st, buf, bit, p1):
    """Code ``bit`` (0/1) with P(1) = p1 / 65536, p1 in 1..65535."""
    rng = st[E_RANGE]
    bound = (rng * p1) >> 16
    if bit:
        st[E_RANGE] = bound
    else:
        st[E_LOW] += bound
        st[E_RANGE] = rng - bound
    while st[E_RANGE] < _TOP:
        st[E_RANGE] = st[E_RANGE] << 8
        _shift_low(st, buf)


@njit(cache=True)
def enc_bypass(st, buf, value, nbits):
    """Code the low ``nbits`` (0..32) of ``value`` MSB first, each with probability 1/2."""
    for i in range(nbits - 1, -1, -1):
        b = (value >> i) & 1
        rng = st[E_RANGE] >> 1
        st[E_RANGE] = rng
        if b == 0:
            st[E_LOW] += rng
        while st[E_RANGE] < _TOP:
            st[E_RANGE] = st[E_RANGE] << 8
            _shift_low(st, buf)


@njit(cache=True)
def enc_finish(st, buf):
    """Flush the encoder; returns the number of bytes the stream needs (may exceed len(buf))."""
    for _ in range(5):
        _shift_low(st, buf)
    return st[E_POS]


@njit(cache=True)
def _get(st, data):
    pos = st[D_POS]
    st[D_POS] = pos + 1
    if pos < data.shape[0]:
        return np.int64(data[pos])
    st[D_OVERRUN] += 1
    return np.int64(0)


@njit(cache=True)
def dec_init(st, data):
    """Start decoding ``data`` ((M,) uint8) with state ``st`` ((DEC_STATE_SIZE,) int64)."""
    st[D_POS] = 0
    st[D_OVERRUN] = 0
    st[D_RANGE] = _MASK32
    code = np.int64(0)
    for _ in range(4):
        code = (code << 8) | _get(st, data)
    st[D_CODE] = code


@njit(cache=True, inline="always")
def dec_bit(st, data, p1):
    """Decode one bit coded with P(1) = p1 / 65536."""
    rng = st[D_RANGE]
    code = st[D_CODE]
    bound = (rng * p1) >> 16
    if code < bound:
        rng = bound
        bit = 1
    else:
        code -= bound
        rng -= bound
        bit = 0
    while rng < _TOP:
        rng <<= 8
        code = ((code << 8) | _get(st, data)) & _MASK32
    st[D_RANGE] = rng
    st[D_CODE] = code
    return bit


@njit(cache=True)
def dec_bypass(st, data, nbits):
    """Decode ``nbits`` equiprobable bits (MSB first) as an integer."""
    value = np.int64(0)
    for _ in range(nbits):
        rng = st[D_RANGE] >> 1
        code = st[D_CODE]
        if code < rng:
            b = 1
        else:
            code -= rng
            b = 0
        value = (value << 1) | b
        while rng < _TOP:
            rng <<= 8
            code = ((code << 8) | _get(st, data)) & _MASK32
        st[D_RANGE] = rng
        st[D_CODE] = code
    return value


@njit(cache=True)
def dec_overrun(st):
    """Number of bytes the decoder read past the end of its input."""
    return st[D_OVERRUN]


@njit(cache=True)
def clamp_p16(p):
    """Clamp a 16-bit probability into the coder's valid range 1..65535."""
    if p < 1:
        return 1
    if p > 65535:
        return 65535
    return p

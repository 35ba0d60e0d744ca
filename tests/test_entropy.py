"""The range coder and adaptive models: exact round trips, sizes near the entropy, damage detection."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from imcodec.entropy import decode_bits, encode_bits
from imcodec.entropy.intcode import SINT_BLOCK, UINT_BLOCK, dec_sint, dec_uint, enc_sint, enc_uint
from imcodec.entropy.models import (
    apm_predict,
    apm_update,
    counter_p16,
    counter_update,
    mix_predict,
    mix_update,
    new_apm,
    new_counters,
    squash,
    stretch,
)
from imcodec.entropy.rangecoder import (
    D_POS,
    dec_bypass,
    dec_init,
    dec_overrun,
    enc_bypass,
    enc_finish,
    new_decoder_state,
    new_encoder_state,
)
from imcodec.errors import BitstreamError
from imcodec.jit import use_jit


@pytest.fixture(autouse=True, scope="module")
def _numba():
    """The test kernels below are numba.njit functions calling imcodec kernels: switch to Numba (for the
    rest of the session, which is why conftest.py runs this module last)."""
    use_jit()


def _entropy_bytes(bits: np.ndarray, p16: np.ndarray) -> float:
    p = p16 / 65536.0
    cost = np.where(bits == 1, -np.log2(p), -np.log2(1 - p))
    return float(cost.sum() / 8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bits_round_trip_near_entropy(seed):
    rng = np.random.default_rng(seed)
    n = 20000
    p16 = rng.integers(1, 65536, n)
    bits = (rng.random(n) < p16 / 65536.0).astype(np.int64)
    data = encode_bits(bits, p16)
    assert np.array_equal(decode_bits(data, p16), bits)
    ideal = _entropy_bytes(bits, p16)
    assert ideal - 1 <= len(data) <= ideal * 1.01 + 8


def test_extreme_probabilities_and_empty():
    bits = np.array([1, 0, 1, 0, 0, 1] * 50)
    for p in (1, 65535):
        p16 = np.full(len(bits), p)
        assert np.array_equal(decode_bits(encode_bits(bits, p16), p16), bits)
    assert decode_bits(encode_bits(np.zeros(0), np.zeros(0)), np.zeros(0)).shape == (0,)


def test_truncated_or_extended_stream_is_detected():
    rng = np.random.default_rng(5)
    p16 = np.full(4000, 32768)
    bits = rng.integers(0, 2, 4000)
    data = encode_bits(bits, p16)
    for cut in (1, 2, 7, len(data) // 2):
        with pytest.raises(BitstreamError, match="truncated or damaged"):
            decode_bits(data[:-cut], p16)
    with pytest.raises(BitstreamError):
        decode_bits(data + b"\x00", p16)


@njit(cache=True)
def _code_ints(values, signed, block, buf):
    st = np.zeros(8, dtype=np.int64)
    st[1] = (1 << 32) - 1
    st[3] = 1
    t = np.full(block, np.uint32((1 << 21) << 10))
    for v in values:
        if signed:
            enc_sint(st, buf, t, 0, v)
        else:
            enc_uint(st, buf, t, 0, v)
    return enc_finish(st, buf)


@njit(cache=True)
def _decode_ints(data, n, signed, block):
    st = np.zeros(4, dtype=np.int64)
    dec_init(st, data)
    t = np.full(block, np.uint32((1 << 21) << 10))
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = dec_sint(st, data, t, 0) if signed else dec_uint(st, data, t, 0)
    return out, dec_overrun(st), st[D_POS]


@pytest.mark.parametrize("signed", [False, True])
def test_integers_round_trip(signed):
    rng = np.random.default_rng(11)
    vals = np.concatenate([rng.geometric(0.05, 3000) - 1, [0, 1, 2, 2**31 - 1, 2**20, 15, 16, 17]])
    if signed:
        vals = np.concatenate([vals * rng.choice([-1, 1], len(vals)), [-(2**31 - 1)]])
    vals = vals.astype(np.int64)
    block = SINT_BLOCK if signed else UINT_BLOCK
    buf = np.empty(len(vals) * 8 + 64, dtype=np.uint8)
    n = _code_ints(vals, signed, block, buf)
    out, overrun, pos = _decode_ints(buf[:n].copy(), len(vals), signed, block)
    assert overrun == 0 and pos == n
    assert np.array_equal(out, vals)


def test_integers_adapt_to_a_constant():
    vals = np.full(10000, 13, dtype=np.int64)  # order 3: every bin adaptive
    buf = np.empty(100000, dtype=np.uint8)
    n = _code_ints(vals, False, UINT_BLOCK, buf)
    assert n < 10000 * 0.05  # 7 bins per value, each learnt: far below a bit per value
    n = _code_ints(np.full(10000, 37, dtype=np.int64), False, UINT_BLOCK, buf)
    assert 10000 / 8 <= n < 10000 / 8 * 1.1  # order 5: one bypass bit per value remains


@njit(cache=True)
def _bypass(values, nbits):
    st = np.zeros(8, dtype=np.int64)
    st[1] = (1 << 32) - 1
    st[3] = 1
    buf = np.empty(values.shape[0] * 4 + 16, dtype=np.uint8)
    for v in values:
        enc_bypass(st, buf, v, nbits)
    n = enc_finish(st, buf)
    data = buf[:n].copy()
    ds = np.zeros(4, dtype=np.int64)
    dec_init(ds, data)
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        out[i] = dec_bypass(ds, data, nbits)
    return out, n


def test_bypass_round_trip_costs_nbits():
    vals = np.random.default_rng(3).integers(0, 2**13, 1000).astype(np.int64)
    out, n = _bypass(vals, 13)
    assert np.array_equal(out, vals)
    assert 1000 * 13 / 8 <= n <= 1000 * 13 / 8 + 6


def test_state_helpers_start_clean():
    st = new_encoder_state()
    assert st[1] == 2**32 - 1 and st[3] == 1
    assert new_decoder_state().shape == (4,)


@njit(cache=True)
def _learn_counter(bits, limit):
    t = np.full(1, np.uint32((1 << 21) << 10))
    for b in bits:
        counter_update(t, 0, b, limit)
    return counter_p16(t, 0)


def test_counter_converges_to_frequency():
    rng = np.random.default_rng(2)
    bits = (rng.random(20000) < 0.2).astype(np.int64)
    p = _learn_counter(bits, 1023) / 65536
    assert abs(p - 0.2) < 0.03
    assert _learn_counter(np.ones(1, np.int64), 255) / 65536 > 0.8  # first update moves 2/3 of the way
    assert new_counters(3).shape == (3,)


def test_stretch_squash_are_inverse():
    for p in (0.01, 0.2, 0.5, 0.8, 0.99):
        p16 = int(p * 65536)
        x = stretch(p16)
        assert abs(x / 256 - math.log(p / (1 - p))) < 0.02
        assert abs(squash(x) / 65536 - p) < 0.01 * max(p, 1 - p) + 1e-3
    assert squash(5000) <= 65535 and squash(-5000) >= 1


@njit(cache=True)
def _mix_cost(bits, good, bad, lr):
    w = np.full((1, 2), np.int32(0.3 * 65536))
    x = np.zeros(2, dtype=np.int32)
    cost = 0.0
    for i in range(bits.shape[0]):
        x[0] = stretch(good[i])
        x[1] = stretch(bad[i])
        p = mix_predict(w, 0, x, 2)
        cost += -np.log2(p / 65536.0) if bits[i] else -np.log2(1 - p / 65536.0)
        mix_update(w, 0, x, 2, p, bits[i], lr)
    return cost / bits.shape[0], w[0, 0], w[0, 1]


def test_mixer_trusts_the_informative_input():
    rng = np.random.default_rng(4)
    n = 20000
    bits = rng.integers(0, 2, n)
    good = np.where(bits == 1, 60000, 5536).astype(np.int64)  # right 92% confident
    bad = rng.integers(1000, 64000, n).astype(np.int64)  # noise
    cost, w_good, w_bad = _mix_cost(bits, good, bad, 24)
    assert cost < 0.2  # better than the good input alone (0.12 bits) plus a little learning
    assert w_good > abs(w_bad) * 3


def test_apm_starts_at_identity_and_corrects_a_biased_input():
    a = new_apm(2)
    slot = np.zeros(2, dtype=np.int64)
    for p in (3000, 32768, 60000):
        assert abs(apm_predict(a, 1, p, slot, 0) - p) < 0.03 * 65536
    rng = np.random.default_rng(9)
    bits = (rng.random(5000) < 0.9).astype(np.int64)  # truth 0.9, input claims 0.5
    slot = np.zeros(2, dtype=np.int64)
    for b in bits:
        apm_predict(a, 0, 32768, slot, 0)
        apm_update(a, slot, 0, b, 5)
    assert abs(apm_predict(a, 0, 32768, slot, 0) / 65536 - 0.9) < 0.05

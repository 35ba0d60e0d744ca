"""RAHT colour coding: the transform against a slow reference, lossless and lossy round trips,
rate-distortion behaviour and damaged payloads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imcodec.errors import BitstreamError, InputError, UsageError
from imcodec.octree.attributes import (
    decode_colors,
    encode_colors,
    encode_colors_and_reconstruct,
    qp_to_step,
    raht_forward,
    raht_inverse,
)
from imcodec.octree.raht import (
    block_forward_int,
    block_inverse_int,
    block_layout,
    rgb_to_ycbcr,
    rgb_to_ycocg,
    ycbcr_to_rgb_u8,
    ycocg_to_rgb,
)
from tests.conftest import make_surface


def reference_raht(pos: np.ndarray, vals: np.ndarray):
    """Classic RAHT (Queiroz & Chou 2016), written independently and slowly: at each octree level,
    merge the cells that differ only in the lowest z bit, then y, then x, with weights = point
    counts. Cells hold x = sqrt(w)·mean; a pair (x1 at the even, x2 at the odd coordinate) gives
    L = a·x1 + b·x2 and H = -b·x1 + a·x2 with a = sqrt(w1 / (w1 + w2)), b = sqrt(w2 / (w1 + w2)).
    Unique positions only. Returns (dc (3,), list of H (3,) arrays)."""
    cells = {tuple(int(c) for c in p): (1.0, np.array(v, dtype=float)) for p, v in zip(pos, vals)}
    highs = []
    depth = int(pos.max()).bit_length()
    for _ in range(depth):
        for axis in (2, 1, 0):
            groups: dict[tuple, list] = {}
            for key, (w, x) in cells.items():
                up = list(key)
                up[axis] >>= 1
                groups.setdefault(tuple(up), []).append((key[axis] & 1, w, x))
            cells = {}
            for up, items in groups.items():
                if len(items) == 1:
                    cells[up] = items[0][1:]
                    continue
                (_, w1, x1), (_, w2, x2) = sorted(items, key=lambda t: t[0])
                a, b = math.sqrt(w1 / (w1 + w2)), math.sqrt(w2 / (w1 + w2))
                highs.append(-b * x1 + a * x2)
                cells[up] = (w1 + w2, a * x1 + b * x2)
    ((_, dc),) = cells.values()
    return dc, highs


def _cloud(n=400, bits=6, seed=0, dups=0):
    rng = np.random.default_rng(seed)
    pos = np.unique(rng.integers(0, 1 << bits, (n, 3)), axis=0)
    if dups:
        pos = np.concatenate([pos, pos[rng.integers(0, len(pos), dups)]])
        pos = pos[rng.permutation(len(pos))]
    col = rng.integers(0, 256, (len(pos), 3)).astype(np.uint8)
    return pos, col


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((rgb_to_ycbcr(a) - rgb_to_ycbcr(b)) ** 2).mean(axis=0)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12))


# ----------------------------------------------------------------------------------- transform


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transform_matches_reference(seed):
    pos, _ = _cloud(n=150, bits=5, seed=seed)
    vals = np.random.default_rng(seed).normal(100, 30, (len(pos), 3))
    dc, coefs, gains = raht_forward(pos, vals)
    rdc, rhighs = reference_raht(pos, vals)
    np.testing.assert_allclose(dc, rdc, rtol=1e-12)
    assert len(rhighs) == len(coefs) == len(pos) - 1
    ours = coefs[np.lexsort(coefs.T[::-1])]
    ref = np.array(rhighs)
    ref = ref[np.lexsort(ref.T[::-1])]
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    assert np.all(gains > 0)


@pytest.mark.parametrize("dups", [0, 60])
def test_transform_inverse_energy_and_dc(dups):
    pos, _ = _cloud(n=300, bits=6, seed=3, dups=dups)
    vals = np.random.default_rng(4).uniform(0, 255, (len(pos), 3))
    dc, coefs, _ = raht_forward(pos, vals)
    np.testing.assert_allclose(raht_inverse(pos, dc, coefs), vals, atol=1e-9)
    np.testing.assert_allclose(dc, math.sqrt(len(pos)) * vals.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose((vals ** 2).sum(axis=0), dc ** 2 + (coefs ** 2).sum(axis=0), rtol=1e-12)
    # a constant signal has no high-pass energy
    _, c0, _ = raht_forward(pos, np.full_like(vals, 77.0))
    assert np.abs(c0).max() < 1e-9


def test_integer_lifting_block_is_exact():
    rng = np.random.default_rng(5)
    ev = [np.zeros(7, dtype=np.int64) for _ in range(5)]
    for _ in range(300):
        w8 = rng.integers(0, 4, 8) * rng.integers(0, 2, 8) * rng.integers(1, 50, 8)
        if not w8.any():
            continue
        v8 = rng.integers(-255, 256, (8, 3)).astype(np.int64)
        ne = block_layout(w8.astype(np.int64), *ev)
        d = np.zeros((7, 3), dtype=np.int64)
        work = v8.copy()
        block_forward_int(work, ne, *ev, d)
        lo = work[0].copy()
        back = np.zeros_like(v8)
        back[0] = lo
        block_inverse_int(back, ne, *ev, d)
        occ = w8 > 0
        np.testing.assert_array_equal(back[occ], v8[occ])
        assert np.all(lo >= v8[occ].min(axis=0)) and np.all(lo <= v8[occ].max(axis=0))


def test_colour_transforms():
    rgb = np.random.default_rng(6).integers(0, 256, (5000, 3)).astype(np.uint8)
    np.testing.assert_array_equal(ycbcr_to_rgb_u8(rgb_to_ycbcr(rgb)), rgb)
    np.testing.assert_array_equal(ycocg_to_rgb(rgb_to_ycocg(rgb)), rgb.astype(np.int64))
    grey = np.full((1, 3), 200, dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_ycbcr(grey)[0], [200.0, 128.0, 128.0], atol=1e-9)


def test_qp_to_step():
    assert qp_to_step(4) == 1.0
    assert qp_to_step(10) == 2.0
    assert qp_to_step(22) == 8.0
    for qp in range(4, 46):
        assert qp_to_step(qp + 6) == pytest.approx(2 * qp_to_step(qp), rel=1e-12)


# ------------------------------------------------------------------------------------- codecs


@pytest.mark.parametrize("dups", [0, 80])
def test_lossless_is_exact(dups):
    pos, col = _cloud(n=500, bits=6, seed=7, dups=dups)
    data = encode_colors(pos, col, 22, True)
    np.testing.assert_array_equal(decode_colors(pos, data), col)
    assert encode_colors(pos, col, 22, True) == data  # deterministic


def test_lossless_smooth_surface_is_compact():
    cloud = make_surface(n=3000, bits=8, seed=1, color=True)
    pos, col = cloud.points.astype(np.int64), cloud.colors
    data = encode_colors(pos, col, 22, True)
    np.testing.assert_array_equal(decode_colors(pos, data), col)
    raw = np.random.default_rng(2).integers(0, 256, col.shape).astype(np.uint8)
    assert len(data) < 0.6 * len(encode_colors(pos, raw, 22, True))  # smooth colour codes smaller


@pytest.mark.parametrize("dups", [0, 80])
def test_lossy_decoder_equals_encoder(dups):
    pos, col = _cloud(n=600, bits=6, seed=8, dups=dups)
    for qp in (4, 22, 40):
        data, rec = encode_colors_and_reconstruct(pos, col, qp, False, chroma_qp_offset=2)
        np.testing.assert_array_equal(decode_colors(pos, data), rec)
        assert encode_colors(pos, col, qp, False, chroma_qp_offset=2) == data  # deterministic


def test_duplicates_keep_their_own_colours():
    pos = np.array([[3, 3, 3]] * 4 + [[0, 0, 0], [7, 7, 7]], dtype=np.int64)
    col = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30], [0, 0, 0], [200, 200, 200]],
                   dtype=np.uint8)
    np.testing.assert_array_equal(decode_colors(pos, encode_colors(pos, col, 22, True)), col)
    rec = decode_colors(pos, encode_colors(pos, col, 4, False))
    assert np.abs(rec.astype(int) - col).max() <= 2


def test_psnr_rises_as_qp_falls():
    cloud = make_surface(n=4000, bits=8, seed=2, color=True)
    pos, col = cloud.points.astype(np.int64), cloud.colors
    sizes, psnrs = [], []
    for qp in (46, 40, 34, 28, 22, 16, 10):
        data = encode_colors(pos, col, qp, False)
        psnrs.append(_psnr(col, decode_colors(pos, data))[0])
        sizes.append(len(data))
    assert all(b > a for a, b in zip(psnrs, psnrs[1:])), psnrs
    assert all(b > a for a, b in zip(sizes, sizes[1:])), sizes
    assert psnrs[-1] > 45.0


def test_small_and_unsorted_inputs():
    empty = np.zeros((0, 3), dtype=np.int64)
    for lossless in (False, True):
        data = encode_colors(empty, np.zeros((0, 3), np.uint8), 30, lossless)
        assert decode_colors(empty, data).shape == (0, 3)
        one = np.array([[5, 9, 2]])
        c1 = np.array([[12, 200, 77]], dtype=np.uint8)
        out = decode_colors(one, encode_colors(one, c1, 4, lossless))
        assert np.abs(out.astype(int) - c1).max() <= (0 if lossless else 1)
    pos, col = _cloud(n=300, bits=5, seed=9)
    perm = np.random.default_rng(0).permutation(len(pos))
    data = encode_colors(pos[perm], col[perm], 22, True)
    np.testing.assert_array_equal(decode_colors(pos[perm], data), col[perm])


# -------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("qp", [3, 52, -1, 22.5, "22", True])
def test_bad_qp(qp):
    pos, col = _cloud(n=20, bits=4)
    with pytest.raises(UsageError, match=repr(qp).replace(".", r"\.")):
        encode_colors(pos, col, qp, False)


def test_bad_inputs():
    pos, col = _cloud(n=20, bits=4)
    with pytest.raises(InputError, match="uint8"):
        encode_colors(pos, col.astype(np.int32), 22, False)
    with pytest.raises(InputError, match="like the positions"):
        encode_colors(pos, col[:-1], 22, False)
    with pytest.raises(InputError, match="-1"):
        encode_colors(np.vstack([pos, [[-1, 0, 0]]]), np.vstack([col, col[:1]]), 22, False)
    with pytest.raises(UsageError, match="chroma"):
        encode_colors(pos, col, 22, False, chroma_qp_offset=40)


@pytest.mark.parametrize("lossless", [False, True])
def test_damaged_payloads(lossless):
    pos, col = _cloud(n=400, bits=6, seed=10, dups=20)
    data = encode_colors(pos, col, 28, lossless)
    for cut in sorted({0, 3, 8, 9, len(data) // 2, len(data) - 1}):
        with pytest.raises(BitstreamError):
            decode_colors(pos, data[:cut])
    with pytest.raises(BitstreamError, match="version"):
        decode_colors(pos, bytes([9]) + data[1:])
    with pytest.raises(BitstreamError, match="points"):
        decode_colors(pos[:-1], data)
    with pytest.raises(BitstreamError):
        decode_colors(pos, data + b"\x00")
    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(60):  # a flipped bit either is detected or decodes to some colours: no crash
        buf = bytearray(data)
        pos_bit = int(rng.integers(8 * 8, 8 * len(buf)))
        buf[pos_bit // 8] ^= 1 << (pos_bit % 8)
        try:
            out = decode_colors(pos, bytes(buf))
        except BitstreamError:
            flagged += 1
            continue
        assert out.shape == col.shape and out.dtype == np.uint8
    assert flagged > 0

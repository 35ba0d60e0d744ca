"""V-PCC metadata and raw-point coding: exact round trips, damaged data raises BitstreamError."""

from __future__ import annotations

import numpy as np
import pytest

from imcodec.errors import BitstreamError
from imcodec.vpcc.config import StreamParams, VpccConfig
from imcodec.vpcc.metadata import FrameMeta, decode_meta, decode_raw, encode_meta, encode_raw, sort_raw


def _meta(rng, n=60, bits=10):
    bw = rng.integers(1, 6, size=n)
    bh = rng.integers(1, 6, size=n)
    orient = rng.integers(0, 2, size=n)
    wo = np.where(orient & 1, bh, bw)
    ho = np.where(orient & 1, bw, bh)
    width, height = 1280, 16 * 64
    bu = rng.integers(0, width // 16 - wo + 1)
    bv = np.sort(rng.integers(0, height // 16 - ho.max() + 1, size=n))
    return FrameMeta(np.array([-5, 0, 1234]), bits, width, height, rng.integers(0, 6, size=n), orient, bu, bv,
                     bw, bh, rng.integers(0, 1 << bits, size=n), rng.integers(0, 1 << bits, size=n),
                     rng.integers(0, 1 << bits, size=n))


def test_meta_round_trip():
    rng = np.random.default_rng(0)
    meta = _meta(rng)
    data = encode_meta(meta, 1)
    got = decode_meta(data, 1)
    for name in ("origin", "plane", "orient", "bu", "bv", "bw", "bh", "u1", "v1", "dpos"):
        assert np.array_equal(getattr(got, name), getattr(meta, name)), name
    assert (got.coord_bits, got.width, got.height) == (meta.coord_bits, meta.width, meta.height)
    # compact: well under the 16 bytes per patch of a plain binary layout
    assert len(data) < 10 * meta.count


def test_meta_without_patches_round_trips():
    z = np.zeros(0, dtype=np.int64)
    meta = FrameMeta(np.array([1, 2, 3]), 1, 1280, 0, z, z, z, z, z, z, z, z, z)
    got = decode_meta(encode_meta(meta, 1), 1)
    assert got.count == 0 and got.origin.tolist() == [1, 2, 3]


def test_damaged_meta_raises():
    meta = _meta(np.random.default_rng(1))
    data = encode_meta(meta, 1)
    with pytest.raises(BitstreamError):
        decode_meta(data[: len(data) // 2], 1)
    with pytest.raises(BitstreamError):
        decode_meta(b"", 1)


def test_raw_points_round_trip():
    rng = np.random.default_rng(2)
    raw = sort_raw(np.unique(rng.integers(0, 1024, size=(500, 3)), axis=0))
    raw = np.concatenate([raw, [[1023, 1023, 1023]]]) if not (raw[-1] == 1023).all() else raw
    raw = sort_raw(np.unique(raw, axis=0))
    data = encode_raw(raw)
    assert np.array_equal(decode_raw(data), raw)
    assert np.array_equal(decode_raw(encode_raw(np.zeros((0, 3), np.int64))), np.zeros((0, 3)))
    with pytest.raises(BitstreamError, match="raw"):
        decode_raw(data[:-3])


def test_stream_params_round_trip_and_damage():
    for cfg in (VpccConfig(), VpccConfig(lossless=True, orientations=8, geometry_layers=1)):
        sp = StreamParams.from_config(cfg)
        assert StreamParams.unpack(sp.pack()) == sp
    with pytest.raises(BitstreamError, match="parameters"):
        StreamParams.unpack(b"\x01\x00")
    bad = bytearray(StreamParams.from_config(VpccConfig()).pack())
    bad[3] = 3  # occupancy precision 3 does not exist
    with pytest.raises(BitstreamError, match="damaged"):
        StreamParams.unpack(bytes(bad))

"""V-PCC codec end to end: lossless exactness, decoder == encoder, damaged sub-streams, options, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imcodec.codecs import get_codec
from imcodec.errors import BitstreamError, InputError, ToolError, UsageError
from imcodec.synth import make_cloud
from imcodec.types import PointCloud
from imcodec.vpcc.config import CTC_RATES, StreamParams, VpccConfig
from imcodec.vpcc.encoder import COMPONENTS, SOURCE_COMPONENT, source_points

FAST = dict(threads=1, preset="fast")


@pytest.fixture(scope="module")
def body():
    return make_cloud("body", bits=7, color=True, seed=2)


@pytest.fixture(scope="module")
def lossy_code(body):
    codec = get_codec("vpcc")
    cfg = VpccConfig(geometry_qp=24, attribute_qp=32, **FAST)
    return codec, cfg, codec.encode_frame(body, cfg, {})


def _decode(codec, cfg, components):
    return codec.decode_frame(components, codec.stream_params(cfg), {})


def _keys(points):
    p = np.asarray(points, dtype=np.int64)
    return np.sort((p[:, 0] << 42) | (p[:, 1] << 21) | p[:, 2])


def test_codec_is_registered_with_id_2():
    codec = get_codec("vpcc")
    assert codec.name == "vpcc" and codec.codec_id == 2


@pytest.mark.parametrize("video", ["hevc_lossless", "ffv1"])
def test_lossless_reconstructs_the_exact_point_set(body, video):
    codec = get_codec("vpcc")
    cfg = VpccConfig(lossless=True, lossless_video=video, **FAST)
    code = codec.encode_frame(body, cfg, {})
    dec = _decode(codec, cfg, code.components)
    assert np.array_equal(_keys(dec.points), _keys(body.points))
    assert np.array_equal(dec.points, code.recon.points)
    assert np.array_equal(dec.colors, code.recon.colors)


def test_lossy_decoder_equals_encoder_reconstruction(body, lossy_code):
    codec, cfg, code = lossy_code
    assert set(code.components) == set(COMPONENTS) | {SOURCE_COMPONENT}
    assert source_points(code.components) == len(np.unique(_keys(body.points)))
    dec = _decode(codec, cfg, code.components)
    assert np.array_equal(dec.points, code.recon.points)
    assert np.array_equal(dec.colors, code.recon.colors)
    # quality bands, nearest neighbours from a k-d tree: lossy but close (QP 24 on a 7-bit body gives
    # a symmetric D1 MSE near 1.2 and a mean colour error near 8)
    from scipy.spatial import cKDTree

    a, b = body.points, dec.points
    da, _ = cKDTree(b).query(a)
    db, nearest = cKDTree(a).query(b)
    assert max((da ** 2).mean(), (db ** 2).mean()) < 1.5
    assert np.abs(dec.colors.astype(int) - body.colors[nearest].astype(int)).mean() < 15
    assert sum(len(v) for v in code.components.values()) * 8 / len(body) < 3.0


def test_rates_order_bits_and_quality(body):
    codec = get_codec("vpcc")
    out = []
    for rate in ("r1", "r5"):
        cfg = codec.make_config({"rate": rate, "threads": 1})
        assert (cfg.geometry_qp, cfg.attribute_qp) == CTC_RATES[rate]
        code = codec.encode_frame(body, cfg, {})
        out.append(len(code.components["geometry_video"]))
    assert out[0] < out[1]


@pytest.mark.parametrize("name", ["patches", "occupancy", "raw_points", "geometry_video", "attribute_video"])
def test_damaged_sub_stream_raises_bitstream_error(lossy_code, name):
    codec, cfg, code = lossy_code
    comps = dict(code.components)
    comps[name] = comps[name][: max(0, len(comps[name]) // 2 - 1)]
    with pytest.raises(BitstreamError):
        _decode(codec, cfg, comps)


def test_garbage_and_missing_sub_streams(lossy_code):
    codec, cfg, code = lossy_code
    comps = dict(code.components)
    comps["geometry_video"] = bytes(range(256)) * 4
    with pytest.raises(BitstreamError):
        _decode(codec, cfg, comps)
    comps = dict(code.components)
    del comps["occupancy"]
    with pytest.raises(BitstreamError, match="occupancy"):
        _decode(codec, cfg, comps)
    with pytest.raises(BitstreamError):
        codec.decode_frame(code.components, b"\x07" * 9, {})


def test_empty_single_point_and_duplicates():
    codec = get_codec("vpcc")
    cfg = VpccConfig(**FAST)
    empty = PointCloud(np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    code = codec.encode_frame(empty, cfg, {})
    assert len(_decode(codec, cfg, code.components)) == 0
    one = PointCloud(np.array([[5.0, 6.0, 7.0]]), np.array([[10, 20, 30]], np.uint8))
    code = codec.encode_frame(one, cfg, {})
    dec = _decode(codec, cfg, code.components)
    assert dec.points.tolist() == [[5.0, 6.0, 7.0]]  # kept as a raw point
    assert np.abs(dec.colors.astype(int) - [10, 20, 30]).max() <= 8
    dup = PointCloud(np.array([[1.0, 1, 1], [1, 1, 1], [3, 3, 3]]))
    code = codec.encode_frame(dup, VpccConfig(lossless=True, **FAST), {})
    dec = _decode(codec, VpccConfig(lossless=True, **FAST), code.components)
    assert dec.colors is None and _keys(dec.points).tolist() == _keys([[1, 1, 1], [3, 3, 3]]).tolist()


def test_bad_input_clouds():
    codec = get_codec("vpcc")
    with pytest.raises(InputError, match="integers"):
        codec.encode_frame(PointCloud(np.array([[0.5, 1.0, 2.0]])), VpccConfig(**FAST), {})
    with pytest.raises(InputError, match="8-bit"):
        codec.encode_frame(PointCloud(np.array([[1.0, 1, 2]]), np.array([[1, 2, 3]], np.uint16)),
                           VpccConfig(**FAST), {})


def test_make_config_options():
    codec = get_codec("vpcc")
    cfg = codec.make_config({"rate": "r2", "geometry_qp": 30, "attribute_qp": None, "lossless": None})
    assert (cfg.geometry_qp, cfg.attribute_qp) == (30, CTC_RATES["r2"][1])
    assert codec.make_config({}).geometry_qp == CTC_RATES["r3"][0]
    with pytest.raises(UsageError, match="r9"):
        codec.make_config({"rate": "r9"})
    with pytest.raises(UsageError, match="--scale"):
        codec.make_config({"scale": 0.5})
    with pytest.raises(UsageError, match="geometry-qp"):
        codec.make_config({"geometry_qp": 60})
    with pytest.raises(UsageError, match="exclude"):
        codec.make_config({"lossless": True, "geometry_qp": 20})
    assert StreamParams.from_config(codec.make_config({"lossless": True})).b0 == 1


def test_missing_ffmpeg_is_a_tool_error(body, monkeypatch, tmp_path):
    monkeypatch.setenv("IMCODEC_FFMPEG", str(tmp_path / "ffmpeg-missing"))
    with pytest.raises(ToolError, match="ffmpeg-missing"):
        get_codec("vpcc").encode_frame(body, VpccConfig(**FAST), {})


def test_a_hung_ffmpeg_is_stopped_by_the_time_limit(body, monkeypatch, tmp_path):
    import time

    fake = tmp_path / "ffmpeg-hangs"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMCODEC_FFMPEG", str(fake))
    monkeypatch.setenv("IMCODEC_FFMPEG_TIMEOUT", "1")
    t0 = time.perf_counter()
    with pytest.raises(ToolError, match=r"ffmpeg-hangs' timed out after 1 s .*IMCODEC_FFMPEG_TIMEOUT"):
        get_codec("vpcc").encode_frame(body, VpccConfig(**FAST), {})
    assert time.perf_counter() - t0 < 20
    monkeypatch.setenv("IMCODEC_FFMPEG_TIMEOUT", "soon")
    with pytest.raises(ToolError, match="IMCODEC_FFMPEG_TIMEOUT='soon': expected a positive number"):
        get_codec("vpcc").encode_frame(body, VpccConfig(**FAST), {})


def test_time_limits_grow_with_the_video_size(monkeypatch):
    from imcodec.vpcc import video

    monkeypatch.delenv("IMCODEC_FFMPEG_TIMEOUT", raising=False)
    assert video.time_limit() == video.TIMEOUT_BASE_S
    assert video.time_limit(2.0, video.DECODE_S_PER_MP) == video.TIMEOUT_BASE_S + 2 * video.DECODE_S_PER_MP
    assert video.time_limit(2.0) > video.time_limit(2.0, video.DECODE_S_PER_MP)


def test_keep_intermediate_writes_images_and_videos(body, tmp_path):
    codec = get_codec("vpcc")
    cfg = VpccConfig(keep_intermediate=str(tmp_path / "inter"), **FAST)
    codec.encode_frame(body, cfg, {})
    names = sorted(p.name for p in (tmp_path / "inter").iterdir())
    for want in ("frame0000_geometry_d0.png", "frame0000_attribute_t0.png", "frame0000_occupancy.png",
                 "frame0000_geometry_video.hevc", "frame0000_attribute_video.hevc"):
        assert want in names


def test_cli_encode_decode_round_trip(tmp_path, run_cli, body):
    from imcodec.io.ply import read_ply, write_ply

    src = tmp_path / "body.ply"
    write_ply(body, src)
    stream = tmp_path / "body.imc"
    code, out, err = run_cli("encode", "--codec", "vpcc", src, "-o", stream, "--rate", "r1", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert set(result["components"]) == set(COMPONENTS) | {SOURCE_COMPONENT}
    assert result["bytes"] == stream.stat().st_size
    code, out, err = run_cli("decode", stream, "-o", tmp_path / "dec.ply")
    assert code == 0, err
    dec = read_ply(tmp_path / "dec.ply")
    assert dec.colors is not None and len(dec) == result["per_frame"][0]["points"] or len(dec) > 0
    code, out, err = run_cli("encode", "--codec", "vpcc", src, "-o", stream, "--scale", "0.5")
    assert code == 2 and "scale" in err


def test_stream_parameters_of_another_version_are_refused():
    """Version 1 streams (colour predicted from the 8 nearest points, references re-coded without full
    RDO) would decode to wrong colours; the reader names the version instead."""
    data = StreamParams.from_config(VpccConfig()).pack()
    assert StreamParams.unpack(data) == StreamParams.from_config(VpccConfig())
    with pytest.raises(BitstreamError, match="version 1 are not supported"):
        StreamParams.unpack(bytes([1]) + data[1:])


def test_stream_parameters_carry_the_geometry_qp_and_version_2_is_read():
    """Version 3 adds the geometry QP (the depth denoiser's tables depend on it); version-2 streams,
    which differ only in lacking it, still decode, with QP 0 (unknown)."""
    from dataclasses import replace

    sp = StreamParams.from_config(replace(VpccConfig(), geometry_qp=27))
    assert sp.geometry_qp == 27 and StreamParams.unpack(sp.pack()) == sp
    assert StreamParams.from_config(replace(VpccConfig(), lossless=True)).geometry_qp == 0
    v2 = bytes([2]) + sp.pack()[1:-1]
    assert StreamParams.unpack(v2) == replace(sp, geometry_qp=0)
    with pytest.raises(BitstreamError, match="version 2.*12 bytes, expected 11"):
        StreamParams.unpack(v2 + b"\0")
    with pytest.raises(BitstreamError, match="damaged"):
        StreamParams.unpack(sp.pack()[:-1] + bytes([60]))

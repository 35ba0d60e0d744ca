"""Decoding checks that need a codec: a stream header that declares colour while a frame lacks it
(octree and V-PCC), duplicate frame numbers and header values that cannot decode (end to end, with no
numpy warning on the way), and header values the octree codec never writes.

Damaged streams are rebuilt with valid CRCs, so the container accepts every byte and the checks
behind it are what must notice."""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import replace

import numpy as np
import pytest

from imcodec import api
from imcodec.codecs import codec_by_id, get_codec
from imcodec.errors import BitstreamError
from imcodec.io.bitstream import FLAG_COLORS, MAGIC, VERSION, StreamWriter, parse_stream, put_varint, read_frame
from imcodec.io.ply import read_ply
from imcodec.synth import make_cloud, make_sequence
from imcodec.types import PointCloud
from imcodec.vpcc.config import VpccConfig

pytestmark = pytest.mark.timeout(300)


def _encode(codec_name: str, clouds: list[PointCloud], config=None) -> bytes:
    """A stream of ``clouds`` as ``imcodec encode`` writes it (V-PCC: one GOF)."""
    codec = get_codec(codec_name)
    cfg = config if config is not None else codec.make_config({})
    state: dict = {}
    if len(clouds) > 1 and hasattr(codec, "encode_group"):
        codes = codec.encode_group(clouds, cfg, state)
    else:
        codes = [codec.encode_frame(c, cfg, state) for c in clouds]
    w = StreamWriter(codec.codec_id, codec.stream_params(cfg))
    for i, code in enumerate(codes):
        w.add_frame(i, len(code.recon), code.components, code.needs_previous)
    colors = codes[0].recon.colors is not None
    return w.finish(bit_depth=max(c.bit_depth for c in codes), scale=getattr(cfg, "scale", 1.0),
                    flags=FLAG_COLORS if colors else 0)


def _rebuild(data: bytes, frames=None, **header) -> bytes:
    """``data`` with header fields replaced and ``frames(rows)`` applied to its frame rows
    ([number, points, flags, {name: payload}]), every CRC valid (header values are not checked)."""
    h, entries = parse_stream(data)
    hd = dict(codec_id=h.codec_id, bit_depth=h.bit_depth, flags=h.flags, origin=h.origin, scale=h.scale,
              params=h.params)
    hd.update(header)
    rows = [[e.number, e.points, e.flags, dict(read_frame(data, e))] for e in entries]
    if frames is not None:
        rows = frames(rows) or rows
    flags, extra = hd["flags"], b""
    if tuple(hd["origin"]) != (0.0, 0.0, 0.0):
        flags |= 2
        extra += struct.pack("<3d", *hd["origin"])
    if hd["scale"] != 1.0:
        flags |= 4
        extra += struct.pack("<d", hd["scale"])
    head = (MAGIC + bytes([VERSION, hd["codec_id"], flags, hd["bit_depth"]]) + extra + put_varint(len(rows))
            + put_varint(max((r[1] for r in rows), default=0)) + put_varint(len(hd["params"])) + hd["params"])
    head += struct.pack("<I", zlib.crc32(head))
    bodies = []
    for _, _, _, chunks in rows:
        parts = [bytes([len(chunks)])]
        for name, payload in chunks.items():
            h = bytes([len(name)]) + name.encode() + put_varint(len(payload))
            parts.append(h + struct.pack("<I", zlib.crc32(payload, zlib.crc32(h))) + payload)
        bodies.append(b"".join(parts))
    index = b"".join(put_varint(n) + put_varint(len(b)) + put_varint(p) + bytes([f])
                     for (n, p, f, _), b in zip(rows, bodies))
    return head + index + struct.pack("<I", zlib.crc32(index)) + b"".join(bodies)


def _decode_all(data: bytes) -> list[PointCloud]:
    """Every frame in order, as ``imcodec decode`` does."""
    header, entries = parse_stream(data)
    codec, state = codec_by_id(header.codec_id), {}
    return [codec.decode_frame(read_frame(data, e), header, state) for e in entries]


def _drop(name):
    def edit(rows):
        for r in rows:
            r[3].pop(name)
    return edit


@pytest.fixture(scope="module")
def octree_stream():
    return _encode("octree", [make_cloud("body", bits=5, color=True, seed=1)])


@pytest.fixture(scope="module")
def octree_sequence():
    return _encode("octree", make_sequence("body", bits=5, frames=3, color=True, seed=1))


# ------------------------------------------------------------------------ colour declared, colour missing

def test_octree_rebuild_is_exact(octree_stream):
    assert _rebuild(octree_stream) == octree_stream
    assert _decode_all(octree_stream)[0].colors is not None


def test_octree_frame_without_its_attribute_chunk_is_an_error(octree_stream, tmp_path):
    bad = _rebuild(octree_stream, _drop("attribute"))
    with pytest.raises(BitstreamError, match="frame 0 lacks its colour component 'attribute'"):
        _decode_all(bad)
    (tmp_path / "s.imc").write_bytes(bad)
    with pytest.raises(BitstreamError, match="lacks its colour component"):
        api.decode(tmp_path / "s.imc", tmp_path / "o.ply")
    assert not (tmp_path / "o.ply").exists()


def test_octree_reference_frames_still_decode_without_colour(octree_sequence, tmp_path):
    """Frames decoded only as references get just their geometry: no colour, no error."""
    header, entries = parse_stream(octree_sequence)
    assert [e.needs_previous for e in entries] == [False, True, True]
    codec = codec_by_id(header.codec_id)
    ref = codec.decode_frame({"geometry": read_frame(octree_sequence, entries[0])["geometry"]}, header, {})
    assert len(ref) and ref.colors is None
    (tmp_path / "s.imc").write_bytes(octree_sequence)
    api.decode(tmp_path / "s.imc", tmp_path / "f2.ply", frames="2:3")
    cloud = read_ply(tmp_path / "f2.ply")
    assert len(cloud) == entries[2].points and cloud.colors is not None


def test_decoded_colour_check():
    from imcodec.codecs import check_decoded_colors

    codec = get_codec("octree")
    colour = parse_stream(StreamWriter(1).finish(bit_depth=5, flags=FLAG_COLORS))[0]
    plain = parse_stream(StreamWriter(1).finish(bit_depth=5))[0]
    pts = PointCloud(np.zeros((2, 3)))
    full = {"geometry": b"", "attribute": b""}
    with pytest.raises(BitstreamError, match="2 points decodes without colour"):
        check_decoded_colors(codec, full, colour, pts)
    check_decoded_colors(codec, {"geometry": b""}, colour, pts)  # reference decode: colour left out
    check_decoded_colors(codec, full, plain, pts)
    check_decoded_colors(codec, full, colour, PointCloud(np.zeros((0, 3))))
    check_decoded_colors(codec, full, colour, pts.with_(colors=np.zeros((2, 3), np.uint8)))
    check_decoded_colors(codec, full, b"raw params", pts)  # no header to tell


FAST = dict(threads=1, preset="ultrafast")


@pytest.fixture(scope="module")
def vpcc_stream():
    return _encode("vpcc", [make_cloud("body", bits=6, color=True, seed=2)],
                   VpccConfig(geometry_qp=24, attribute_qp=32, **FAST))


def test_vpcc_intra_frame_with_an_empty_attribute_video_is_an_error(vpcc_stream):
    assert _decode_all(vpcc_stream)[0].colors is not None

    def empty(rows):
        rows[0][3]["attribute_video"] = b""
    with pytest.raises(BitstreamError, match="empty attribute video"):
        _decode_all(_rebuild(vpcc_stream, empty))
    # the same frame in a stream without colour decodes (as before) without colour
    assert _decode_all(_rebuild(vpcc_stream, empty, flags=0))[0].colors is None
    with pytest.raises(BitstreamError, match="lacks its colour component 'attribute_video'"):
        _decode_all(_rebuild(vpcc_stream, _drop("attribute_video")))


def test_vpcc_gof_frames_after_the_first_carry_no_colour_video_legitimately():
    from imcodec.vpcc.inter import GOF_COMPONENT, MODE_GOF, MODE_NONE, GofRecord

    cfg = VpccConfig(geometry_qp=24, attribute_qp=32, gof=2, motion_hints=False, **FAST)
    data = _encode("vpcc", make_sequence("body", bits=6, frames=2, color=True, seed=2), cfg)
    header, entries = parse_stream(data)
    later = read_frame(data, entries[1])
    assert GofRecord.unpack(later[GOF_COMPONENT]).mode == MODE_GOF and later["attribute_video"] == b""
    assert all(c.colors is not None and len(c) for c in _decode_all(data))

    def no_colour(rows):  # every frame claims "no colour video" (and the GOF's colour video is gone)
        for _, _, _, chunks in rows:
            chunks[GOF_COMPONENT] = replace(GofRecord.unpack(chunks[GOF_COMPONENT]), mode=MODE_NONE).pack()
            chunks["attribute_video"] = b""
    assert all(c.colors is None for c in _decode_all(_rebuild(data, no_colour, flags=0)))
    with pytest.raises(BitstreamError, match="decodes without colour although the stream header declares"):
        _decode_all(_rebuild(data, no_colour))


# --------------------------------------------------------------------------- frame numbers, header values

def test_duplicate_frame_numbers_are_rejected_before_decoding(octree_stream, tmp_path):
    bad = _rebuild(octree_stream, lambda rows: rows + [list(rows[0])])
    (tmp_path / "s.imc").write_bytes(bad)
    with pytest.raises(BitstreamError, match="frame number 0 appears twice"):
        api.decode(tmp_path / "s.imc", tmp_path / "out")
    assert not list(tmp_path.rglob("*.ply"))


@pytest.mark.parametrize("header, message", [
    (dict(origin=(1e308, 0.0, 0.0)), r"origin \(1e\+308, 0.0, 0.0\)"),
    (dict(scale=1e-308), "scale 1e-308"),
    (dict(bit_depth=0), "bit depth 0"),
    (dict(bit_depth=255), "bit depth 255"),
])
def test_header_values_that_cannot_decode_fail_without_numpy_warnings(octree_stream, tmp_path, header, message):
    (tmp_path / "s.imc").write_bytes(_rebuild(octree_stream, **header))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would fail the test
        with pytest.raises(BitstreamError, match=message):
            api.decode(tmp_path / "s.imc", tmp_path / "o.ply")
    assert not (tmp_path / "o.ply").exists()


@pytest.mark.parametrize("header, message", [
    (dict(bit_depth=22), "bit depth 22; the octree codec codes 1..21"),
    (dict(bit_depth=2), "coordinate .* beyond the header's bit depth 2"),
    (dict(scale=1e300), "scale 1e\\+300"),
    (dict(scale=0.5), "scale 0.5"),  # lossless geometry is coded at scale 1
])
def test_octree_rejects_header_values_it_never_writes(octree_stream, header, message):
    bad = _rebuild(octree_stream, **header)
    parse_stream(bad)  # the container accepts them
    with pytest.raises(BitstreamError, match=message):
        _decode_all(bad)

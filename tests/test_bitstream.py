"""The .imc container: exact round trips, and every truncation / bit flip ends in a BitstreamError."""

from __future__ import annotations

import struct
import zlib

import pytest

from imcodec.errors import BitstreamError, InputError
from imcodec.io.bitstream import (
    MAGIC,
    VERSION,
    StreamWriter,
    get_varint,
    parse_stream,
    put_varint,
    read_frame,
    read_stream_bytes,
    stream_info,
)


def _stream(frames=((3, 10, {"geometry": b"\x01\x02\x03", "attribute": b"colour!"}, False),
                    (4, 12, {"geometry": b"", "attribute": b"x" * 40}, True)),
            params=b"\x07\x08") -> bytes:
    w = StreamWriter(codec_id=1, params=params)
    for number, points, comps, prev in frames:
        w.add_frame(number, points, comps, needs_previous=prev)
    return w.finish(bit_depth=10, origin=(1.5, -2.0, 3.25), scale=0.875, flags=1)


def test_round_trip_of_every_field():
    data = _stream()
    header, entries = parse_stream(data)
    assert data.startswith(MAGIC)
    assert (header.version, header.codec_id, header.bit_depth) == (VERSION, 1, 10)
    assert header.origin == (1.5, -2.0, 3.25) and header.scale == 0.875
    assert header.frame_count == 2 and header.max_points == 12 and header.has_colors
    assert header.params == b"\x07\x08"
    assert [(e.number, e.points, e.needs_previous) for e in entries] == [(3, 10, False), (4, 12, True)]
    assert read_frame(data, entries[0]) == {"geometry": b"\x01\x02\x03", "attribute": b"colour!"}
    assert read_frame(data, entries[1]) == {"geometry": b"", "attribute": b"x" * 40}
    assert entries[1].offset + entries[1].length == len(data)


def test_empty_stream_and_info():
    data = StreamWriter(codec_id=2).finish(bit_depth=8)
    header, entries = parse_stream(data)
    assert header.frame_count == 0 and entries == []
    info = stream_info(_stream())
    assert info["frame_count"] == 2 and info["points"] == 22 and info["bytes"] == len(_stream())
    assert info["components"] == {"geometry": 3, "attribute": 47}
    assert info["frames"][1]["components"] == {"geometry": 0, "attribute": 40}
    assert info["codec"] == "octree"


def test_every_truncation_is_a_bitstream_error():
    data = _stream()
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            h, entries = parse_stream(data[:cut])
            for e in entries:
                read_frame(data[:cut], e)


def test_every_single_bit_flip_is_a_bitstream_error():
    data = _stream()
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            h, entries = parse_stream(bytes(bad))
            for e in entries:
                read_frame(bytes(bad), e)


def test_trailing_bytes_and_bad_magic():
    with pytest.raises(BitstreamError, match="extra bytes"):
        parse_stream(_stream() + b"\x00")
    with pytest.raises(BitstreamError, match="magic"):
        parse_stream(b"PLY not a stream at all")
    with pytest.raises(BitstreamError, match="magic"):
        parse_stream(b"")


def _header(version=VERSION, scale=None, n_frames=0, max_points=0, params=b"") -> bytes:
    """A hand-built global header with a valid CRC (as another writer could produce)."""
    extra = struct.pack("<d", scale) if scale is not None else b""
    flags = 4 if scale is not None else 0
    head = (MAGIC + bytes([version, 1, flags, 10]) + extra + put_varint(n_frames) + put_varint(max_points)
            + put_varint(len(params)) + params)
    return head + struct.pack("<I", zlib.crc32(head))


EMPTY_INDEX = struct.pack("<I", zlib.crc32(b""))


def test_newer_version_and_bad_header_values_are_clear_errors():
    assert parse_stream(_header() + EMPTY_INDEX)[0].frame_count == 0
    with pytest.raises(BitstreamError, match="version 2 .*newer"):
        parse_stream(_header(version=VERSION + 1) + EMPTY_INDEX)
    with pytest.raises(BitstreamError, match="invalid scale"):
        parse_stream(_header(scale=float("nan")) + EMPTY_INDEX)
    with pytest.raises(BitstreamError, match="invalid scale"):
        parse_stream(_header(scale=-1.0) + EMPTY_INDEX)


def test_huge_declared_sizes_do_not_allocate():
    with pytest.raises(BitstreamError, match="truncated"):
        parse_stream(_header(n_frames=1 << 24) + EMPTY_INDEX)
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        parse_stream(_header(n_frames=(1 << 24) + 1) + EMPTY_INDEX)
    with pytest.raises(BitstreamError, match="varint longer"):
        get_varint(b"\xff" * 12, 0)


def test_varints_round_trip():
    for v in (0, 1, 127, 128, 300, 2**31 - 1, 2**40):
        assert get_varint(put_varint(v) + b"rest", 0) == (v, len(put_varint(v)))
    with pytest.raises(ValueError):
        put_varint(-1)


def test_container_overhead_is_small():
    w = StreamWriter(codec_id=1, params=b"abc")
    w.add_frame(536, 700000, {"geometry": b"x" * 1000})
    assert len(w.finish(bit_depth=10, scale=0.5)) - 1000 <= 56


def test_writer_rejects_bad_names_and_numbers():
    w = StreamWriter(codec_id=1)
    with pytest.raises(ValueError):
        w.add_frame(0, 1, {"": b"x"})
    with pytest.raises(ValueError):
        w.add_frame(0, 1, {"é": b"x"})
    with pytest.raises(InputError):
        w.add_frame(-1, 1, {"geometry": b""})


def test_read_stream_bytes(tmp_path):
    p = tmp_path / "s.imc"
    p.write_bytes(_stream())
    assert read_stream_bytes(p) == _stream()
    q = tmp_path / "x.ply"
    q.write_bytes(b"ply\nformat ascii 1.0\n")
    with pytest.raises(BitstreamError, match="not an imcodec stream"):
        read_stream_bytes(q)
    with pytest.raises(InputError, match="no such"):
        read_stream_bytes(tmp_path / "missing.imc")

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


# ------------------------------------------------------------------ consistency checks (audit 10, 11, 12, 17)

def _assemble(frames, codec_id=1, bit_depth=10, flags=1, origin=None, scale=None, params=b"\x07\x08") -> bytes:
    """A stream with valid CRCs built field by field (so values StreamWriter refuses can be written):
    frames = [(number, points, frame flags, {name: payload})]."""
    extra = b""
    if origin is not None:
        flags |= 2
        extra += struct.pack("<3d", *origin)
    if scale is not None:
        flags |= 4
        extra += struct.pack("<d", scale)
    head = (MAGIC + bytes([VERSION, codec_id, flags, bit_depth]) + extra + put_varint(len(frames))
            + put_varint(max((f[1] for f in frames), default=0)) + put_varint(len(params)) + params)
    head += struct.pack("<I", zlib.crc32(head))
    bodies = []
    for _, _, _, chunks in frames:
        parts = [bytes([len(chunks)])]
        for name, payload in chunks.items():
            raw = name.encode("latin-1")
            h = bytes([len(raw)]) + raw + put_varint(len(payload))
            parts.append(h + struct.pack("<I", zlib.crc32(payload, zlib.crc32(h))) + payload)
        bodies.append(b"".join(parts))
    index = b"".join(put_varint(n) + put_varint(len(b)) + put_varint(p) + bytes([f])
                     for (n, p, f, _), b in zip(frames, bodies))
    return head + index + struct.pack("<I", zlib.crc32(index)) + b"".join(bodies)


_COLOURED = {"geometry": b"g", "attribute": b"c"}


def test_assembled_stream_equals_the_writer_output():
    w = StreamWriter(codec_id=1, params=b"\x07\x08")
    w.add_frame(3, 10, _COLOURED)
    assert _assemble([(3, 10, 0, _COLOURED)], origin=(1.5, 0.0, 0.0), scale=0.5) == w.finish(
        bit_depth=10, origin=(1.5, 0.0, 0.0), scale=0.5, flags=1)


def test_duplicate_frame_numbers_are_rejected():
    data = _assemble([(5, 10, 0, _COLOURED), (5, 10, 0, _COLOURED)])
    with pytest.raises(BitstreamError, match="frame number 5 appears twice"):
        parse_stream(data)
    # distinct numbers in any order are fine (the format does not require them to increase)
    assert [e.number for e in parse_stream(_assemble([(7, 1, 0, _COLOURED), (5, 1, 0, _COLOURED)]))[1]] == [7, 5]
    w = StreamWriter(codec_id=1)
    w.add_frame(5, 1, _COLOURED)
    with pytest.raises(InputError, match="frame number 5 added twice"):
        w.add_frame(5, 1, _COLOURED)


@pytest.mark.parametrize("kw, quoted", [
    (dict(origin=(1e308, 0.0, 0.0)), "1e+308"),
    (dict(origin=(0.0, -1e16, 0.0)), "-1e+16"),
    (dict(origin=(0.0, 0.0, float("nan"))), "nan"),
    (dict(origin=(float("inf"), 0.0, 0.0)), "inf"),
    (dict(scale=1e-308), "1e-308"),
    (dict(scale=1e-13), "1e-13"),
    (dict(scale=float("inf")), "inf"),
    (dict(scale=0.0), "scale 0.0"),
    (dict(scale=-2.0), "scale -2.0"),
    (dict(bit_depth=0), "bit depth 0"),
    (dict(bit_depth=54), "bit depth 54"),
    (dict(bit_depth=255), "bit depth 255"),
])
def test_header_coordinates_that_cannot_decode_are_rejected(kw, quoted):
    data = _assemble([(0, 1, 0, _COLOURED)], **kw)
    with pytest.raises(BitstreamError) as err:
        parse_stream(data)
    msg = str(err.value)
    assert quoted in msg and "\n" not in msg
    w = StreamWriter(codec_id=1)  # the writer refuses what the reader would reject
    w.add_frame(0, 1, _COLOURED)
    args = {"bit_depth": 10, **kw}
    with pytest.raises(InputError):
        w.finish(**args)


@pytest.mark.parametrize("kw", [dict(bit_depth=1), dict(bit_depth=21), dict(bit_depth=53),
                                dict(bit_depth=21, scale=1e-6), dict(bit_depth=10, origin=(-1e12, 5e14, 0.0)),
                                dict(bit_depth=10, scale=16.0, origin=(0.25, 0.5, 0.75))])
def test_sane_header_coordinates_are_accepted(kw):
    w = StreamWriter(codec_id=1)
    w.add_frame(0, 1, _COLOURED)
    header, _ = parse_stream(w.finish(flags=1, **kw))
    assert header.bit_depth == kw["bit_depth"]
    assert header.scale == kw.get("scale", 1.0) and header.origin == kw.get("origin", (0.0, 0.0, 0.0))


def test_chunk_names_print_as_text():
    data = bytearray(_stream())
    data[-1] ^= 0x01  # the last payload byte (frame 4's attribute chunk), CRC left as it was
    _, entries = parse_stream(bytes(data))
    with pytest.raises(BitstreamError) as err:
        read_frame(bytes(data), entries[1])
    assert str(err.value) == "frame 4: chunk 'attribute' CRC mismatch (stream damaged)"
    bad = _assemble([(0, 1, 0, {"geometry": b"g", "attr\x00bute": b"c"})], flags=0)
    _, entries = parse_stream(bad)
    with pytest.raises(BitstreamError, match=r"chunk name 'attr\\x00bute' is not printable ASCII"):
        read_frame(bad, entries[0])


def test_colour_stream_frame_needs_its_colour_chunk():
    data = _assemble([(0, 1, 0, _COLOURED), (1, 1, 0, {"geometry": b"g"})])  # octree, colour flag set
    _, entries = parse_stream(data)
    assert read_frame(data, entries[0]) == _COLOURED
    with pytest.raises(BitstreamError, match="frame 1 lacks its colour component 'attribute'"):
        read_frame(data, entries[1])
    with pytest.raises(BitstreamError, match="frame 1 lacks its colour component"):
        stream_info(data)
    # without the colour flag, or for a V-PCC stream with the (empty) attribute video, nothing is missing
    plain = _assemble([(1, 1, 0, {"geometry": b"g"})], flags=0)
    assert read_frame(plain, parse_stream(plain)[1][0]) == {"geometry": b"g"}
    vpcc = _assemble([(1, 1, 0, {"patches": b"p", "attribute_video": b""})], codec_id=2)
    assert read_frame(vpcc, parse_stream(vpcc)[1][0])["attribute_video"] == b""
    vpcc = _assemble([(1, 1, 0, {"patches": b"p"})], codec_id=2)
    with pytest.raises(BitstreamError, match="frame 1 lacks its colour component 'attribute_video'"):
        read_frame(vpcc, parse_stream(vpcc)[1][0])

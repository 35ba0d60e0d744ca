"""The .imc container shared by every imcodec codec (layout: docs/container.md).

A stream is a global header, a frame index and frame records; each frame record holds named
chunks (``geometry``, ``attribute``, V-PCC sub-streams, ...), each with its length and a CRC32.
Fixed-size integers are little-endian, counts and lengths are LEB128 varints (the container costs
about 40 bytes for a one-frame stream). The parser checks magic, version, every length against the bytes
actually present and every CRC before it trusts a field, so a truncated or damaged stream raises
:class:`~imcodec.errors.BitstreamError` and never makes it allocate more than the stream holds. It
also rejects what no writer produces: a bit depth outside 1..53, an origin / scale whose decoded
positions could leave +-2**53 (or overflow), a frame number listed twice, and, in a stream whose
header declares colour, a frame without its codec's colour component.
"""

from __future__ import annotations

import math
import numbers
import os
import struct
import zlib
from dataclasses import dataclass, field

from imcodec.errors import BitstreamError, InputError
from imcodec.io.files import read_bytes

MAGIC = b"\x89IMC"
VERSION = 1
MAX_FRAMES = 1 << 24
MAX_POINTS = (1 << 31) - 1
MAX_CHUNKS = 255
MAX_NAME = 32
MIN_BIT_DEPTH, MAX_BIT_DEPTH = 1, 53  # octree codes up to 21 bits, V-PCC coordinates up to 2**53
MAX_COORD = float(1 << 53)  # decoded positions stay within +-2**53, where float64 holds every integer

_FIXED = struct.Struct("<4sBBBB")  # magic, version, codec id, flags, bit depth
_CRC = struct.Struct("<I")
_F64 = struct.Struct("<d")

FLAG_COLORS = 1  # stream header: frames carry colour
_FLAG_ORIGIN = 2  # origin (3 x f64) follows; otherwise (0, 0, 0)
_FLAG_SCALE = 4  # scale (f64) follows; otherwise 1
FRAME_NEEDS_PREVIOUS = 1  # frame entry: decoding needs the previous frame's state


def put_varint(value: int) -> bytes:
    """LEB128 bytes of a non-negative integer."""
    if value < 0:
        raise ValueError(f"varint of a negative value {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def get_varint(data, pos: int, limit: int = (1 << 63) - 1, what: str = "value") -> tuple[int, int]:
    """(value, next position) of the LEB128 integer at ``pos``; BitstreamError when truncated, longer
    than 9 bytes, or above ``limit``."""
    value = shift = 0
    for i in range(9):
        if pos + i >= len(data):
            raise BitstreamError(f"stream truncated inside a {what}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > limit:
                raise BitstreamError(f"{what} {value} exceeds the limit {limit}")
            return value, pos + i + 1
        shift += 7
    raise BitstreamError(f"malformed {what} (varint longer than 9 bytes)")


@dataclass(frozen=True)
class StreamHeader:
    """The global header. origin/scale: decoded position = q / scale + origin (TMC13 semantics)."""

    codec_id: int
    bit_depth: int
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    frame_count: int = 0
    max_points: int = 0
    flags: int = 0
    params: bytes = b""
    version: int = VERSION

    @property
    def has_colors(self) -> bool:
        return bool(self.flags & FLAG_COLORS)


@dataclass(frozen=True)
class FrameEntry:
    """One frame of the index: its number, byte range in the stream, point count and flags."""

    number: int
    offset: int
    length: int
    points: int
    flags: int = 0

    # the chunks that carry colour in a stream whose header declares colour (the codec's
    # ``color_components``); :func:`read_frame` rejects a frame that lacks one
    color_chunks: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @property
    def needs_previous(self) -> bool:
        return bool(self.flags & FRAME_NEEDS_PREVIOUS)


def _check_coordinates(bit_depth, origin, scale) -> str | None:
    """Why the header's coordinate fields are unusable, or None. Decoded positions are
    ``q / scale + origin`` with ``q < 2**bit_depth`` (times the scale when it is above 1), so the range
    ``origin + [0, 2**bit_depth / min(scale, 1)]`` must stay within +-2**53 (float64 keeps every
    integer there, and nothing a decoder computes can overflow)."""
    if (isinstance(bit_depth, bool) or not isinstance(bit_depth, numbers.Integral)
            or not MIN_BIT_DEPTH <= bit_depth <= MAX_BIT_DEPTH):
        return f"bit depth {bit_depth!r} (expected {MIN_BIT_DEPTH}..{MAX_BIT_DEPTH})"
    if not all(math.isfinite(v) for v in origin):
        return f"non-finite origin {tuple(origin)}"
    if not (math.isfinite(scale) and scale > 0):
        return f"invalid scale {scale} (expected a finite number > 0)"
    reach = max(abs(v) for v in origin) + 2.0 ** bit_depth / min(scale, 1.0)
    if not reach <= MAX_COORD:
        return (f"origin {tuple(origin)} and scale {scale}: {bit_depth}-bit coordinates would decode up to "
                f"{reach:.3g}, beyond 2**53")
    return None


@dataclass
class StreamWriter:
    """Collects frames and assembles the stream; the header is completed when it is finished."""

    codec_id: int
    params: bytes = b""
    frames: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    _numbers: set[int] = field(default_factory=set, init=False, repr=False)

    def add_frame(self, number: int, points: int, components: dict[str, bytes],
                  needs_previous: bool = False) -> dict[str, int]:
        """Add one frame's chunks; returns the bytes per component."""
        if not 0 <= number < 1 << 32:
            raise InputError(f"frame number {number} does not fit the container (0..2^32-1)")
        if number in self._numbers:
            raise InputError(f"frame number {number} added twice; the frames of a stream need distinct numbers")
        if not 0 <= points <= MAX_POINTS:
            raise InputError(f"frame {number}: {points} points exceed the container limit {MAX_POINTS}")
        if len(components) > MAX_CHUNKS:
            raise ValueError(f"{len(components)} components in one frame; at most {MAX_CHUNKS}")
        parts = [bytes([len(components)])]
        sizes = {}
        for name, payload in components.items():
            raw = name.encode("ascii", errors="replace")
            if not 1 <= len(raw) <= MAX_NAME or not name.isascii() or not name.isprintable():
                raise ValueError(f"bad component name {name!r}")
            payload = bytes(payload)
            head = bytes([len(raw)]) + raw + put_varint(len(payload))
            parts.append(head + _CRC.pack(zlib.crc32(payload, zlib.crc32(head))) + payload)
            sizes[name] = len(payload)
        flags = FRAME_NEEDS_PREVIOUS if needs_previous else 0
        self.frames.append((number, points, flags, b"".join(parts)))
        self._numbers.add(number)
        return sizes

    def finish(self, bit_depth: int, origin=(0.0, 0.0, 0.0), scale: float = 1.0, flags: int = 0) -> bytes:
        """The complete stream."""
        if len(self.frames) > MAX_FRAMES:
            raise InputError(f"{len(self.frames)} frames exceed the container limit {MAX_FRAMES}")
        origin = tuple(float(v) for v in origin)
        bad = _check_coordinates(bit_depth, origin, float(scale))
        if bad:
            raise InputError(f"cannot write a stream header with {bad}")
        if len(self.params) > 1 << 16:
            raise ValueError(f"codec parameters of {len(self.params)} bytes; at most 65536")
        flags &= FLAG_COLORS
        extra = b""
        if origin != (0.0, 0.0, 0.0):
            flags |= _FLAG_ORIGIN
            extra += b"".join(_F64.pack(v) for v in origin)
        if float(scale) != 1.0:
            flags |= _FLAG_SCALE
            extra += _F64.pack(float(scale))
        max_points = max((f[1] for f in self.frames), default=0)
        head = (_FIXED.pack(MAGIC, VERSION, self.codec_id, flags, bit_depth) + extra
                + put_varint(len(self.frames)) + put_varint(max_points) + put_varint(len(self.params))
                + self.params)
        head += _CRC.pack(zlib.crc32(head))
        index = b"".join(put_varint(number) + put_varint(len(body)) + put_varint(points) + bytes([fflags])
                         for number, points, fflags, body in self.frames)
        index += _CRC.pack(zlib.crc32(index))
        return b"".join([head, index] + [f[3] for f in self.frames])


def parse_stream(data: bytes) -> tuple[StreamHeader, list[FrameEntry]]:
    """Validate and parse header and frame index (frame payloads are checked by :func:`read_frame`)."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not an imcodec stream (bad magic bytes)")
    if len(data) < _FIXED.size:
        raise BitstreamError(f"stream truncated: {len(data)} bytes, the header alone needs more")
    _, version, codec_id, flags, bit_depth = _FIXED.unpack_from(data, 0)
    if version != VERSION:
        newer = " (written by a newer imcodec)" if version > VERSION else ""
        raise BitstreamError(f"unsupported stream format version {version}{newer}; this imcodec reads "
                             f"version {VERSION}")
    pos = _FIXED.size
    origin, scale = (0.0, 0.0, 0.0), 1.0
    if flags & _FLAG_ORIGIN:
        if pos + 24 > len(data):
            raise BitstreamError("stream truncated inside the global header")
        origin = tuple(_F64.unpack_from(data, pos + 8 * i)[0] for i in range(3))
        pos += 24
    if flags & _FLAG_SCALE:
        if pos + 8 > len(data):
            raise BitstreamError("stream truncated inside the global header")
        (scale,) = _F64.unpack_from(data, pos)
        pos += 8
    n_frames, pos = get_varint(data, pos, MAX_FRAMES, "frame count")
    max_points, pos = get_varint(data, pos, MAX_POINTS, "point count")
    n_params, pos = get_varint(data, pos, 1 << 16, "parameter length")
    end_head = pos + n_params
    if len(data) < end_head + _CRC.size:
        raise BitstreamError("stream truncated inside the global header")
    (crc,) = _CRC.unpack_from(data, end_head)
    if crc != zlib.crc32(data[:end_head]):
        raise BitstreamError("global header CRC mismatch (stream damaged)")
    if flags & ~(FLAG_COLORS | _FLAG_ORIGIN | _FLAG_SCALE):
        raise BitstreamError(f"global header has unknown flags {flags:#x}")
    bad = _check_coordinates(bit_depth, origin, scale)
    if bad:
        raise BitstreamError(f"global header has {bad}")
    header = StreamHeader(codec_id=codec_id, bit_depth=bit_depth, origin=origin, scale=scale,
                          frame_count=n_frames, max_points=max_points, flags=flags & FLAG_COLORS,
                          params=bytes(data[pos:end_head]), version=version)
    pos = end_head + _CRC.size
    start_index = pos
    rows = []
    for _ in range(n_frames):  # each entry takes >= 4 bytes, so a huge count fails fast
        number, pos = get_varint(data, pos, (1 << 32) - 1, "frame number")
        length, pos = get_varint(data, pos, len(data), "frame length")
        points, pos = get_varint(data, pos, max_points, "frame point count")
        if pos >= len(data):
            raise BitstreamError("stream truncated inside the frame index")
        rows.append((number, length, points, data[pos]))
        pos += 1
    if pos + _CRC.size > len(data):
        raise BitstreamError(f"stream truncated inside the frame index ({n_frames} frames declared)")
    (crc,) = _CRC.unpack_from(data, pos)
    if crc != zlib.crc32(data[start_index:pos]):
        raise BitstreamError("frame index CRC mismatch (stream damaged)")
    offset = pos + _CRC.size
    color_chunks: frozenset[str] = frozenset()
    if header.has_colors:
        from imcodec.codecs import color_components

        color_chunks = color_components(codec_id)
    entries = []
    seen: dict[int, int] = {}
    for i, (number, length, points, fflags) in enumerate(rows):
        if fflags & ~FRAME_NEEDS_PREVIOUS:
            raise BitstreamError(f"frame {number} has unknown flags {fflags:#x}")
        if number in seen:
            raise BitstreamError(f"frame number {number} appears twice in the frame index (entries "
                                 f"{seen[number]} and {i}); frame numbers must be distinct")
        seen[number] = i
        entries.append(FrameEntry(number, offset, length, points, fflags, color_chunks))
        offset += length
    if offset != len(data):
        what = "truncated" if offset > len(data) else "followed by extra bytes"
        raise BitstreamError(f"stream {what}: frames end at byte {offset}, the stream has {len(data)}")
    return header, entries


def read_frame(data: bytes, entry: FrameEntry) -> dict[str, bytes]:
    """The chunks of one frame (name -> payload), every length and CRC checked."""
    view = memoryview(data)[entry.offset: entry.offset + entry.length]
    if len(view) != entry.length or entry.length < 1:
        raise BitstreamError(f"frame {entry.number}: record truncated")
    n = view[0]
    pos = 1
    chunks: dict[str, bytes] = {}
    for _ in range(n):
        start = pos
        name_len = view[pos] if pos < len(view) else 0
        if not 1 <= name_len <= MAX_NAME or pos + 1 + name_len > len(view):
            raise BitstreamError(f"frame {entry.number}: bad or truncated chunk header")
        raw = bytes(view[pos + 1: pos + 1 + name_len])
        name = raw.decode("latin-1")  # any byte -> one character; repr() escapes the unprintable ones
        length, pos = get_varint(view, pos + 1 + name_len, len(view), "chunk length")
        head = bytes(view[start:pos])
        if pos + _CRC.size + length > len(view):
            raise BitstreamError(f"frame {entry.number}: chunk length {length} runs past the frame record")
        (crc,) = _CRC.unpack_from(view, pos)
        payload = bytes(view[pos + _CRC.size: pos + _CRC.size + length])
        pos += _CRC.size + length
        if zlib.crc32(payload, zlib.crc32(head)) != crc:
            raise BitstreamError(f"frame {entry.number}: chunk {name!r} CRC mismatch (stream damaged)")
        if not (name.isascii() and name.isprintable()):
            raise BitstreamError(f"frame {entry.number}: chunk name {name!r} is not printable ASCII")
        if name in chunks:
            raise BitstreamError(f"frame {entry.number}: chunk {name!r} appears twice")
        chunks[name] = payload
    if pos != len(view):
        raise BitstreamError(f"frame {entry.number}: {len(view) - pos} stray bytes after its chunks")
    missing = sorted(entry.color_chunks - chunks.keys())
    if missing:
        raise BitstreamError(f"frame {entry.number} lacks its colour component "
                             f"{', '.join(repr(m) for m in missing)} (the stream header declares colour)")
    return chunks


def read_stream_bytes(path: str | os.PathLike) -> bytes:
    """Read an .imc file; BitstreamError if it does not start with the magic bytes."""
    data = read_bytes(path, what="stream")
    if data[: len(MAGIC)] != MAGIC:
        raise BitstreamError(f"{path}: not an imcodec stream (bad magic bytes)")
    return data


def stream_info(data: bytes) -> dict:
    """Header fields and per-frame, per-component bytes of a stream (every CRC checked)."""
    header, entries = parse_stream(data)
    from imcodec.codecs import codec_name_for_id

    frames = []
    totals: dict[str, int] = {}
    for e in entries:
        chunks = read_frame(data, e)
        sizes = {k: len(v) for k, v in chunks.items()}
        for k, v in sizes.items():
            totals[k] = totals.get(k, 0) + v
        frames.append({"frame": e.number, "points": e.points, "bytes": e.length,
                       "needs_previous": e.needs_previous, "components": sizes})
    points = sum(e.points for e in entries)
    return {
        "kind": "stream",
        "format_version": header.version,
        "codec": codec_name_for_id(header.codec_id),
        "codec_id": header.codec_id,
        "bit_depth": header.bit_depth,
        "origin": list(header.origin),
        "scale": header.scale,
        "colors": header.has_colors,
        "frame_count": header.frame_count,
        "max_points": header.max_points,
        "params_bytes": len(header.params),
        "bytes": len(data),
        "points": points,  # decoded points (lossy geometry merges duplicates)
        "bits_per_decoded_point": 8.0 * len(data) / points if points else None,
        "components": totals,
        "frames": frames,
    }

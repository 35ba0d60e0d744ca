"""PLY reading and writing (Stanford polygon format, http://paulbourke.net/dataformats/ply/).

Reads ascii, binary_little_endian and binary_big_endian bodies; x/y/z of any numeric type, optional
red/green/blue (uchar or ushort), nx/ny/nz and any other scalar vertex property (kept in
``PointCloud.extra``). Other elements (TMC13 writes an empty ``face`` element) are parsed for their
size and ignored. An ascii vertex line must hold exactly one value per property, each fitting its
declared type (integer types: finite integral values within range); errors name the vertex line,
counted from 1 at the first line of the vertex element (blank lines skipped). Writes binary
little-endian (default) or ascii, always through a temp file + rename.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imcodec.errors import InputError
from imcodec.io.files import atomic_output, read_bytes
from imcodec.types import PlyFormat, PointCloud

# PLY type names (both spellings) -> numpy base type
_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
# numpy base type -> PLY name used when writing
_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
          "f4": "float", "f8": "double"}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER = 1 << 20
_COLOR = ("red", "green", "blue")
_NORMAL = ("nx", "ny", "nz")


@dataclass
class _Prop:
    name: str
    dtype: str  # numpy base type, e.g. "f4"
    list_count: str | None = None  # for list properties: the count's type


@dataclass
class _Element:
    name: str
    count: int
    props: list[_Prop]


def _parse_header(path: Path, data: bytes) -> tuple[str, list[_Element], int]:
    if not data.startswith(b"ply"):
        raise InputError(f"{path}: not a PLY file (does not start with 'ply')")
    end = data.find(b"end_header", 0, _MAX_HEADER)
    if end < 0:
        raise InputError(f"{path}: PLY header has no 'end_header' line")
    nl = data.find(b"\n", end)
    body_start = len(data) if nl < 0 else nl + 1
    try:
        lines = data[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: PLY header is not ASCII text") from None
    fmt = None
    elements: list[_Element] = []
    for lineno, raw in enumerate(lines[1:], start=2):
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        key = words[0]
        if key == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                raise InputError(f"{path}: unknown PLY format {' '.join(words[1:])!r} (line {lineno})")
            fmt = words[1]
        elif key == "element":
            if len(words) != 3:
                raise InputError(f"{path}: malformed element line {raw.strip()!r}")
            try:
                count = int(words[2])
            except ValueError:
                raise InputError(f"{path}: element {words[1]!r} has a non-integer count {words[2]!r}") from None
            if count < 0:
                raise InputError(f"{path}: element {words[1]!r} has a negative count {count}")
            elements.append(_Element(words[1], count, []))
        elif key == "property":
            if not elements:
                raise InputError(f"{path}: property line before any element: {raw.strip()!r}")
            if len(words) >= 2 and words[1] == "list":
                if len(words) != 5:
                    raise InputError(f"{path}: malformed list property {raw.strip()!r}")
                for t in (words[2], words[3]):
                    if t not in _TYPES:
                        raise InputError(f"{path}: unknown property type {t!r} in {raw.strip()!r}")
                elements[-1].props.append(_Prop(words[4], _TYPES[words[3]], _TYPES[words[2]]))
            else:
                if len(words) != 3:
                    raise InputError(f"{path}: malformed property line {raw.strip()!r}")
                if words[1] not in _TYPES:
                    raise InputError(f"{path}: unknown property type {words[1]!r} for property {words[2]!r}")
                elements[-1].props.append(_Prop(words[2], _TYPES[words[1]]))
        else:
            raise InputError(f"{path}: unexpected PLY header line {raw.strip()!r}")
    if fmt is None:
        raise InputError(f"{path}: PLY header has no 'format' line")
    return fmt, elements, body_start


def _skip_binary_element(path: Path, data: bytes, pos: int, el: _Element, endian: str) -> int:
    """Return the offset after a non-vertex binary element (list properties walked item by item)."""
    if all(p.list_count is None for p in el.props):
        size = sum(np.dtype(p.dtype).itemsize for p in el.props) * el.count
        if pos + size > len(data):
            raise InputError(f"{path}: truncated PLY body in element {el.name!r}")
        return pos + size
    for _ in range(el.count):
        for p in el.props:
            if p.list_count is None:
                pos += np.dtype(p.dtype).itemsize
                continue
            cdt = np.dtype(endian + p.list_count)
            if pos + cdt.itemsize > len(data):
                raise InputError(f"{path}: truncated PLY body in element {el.name!r}")
            n = int(np.frombuffer(data, cdt, 1, pos)[0])
            if n < 0:
                raise InputError(f"{path}: negative list length {n} in element {el.name!r}")
            pos += cdt.itemsize + n * np.dtype(p.dtype).itemsize
        if pos > len(data):
            raise InputError(f"{path}: truncated PLY body in element {el.name!r}")
    return pos


def _vertex_dtype(path: Path, el: _Element, endian: str) -> np.dtype:
    names = [p.name for p in el.props]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: duplicate vertex property names in {names}")
    for p in el.props:
        if p.list_count is not None:
            raise InputError(f"{path}: list property {p.name!r} in the vertex element is not supported")
    return np.dtype([(p.name, endian + p.dtype) for p in el.props])


def _values_per_line(joined: bytes) -> np.ndarray:
    """Number of whitespace-separated values on each line of ``joined`` (lines joined by b"\\n").

    Counts the values exactly as ``bytes.split()`` separates them (space, \\t, \\n, \\v, \\f, \\r), with
    NumPy over the bytes rather than a Python loop over the lines.
    """
    buf = np.frombuffer(joined, dtype=np.uint8)
    space = (buf == 32) | ((buf >= 9) & (buf <= 13))
    first = np.empty(len(buf), dtype=bool)  # first byte of each value
    first[:1] = ~space[:1]
    np.greater(space[:-1], space[1:], out=first[1:])
    starts = np.flatnonzero(first)
    before = np.searchsorted(starts, np.flatnonzero(buf == 10))  # values before each line's end
    return np.diff(before, prepend=0, append=len(starts))


def _parse_floats(path: Path, tokens: list[bytes], el: _Element) -> np.ndarray:
    """All values as float64; on failure, name the first non-numeric value, its property and line."""
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        pass
    nprops = len(el.props)
    for k, tok in enumerate(tokens):  # error path only
        try:
            float(tok)
        except ValueError:
            raise InputError(f"{path}: non-numeric value {tok.decode('ascii', 'replace')!r} for property "
                             f"{el.props[k % nprops].name!r} at vertex line {k // nprops + 1}") from None
    raise InputError(f"{path}: non-numeric value in the vertex data")


def _first_misfit(col: np.ndarray, prop: _Prop) -> tuple[int, str] | None:
    """First row of an ascii property column whose value does not fit the property's type, and why.

    Integer types take only finite integral values within the type's range (``2.0`` is 2, ``1.7`` is an
    error); float takes anything except a finite value beyond its range (it would become inf); double
    takes anything.
    """
    dt = np.dtype(prop.dtype)
    if dt.kind == "f":
        if dt.itemsize == 8:
            return None
        bad = (np.abs(col) > np.finfo(dt).max) & np.isfinite(col)
        return (int(np.argmax(bad)), f"outside the {_NAMES[prop.dtype]} range") if bad.any() else None
    info = np.iinfo(dt)
    ok = (col >= info.min) & (col <= info.max) & (col == np.floor(col))  # False for nan and inf
    if ok.all():
        return None
    row = int(np.argmin(ok))
    value = col[row]
    if not np.isfinite(value):
        return row, "not a finite number"
    if value != np.floor(value):
        return row, "not an integer"
    return row, f"outside {info.min}..{info.max}"


def _read_ascii_vertices(path: Path, data: bytes, body_start: int, elements: list[_Element],
                         vi: int, dtype: np.dtype) -> np.ndarray:
    """The vertex rows of an ascii body, one line per vertex, each with exactly one value per property.

    Blank lines are ignored. Errors count vertex lines from 1 at the first line of the vertex element
    ("vertex line 2" is the second vertex). Lines of other elements (list properties included) are only
    counted, one per item, to find the vertex lines.
    """
    lines = [line for line in data[body_start:].splitlines() if line.strip()]  # blank lines carry nothing
    skip = sum(e.count for e in elements[:vi])  # one line per item in ascii PLY
    el = elements[vi]
    rows = lines[skip:skip + el.count]
    if len(rows) < el.count:
        raise InputError(f"{path}: header declares {el.count} vertices but the body has {max(len(rows), 0)} vertex lines")
    if vi == len(elements) - 1:
        surplus = len(lines) - skip - el.count
        if surplus:
            raise InputError(f"{path}: header/count mismatch: header declares {el.count} vertices, "
                             f"the body has {el.count + surplus} lines")
    nprops = len(el.props)
    out = np.empty(el.count, dtype=dtype.newbyteorder("="))
    if el.count == 0:
        return out
    joined = b"\n".join(rows)
    per_line = _values_per_line(joined)
    wrong = np.flatnonzero(per_line != nprops)
    if len(wrong):
        i = int(wrong[0])
        raise InputError(f"{path}: vertex line {i + 1} has {per_line[i]} values, expected {nprops}")
    tokens = joined.split()
    values = _parse_floats(path, tokens, el).reshape(el.count, nprops)
    misfits = [(m[0], i, m[1]) for i, p in enumerate(el.props) if (m := _first_misfit(values[:, i], p))]
    if misfits:
        row, i, why = min(misfits)  # the first in file order
        p = el.props[i]
        value = tokens[row * nprops + i].decode("ascii", "replace")
        raise InputError(f"{path}: property {p.name!r} ({_NAMES[p.dtype]}) has value {value} "
                         f"at vertex line {row + 1}, {why}")
    for i, p in enumerate(el.props):
        out[p.name] = values[:, i]  # every value fits: no wrap, truncation or overflow
    return out


def read_ply(path: str | os.PathLike, allow_empty: bool = False) -> PointCloud:
    """Read a PLY file into a :class:`PointCloud`.

    Raises InputError naming the file and the problem for anything malformed: missing file, not a PLY,
    unknown type, truncated body, header/count mismatch, missing x/y/z, NaN/inf coordinates, and an
    empty cloud unless ``allow_empty``.
    """
    path = Path(path)
    data = read_bytes(path, "PLY file")
    fmt, elements, body_start = _parse_header(path, data)
    vi = next((i for i, e in enumerate(elements) if e.name == "vertex"), None)
    if vi is None:
        raise InputError(f"{path}: PLY has no 'vertex' element")
    el = elements[vi]
    endian = _FORMATS[fmt]
    dtype = _vertex_dtype(path, el, endian or "=")
    if endian is None:
        verts = _read_ascii_vertices(path, data, body_start, elements, vi, dtype)
    else:
        pos = body_start
        for e in elements[:vi]:
            pos = _skip_binary_element(path, data, pos, e, endian)
        need = dtype.itemsize * el.count
        if pos + need > len(data):
            have = (len(data) - pos) // max(dtype.itemsize, 1)
            raise InputError(f"{path}: truncated PLY body: header declares {el.count} vertices, "
                             f"the file holds {have}")
        verts = np.frombuffer(data, dtype=dtype, count=el.count, offset=pos)
        end = pos + need
        for e in elements[vi + 1:]:
            end = _skip_binary_element(path, data, end, e, endian)
        if len(data) - end >= max(dtype.itemsize, 1) and len(elements) == vi + 1:
            extra_rows = (len(data) - end) // dtype.itemsize
            raise InputError(f"{path}: header/count mismatch: header declares {el.count} vertices, "
                             f"the body holds at least {el.count + extra_rows}")
    if el.count == 0 and not allow_empty:
        raise InputError(f"{path}: empty point cloud (0 vertices)")
    return _to_cloud(path, verts, el)


def _to_cloud(path: Path, verts: np.ndarray, el: _Element) -> PointCloud:
    names = [p.name for p in el.props]
    for axis in "xyz":
        if axis not in names:
            raise InputError(f'{path}: PLY has no "{axis}" vertex property')
    points = np.empty((len(verts), 3), dtype=np.float64)
    for i, axis in enumerate("xyz"):
        points[:, i] = verts[axis]
    if not np.isfinite(points).all():
        bad = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
        raise InputError(f"{path}: non-finite coordinate at vertex {bad}: {points[bad].tolist()}")
    point_dtype = np.dtype(verts.dtype["x"]).newbyteorder("=").name
    colors = None
    if all(c in names for c in _COLOR):
        ctypes = {verts.dtype[c].kind + str(verts.dtype[c].itemsize) for c in _COLOR}
        if ctypes == {"u1"}:
            cdt = np.uint8
        elif ctypes <= {"u1", "u2"}:
            cdt = np.uint16
        else:
            raise InputError(f"{path}: colour properties must be uchar or ushort, got "
                             f"{[verts.dtype[c].name for c in _COLOR]}")
        colors = np.empty((len(verts), 3), dtype=cdt)
        for i, c in enumerate(_COLOR):
            colors[:, i] = verts[c]
    normals = None
    if all(c in names for c in _NORMAL):
        normals = np.empty((len(verts), 3), dtype=np.float32)
        for i, c in enumerate(_NORMAL):
            normals[:, i] = verts[c]
    used = set("xyz") | (set(_COLOR) if colors is not None else set()) | (set(_NORMAL) if normals is not None else set())
    extra = {n: np.ascontiguousarray(verts[n]).astype(verts.dtype[n].newbyteorder("="), copy=False)
             for n in names if n not in used}
    return PointCloud(points=points, colors=colors, normals=normals, extra=extra, point_dtype=point_dtype)


def _write_dtype(cloud: PointCloud, endian: str, point_dtype: str | None) -> np.dtype:
    pdt = np.dtype(point_dtype or cloud.point_dtype)
    fields = [(a, endian + pdt.str[1:]) for a in "xyz"]
    if cloud.normals is not None:
        fields += [(n, endian + "f4") for n in _NORMAL]
    if cloud.colors is not None:
        cdt = "u1" if cloud.colors.dtype == np.uint8 else "u2"
        fields += [(c, endian + cdt) for c in _COLOR]
    fields += [(n, endian + a.dtype.str[1:]) for n, a in cloud.extra.items()]
    return np.dtype(fields)


def ply_bytes(cloud: PointCloud, fmt: PlyFormat = PlyFormat.binary, point_dtype: str | None = None) -> bytes:
    """Serialise a cloud to PLY bytes. ``point_dtype`` overrides the on-disk type of x/y/z."""
    fmt = PlyFormat(fmt)
    endian = ">" if fmt == PlyFormat.binary_big_endian else "<"
    dtype = _write_dtype(cloud, endian, point_dtype)
    rec = np.empty(len(cloud), dtype=dtype)
    pdt = dtype["x"]
    if pdt.kind in "iu":
        info = np.iinfo(pdt)
        pts = np.rint(cloud.points)
        if len(pts) and (pts.min() < info.min or pts.max() > info.max):
            raise InputError(f"coordinates {pts.min()}..{pts.max()} do not fit PLY type {pdt.name}")
    else:
        pts = cloud.points
    for i, a in enumerate("xyz"):
        rec[a] = pts[:, i]
    if cloud.normals is not None:
        for i, n in enumerate(_NORMAL):
            rec[n] = cloud.normals[:, i]
    if cloud.colors is not None:
        for i, c in enumerate(_COLOR):
            rec[c] = cloud.colors[:, i]
    for n, a in cloud.extra.items():
        rec[n] = a
    fmt_name = {"binary": "binary_little_endian", "binary_big_endian": "binary_big_endian",
                "ascii": "ascii"}[fmt.value]
    header = ["ply", f"format {fmt_name} 1.0", "comment written by imcodec",
              f"element vertex {len(cloud)}"]
    header += [f"property {_NAMES[dtype[n].str[1:]]} {n}" for n in dtype.names]
    header.append("end_header\n")
    head = "\n".join(header).encode("ascii")
    if fmt != PlyFormat.ascii:
        return head + rec.tobytes()
    return head + _ascii_body(rec)


def _ascii_body(rec: np.ndarray) -> bytes:
    """Text rows; integer-valued floats print as integers, others as their shortest round-trip repr."""
    if len(rec) == 0:
        return b""
    cols = []
    for n in rec.dtype.names:
        col = rec[n]
        if col.dtype.kind == "f" and np.all(col == np.rint(col)) and np.all(np.abs(col) < 2.0 ** 53):
            col = col.astype(np.int64)
        cols.append(col.astype(str))
    return ("\n".join(map(" ".join, zip(*cols))) + "\n").encode("ascii")


def write_ply(cloud: PointCloud, path: str | os.PathLike, fmt: PlyFormat = PlyFormat.binary,
              point_dtype: str | None = None) -> None:
    """Write a cloud as PLY (binary little-endian by default), atomically (temp file + rename)."""
    data = ply_bytes(cloud, fmt, point_dtype)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)

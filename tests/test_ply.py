"""PLY reading/writing: every body format and numeric type, round trips, hand-built files, bad input."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imcodec.errors import InputError
from imcodec.io.ply import ply_bytes, read_ply, write_ply
from imcodec.types import PlyFormat, PointCloud

TYPES = ["float32", "float64", "int8", "int16", "int32", "uint8", "uint16", "uint32"]
PLY_NAME = {"float32": "float", "float64": "double", "int8": "char", "int16": "short", "int32": "int",
            "uint8": "uchar", "uint16": "ushort", "uint32": "uint"}


def _cloud(n=50, seed=0, colors=np.uint8, normals=True, extra=True):
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, 100, size=(n, 3)).astype(np.float64)
    cols = None if colors is None else rng.integers(0, np.iinfo(colors).max, size=(n, 3)).astype(colors)
    nrm = rng.normal(size=(n, 3)).astype(np.float32) if normals else None
    ex = {"reflectance": rng.integers(0, 1000, n).astype(np.uint16),
          "quality": rng.normal(size=n).astype(np.float64)} if extra else {}
    return PointCloud(points=pts, colors=cols, normals=nrm, extra=ex)


def _same(a: PointCloud, b: PointCloud):
    np.testing.assert_array_equal(a.points, b.points)
    for x, y in ((a.colors, b.colors), (a.normals, b.normals)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
    assert list(a.extra) == list(b.extra)
    for k in a.extra:
        np.testing.assert_array_equal(a.extra[k], b.extra[k])
        assert a.extra[k].dtype == b.extra[k].dtype


@pytest.mark.parametrize("fmt", list(PlyFormat))
@pytest.mark.parametrize("ptype", TYPES)
def test_round_trip_every_format_and_type(tmp_path, fmt, ptype):
    cloud = _cloud()
    path = tmp_path / "c.ply"
    write_ply(cloud, path, fmt, point_dtype=ptype)
    back = read_ply(path)
    assert back.point_dtype == ptype
    _same(cloud, back)
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert f"property {PLY_NAME[ptype]} x" in header


@pytest.mark.parametrize("fmt", list(PlyFormat))
def test_ushort_colors_and_no_attributes(tmp_path, fmt):
    for cloud in (_cloud(colors=np.uint16), _cloud(colors=None, normals=False, extra=False)):
        write_ply(cloud, tmp_path / "c.ply", fmt)
        _same(cloud, read_ply(tmp_path / "c.ply"))


def test_float_values_survive_ascii(tmp_path):
    pts = np.array([[0.1, 1e-7, 123456.789], [-3.5, 2.0 / 3.0, 1e10]])
    cloud = PointCloud(points=pts, point_dtype="float64")
    write_ply(cloud, tmp_path / "a.ply", PlyFormat.ascii)
    np.testing.assert_array_equal(read_ply(tmp_path / "a.ply").points, pts)


def _header(fmt, n, props, extra=""):
    lines = ["ply", f"format {fmt} 1.0", "comment made by hand", "obj_info test", f"element vertex {n}"]
    lines += [f"property {t} {name}" for t, name in props]
    return ("\n".join(lines) + "\n" + extra + "end_header\n").encode()


def test_hand_built_big_endian_with_face_element(tmp_path):
    # TMC13-like: float64 xyz, colours in g/b/r order, then an element "face" with a list property
    props = [("double", "x"), ("double", "y"), ("double", "z"), ("uchar", "green"), ("uchar", "blue"), ("uchar", "red")]
    face = "element face 2\nproperty list uchar int vertex_index\n"
    body = b""
    rows = [(1.0, 2.0, 3.0, 10, 20, 30), (4.0, 5.0, 6.5, 40, 50, 60)]
    for r in rows:
        body += struct.pack(">dddBBB", *r)
    body += struct.pack(">Biii", 3, 0, 1, 0) + struct.pack(">Bii", 2, 1, 0)
    path = tmp_path / "be.ply"
    path.write_bytes(_header("binary_big_endian", 2, props, face) + body)
    c = read_ply(path)
    np.testing.assert_array_equal(c.points, [[1, 2, 3], [4, 5, 6.5]])
    np.testing.assert_array_equal(c.colors, [[30, 10, 20], [60, 40, 50]])  # red, green, blue
    assert c.point_dtype == "float64"


def test_element_before_vertex_and_empty_face(tmp_path):
    props = [("float", "x"), ("float", "y"), ("float", "z")]
    lines = ["ply", "format binary_little_endian 1.0", "element camera 1", "property int id",
             "property list uchar float params", "element vertex 2"]
    lines += [f"property {t} {n}" for t, n in props]
    lines += ["element face 0", "property list uint8 int32 vertex_index", "end_header"]
    body = struct.pack("<iB", 7, 2) + struct.pack("<ff", 0.5, 0.25) + struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    path = tmp_path / "cam.ply"
    path.write_bytes(("\n".join(lines) + "\n").encode() + body)
    np.testing.assert_array_equal(read_ply(path).points, [[1, 2, 3], [4, 5, 6]])


def test_hand_built_ascii(tmp_path):
    text = ("ply\nformat ascii 1.0\ncomment x\nelement vertex 3\nproperty int x\nproperty int y\nproperty int z\n"
            "property ushort red\nproperty ushort green\nproperty ushort blue\nend_header\n"
            "1 2 3 1000 2000 3000\n4 5 6 0 0 65535\n\n7 8 9 1 1 1\n")
    (tmp_path / "a.ply").write_text(text)
    c = read_ply(tmp_path / "a.ply")
    assert c.colors.dtype == np.uint16 and c.point_dtype == "int32"
    np.testing.assert_array_equal(c.points[:, 0], [1, 4, 7])
    np.testing.assert_array_equal(c.colors[1], [0, 0, 65535])


BAD = {
    "not_ply": (b"hello world\n", "not a PLY"),
    "no_end": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", "end_header"),
    "no_format": (b"ply\nelement vertex 0\nproperty float x\nend_header\n", "format"),
    "bad_type": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n1\n", "unknown property type 'float128'"),
    "no_vertex": (b"ply\nformat ascii 1.0\nelement face 0\nproperty list uchar int v\nend_header\n", "no 'vertex' element"),
    "no_z": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n1 2\n", 'no "z"'),
    "truncated": (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                  b"property float z\nend_header\n" + b"\0" * 20, "truncated"),
    "too_many": (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                 b"property float z\nend_header\n" + b"\0" * 24, "mismatch"),
    "ascii_short": (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                    b"end_header\n1 2 3\n", "declares 3 vertices"),
    "ascii_long": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
                   b"end_header\n1 2 3\n4 5 6\n", "mismatch"),
    "ascii_text": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
                   b"end_header\n1 two 3\n", "non-numeric"),
    "nan": (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
            b"end_header\n1 2 3\nnan 0 0\n", "non-finite coordinate at vertex 1"),
    "inf": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
            b"end_header\ninf 0 0\n", "non-finite"),
    "empty": (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\n"
              b"end_header\n", "empty point cloud"),
    "neg_count": (b"ply\nformat ascii 1.0\nelement vertex -1\nproperty float x\nend_header\n", "negative count"),
    "bad_format": (b"ply\nformat binary_middle_endian 1.0\nelement vertex 0\nend_header\n", "unknown PLY format"),
    "float_color": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
                    b"property float red\nproperty float green\nproperty float blue\nend_header\n1 2 3 .1 .2 .3\n",
                    "uchar or ushort"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_and_problem(tmp_path, case):
    data, needle = BAD[case]
    path = tmp_path / f"{case}.ply"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_ply(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such"):
        read_ply(tmp_path / "nope.ply")
    with pytest.raises(InputError, match="is a directory"):
        read_ply(tmp_path)


def test_empty_allowed_when_asked(tmp_path):
    path = tmp_path / "e.ply"
    path.write_bytes(BAD["empty"][0])
    assert len(read_ply(path, allow_empty=True)) == 0


def test_write_is_atomic_on_failure(tmp_path):
    cloud = PointCloud(points=np.array([[300.0, 0, 0]]))
    target = tmp_path / "out.ply"
    target.write_bytes(b"previous")
    with pytest.raises(InputError, match="do not fit"):
        write_ply(cloud, target, point_dtype="uint8")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.ply"]


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_ply(_cloud(), tmp_path / "nodir" / "x.ply")


_VALID = {fmt: ply_bytes(_cloud(n=8, seed=3), fmt) for fmt in PlyFormat}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(list(PlyFormat)), data=st.data())
def test_fuzz_truncation_and_corruption(tmp_path, fmt, data):
    """Any truncation or byte corruption: the project's InputError or a valid cloud, never a crash."""
    raw = bytearray(_VALID[fmt])
    mode = data.draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if mode == "truncate":
        cut = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:cut]
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = (raw[i] ^ (1 << data.draw(st.integers(0, 7)))) if mode == "flip" else data.draw(st.integers(0, 255))
    path = tmp_path / "fuzz.ply"
    path.write_bytes(bytes(raw))
    try:
        cloud = read_ply(path)
    except InputError as exc:
        assert str(path) in str(exc)
        return
    # survived: must be a consistent cloud; a binary truncation can never survive
    assert not (mode == "truncate" and fmt != PlyFormat.ascii)
    assert np.isfinite(cloud.points).all() and cloud.points.shape[1] == 3


def test_written_file_has_umask_mode(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_ply(_cloud(), tmp_path / "m.ply")
    finally:
        os.umask(mask)
    assert (tmp_path / "m.ply").stat().st_mode & 0o777 == 0o644

"""PLY reading/writing: every body format and numeric type, round trips, hand-built files, bad input."""

from __future__ import annotations

import struct
import warnings

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



def _ascii(props, body, before="", after="", lead="", trail=""):
    """An ascii PLY with ``element vertex`` sized from the non-blank lines of ``body``; the header's
    ``before``/``after`` element lines go with the body's ``lead``/``trail`` lines."""
    n = sum(1 for line in body.splitlines() if line.strip())
    head = ["ply", "format ascii 1.0", before + f"element vertex {n}"]
    head += [f"property {t} {name}" for t, name in props]
    return ("\n".join(head) + "\n" + after + "end_header\n" + lead + body + trail).encode()


XYZ = [("float", "x"), ("float", "y"), ("float", "z")]
RGB = [("uchar", "red"), ("uchar", "green"), ("uchar", "blue")]


def test_ascii_rows_parsed_exactly(tmp_path):
    # odd whitespace, CRLF, blank lines, integer-valued floats and the limits of every integer type
    props = XYZ + RGB + [("char", "c"), ("short", "s"), ("int", "i"), ("uint", "u"), ("uint8", "u8")]
    body = (" 1 2 3   0 255 2.0\t-128 -32768 -2147483648 0 0 \r\n\n"
            "4.5\t-5 6e2 255 0 1 127 32767 2147483647 4294967295 255\r\n"
            "-0.25 1e-3 7 10 20 30 0 0 0 0 1e2\n")
    path = tmp_path / "ok.ply"
    path.write_bytes(_ascii(props, body))
    c = read_ply(path)
    rows = np.array([[1, 2, 3], [4.5, -5, 600], [-0.25, 1e-3, 7]], dtype=np.float32)
    np.testing.assert_array_equal(c.points, rows)
    np.testing.assert_array_equal(c.colors, [[0, 255, 2], [255, 0, 1], [10, 20, 30]])
    assert c.colors.dtype == np.uint8
    expect = {"c": ([-128, 127, 0], np.int8), "s": ([-32768, 32767, 0], np.int16),
              "i": ([-2147483648, 2147483647, 0], np.int32), "u": ([0, 4294967295, 0], np.uint32),
              "u8": ([0, 255, 100], np.uint8)}
    assert list(c.extra) == list(expect)
    for name, (vals, dt) in expect.items():
        np.testing.assert_array_equal(c.extra[name], vals)
        assert c.extra[name].dtype == dt


def test_ascii_rows_with_list_elements_around_the_vertices(tmp_path):
    # list lines of other elements have varying lengths; only the vertex lines are held to 3 values
    before = "element camera 2\nproperty list uchar float params\n"
    after = "element face 2\nproperty list uchar int vertex_index\n"
    path = tmp_path / "lists.ply"
    path.write_bytes(_ascii(XYZ, "1 2 3\n4 5 6\n", before, after, lead="3 0.5 0.25 1\n0\n",
                            trail="3 0 1 2\n4 0 1 2 0\n"))
    np.testing.assert_array_equal(read_ply(path).points, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(("body", "message"), [
    ("1 2 3\n4 5\n7 8 9 10\n", "vertex line 2 has 2 values, expected 3"),  # same total: was misread
    ("1 2 3 4\n5 6\n", "vertex line 1 has 4 values, expected 3"),
    ("\n1 2 3\n\n4 5 6\n7 8 9 1\n1 2\n", "vertex line 3 has 4 values, expected 3"),  # blank lines skipped
    ("1 2 3\n4\t5  \r\n", "vertex line 2 has 2 values, expected 3"),
], ids=["short_then_long_same_total", "long_then_short", "blank_lines_skipped", "tab_crlf"])
def test_ascii_vertex_line_value_count(tmp_path, body, message):
    path = tmp_path / "count.ply"
    path.write_bytes(_ascii(XYZ, body))
    with pytest.raises(InputError) as err:
        read_ply(path)
    assert str(err.value) == f"{path}: {message}"


def test_ascii_value_count_counted_from_first_vertex_line(tmp_path):
    before = "element camera 1\nproperty list uchar float params\n"
    path = tmp_path / "cam.ply"
    path.write_bytes(_ascii(XYZ, "1 2 3\n4 5 6 7\n", before, lead="2 0.5 0.25\n"))
    with pytest.raises(InputError) as err:
        read_ply(path)
    assert str(err.value) == f"{path}: vertex line 2 has 4 values, expected 3"


@pytest.mark.parametrize(("props", "body", "message"), [
    (XYZ + RGB, "1 2 3 300 0 0\n", "property 'red' (uchar) has value 300 at vertex line 1, outside 0..255"),
    (XYZ + RGB, "1 2 3 0 -5 0\n", "property 'green' (uchar) has value -5 at vertex line 1, outside 0..255"),
    (XYZ + RGB, "1 2 3 0 0 1.7\n", "property 'blue' (uchar) has value 1.7 at vertex line 1, not an integer"),
    (XYZ + RGB, "1 2 3 1 2 3\n1 2 3 3e2 0 0\n",
     "property 'red' (uchar) has value 3e2 at vertex line 2, outside 0..255"),
    (XYZ + RGB, "1 2 3 nan 0 0\n", "property 'red' (uchar) has value nan at vertex line 1, not a finite number"),
    (XYZ + RGB, "1 2 3 0 inf 0\n", "property 'green' (uchar) has value inf at vertex line 1, not a finite number"),
    (XYZ + RGB, "1 2 3 1 2 3\n1 2 3 0 0 256\n1 2 3 -1 0 0\n",  # the first bad value in file order
     "property 'blue' (uchar) has value 256 at vertex line 2, outside 0..255"),
    ([("uchar", "x"), ("uchar", "y"), ("uchar", "z")], "1000 0 0\n",
     "property 'x' (uchar) has value 1000 at vertex line 1, outside 0..255"),
    ([("uint8", "x"), ("uint8", "y"), ("uint8", "z")], "0 0 0\n-1 0 0\n",
     "property 'x' (uchar) has value -1 at vertex line 2, outside 0..255"),
    ([("int", "x"), ("int", "y"), ("int", "z")], "1.7 0 0\n",
     "property 'x' (int) has value 1.7 at vertex line 1, not an integer"),
    ([("int", "x"), ("int", "y"), ("int", "z")], "0 2147483648 0\n",
     "property 'y' (int) has value 2147483648 at vertex line 1, outside -2147483648..2147483647"),
    ([("char", "x"), ("short", "y"), ("uint", "z")], "-129 0 0\n",
     "property 'x' (char) has value -129 at vertex line 1, outside -128..127"),
    ([("char", "x"), ("short", "y"), ("uint", "z")], "0 40000 0\n",
     "property 'y' (short) has value 40000 at vertex line 1, outside -32768..32767"),
    ([("char", "x"), ("short", "y"), ("uint", "z")], "0 0 4294967296\n",
     "property 'z' (uint) has value 4294967296 at vertex line 1, outside 0..4294967295"),
    ([("ushort", "x"), ("float", "y"), ("float", "z")], "1 2 3\n0.5 0 0\n",
     "property 'x' (ushort) has value 0.5 at vertex line 2, not an integer"),
    (XYZ, "1 1e39 0\n", "property 'y' (float) has value 1e39 at vertex line 1, outside the float range"),
    (XYZ, "1 two 3\n", "non-numeric value 'two' for property 'y' at vertex line 1"),
], ids=["red_300", "green_-5", "blue_1.7", "red_3e2_line2", "red_nan", "green_inf", "first_in_file_order",
        "uchar_x_1000", "uint8_x_-1", "int_x_1.7", "int_2^31", "char_-129", "short_40000", "uint_2^32",
        "ushort_0.5", "float_1e39", "non_numeric"])
def test_ascii_value_outside_declared_type(tmp_path, capfd, props, body, message):
    path = tmp_path / "range.ply"
    path.write_bytes(_ascii(props, body))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would surface here instead of InputError
        with pytest.raises(InputError) as err:
            read_ply(path)
    assert str(err.value) == f"{path}: {message}"
    assert capfd.readouterr().err == ""


def test_ascii_extremes_read_without_warnings(tmp_path, capfd):
    props = [("double", "x"), ("float", "y"), ("float", "z"), ("float", "q")]
    path = tmp_path / "ext.ply"
    path.write_bytes(_ascii(props, "1e300 3.4e38 -3.4e38 nan\n1 1e-50 0 inf\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = read_ply(path)
    np.testing.assert_array_equal(c.points, [[1e300, np.float32(3.4e38), np.float32(-3.4e38)], [1, 0, 0]])
    np.testing.assert_array_equal(c.extra["q"], np.array([np.nan, np.inf], dtype=np.float32))
    assert capfd.readouterr().err == ""

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

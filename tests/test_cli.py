"""CLI behaviour: version, help, exit codes, one-line errors, info/convert, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from imcodec.io.ply import read_ply, write_ply
from imcodec.types import PointCloud


def test_version_and_help(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and out.startswith("imcodec ")
    code, out, _ = run_cli("--help")
    assert code == 0
    for cmd in ("info", "metrics", "bdrate", "synth", "convert"):
        assert cmd in out


def test_help_imports_no_heavy_modules():
    code = ("import sys; from imcodec.cli import app; "
            "heavy = [m for m in ('numpy', 'numba', 'torch', 'open3d', 'scipy', 'matplotlib') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_usage_errors_exit_2_one_line(run_cli):
    code, _, err = run_cli("info", "--bogus")
    assert code == 2 and err.count("\n") == 1 and "--bogus" in err
    code, _, err = run_cli("synth", "-o", "x.ply", "--shape", "cube")
    assert code == 2 and "cube" in err and "Traceback" not in err
    code, _, err = run_cli("metrics", "a.ply")
    assert code == 2 and err.count("\n") == 1


def test_data_errors_exit_1_one_line(run_cli, tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"not a ply at all")
    code, _, err = run_cli("info", bad)
    assert code == 1 and err.count("\n") == 1 and "not a PLY" in err and str(bad) in err
    code, _, err = run_cli("info", tmp_path / "missing.ply")
    assert code == 1 and "no such file" in err


def test_debug_shows_traceback(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"junk")
    proc = subprocess.run([sys.executable, "-m", "imcodec.cli", "--debug", "info", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "InputError" in proc.stderr


def test_info_json(run_cli, tmp_path):
    pts = np.array([[0, 0, 0], [1023, 5, 7], [1023, 5, 7], [3, 4, 5]], dtype=np.float64)
    cols = np.array([[1, 2, 3]] * 4, dtype=np.uint8)
    write_ply(PointCloud(points=pts, colors=cols), tmp_path / "c.ply")
    code, out, _ = run_cli("info", tmp_path / "c.ply", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["points"] == 4 and d["duplicates"] == 1 and d["bit_depth"] == 10
    assert d["bbox_max"] == [1023, 5, 7] and d["attributes"] == ["rgb (uint8)"]
    code, out, _ = run_cli("info", tmp_path / "c.ply")  # the table shows the same, lists included
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "1023" in rows["bbox_max"] and "rgb (uint8)" in rows["attributes"] and "4" in rows["points"]


def test_info_sequence(run_cli, tmp_path):
    for i in range(3):
        write_ply(PointCloud(points=np.full((i + 1, 3), float(i))), tmp_path / f"s_{i:03d}.ply")
    code, out, _ = run_cli("info", str(tmp_path / "s_%03d.ply"), "--start", "0", "--count", "2", "--json")
    d = json.loads(out)
    assert code == 0 and d["count"] == 2 and [f["points"] for f in d["frames"]] == [1, 2]


def test_convert_file_and_sequence(run_cli, tmp_path):
    src = tmp_path / "in.ply"
    cloud = PointCloud(points=np.arange(30, dtype=np.float64).reshape(10, 3),
                       extra={"intensity": np.arange(10, dtype=np.uint16)})
    write_ply(cloud, src)
    code, _, _ = run_cli("convert", src, tmp_path / "out.ply", "--ascii", "--point-type", "int32")
    assert code == 0
    text = (tmp_path / "out.ply").read_bytes()
    assert b"format ascii" in text and b"property int x" in text
    back = read_ply(tmp_path / "out.ply")
    np.testing.assert_array_equal(back.points, cloud.points)
    np.testing.assert_array_equal(back.extra["intensity"], cloud.extra["intensity"])
    code, _, _ = run_cli("convert", str(tmp_path / "*.ply"), tmp_path / "outdir")
    assert code == 0 and sorted(p.name for p in (tmp_path / "outdir").iterdir()) == ["in.ply", "out.ply"]
    code, _, err = run_cli("convert", src, tmp_path / "x.ply", "--point-type", "float16")
    assert code == 2 and "float16" in err
    code, _, err = run_cli("convert", src, src)
    assert code == 2 and "overwrite" in err


def test_convert_to_an_integer_type_refuses_to_round_silently(run_cli, tmp_path):
    src = tmp_path / "f.ply"
    write_ply(PointCloud(points=np.array([[1.0, 2.0, 3.0], [1.5, 2.0, 3.25], [0.5, 0.0, 0.0]])), src)
    out = tmp_path / "i.ply"
    code, _, err = run_cli("convert", src, out, "--point-type", "int32")
    assert code != 0 and not out.exists()
    assert "point 1 (1.5, 2.0, 3.25) is not on the integer grid (2 such points)" in err and "--round" in err
    code, _, _ = run_cli("convert", src, out, "--point-type", "int32", "--round")
    assert code == 0
    np.testing.assert_array_equal(read_ply(out).points, np.rint(read_ply(src).points))

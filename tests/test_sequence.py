"""Sequence specs: directory, glob, printf pattern, single file; ordering by frame number; errors."""

from __future__ import annotations

import numpy as np
import pytest

from imcodec.errors import InputError, UsageError
from imcodec.io.ply import write_ply
from imcodec.io.sequence import frame_number, resolve_frames
from imcodec.types import PointCloud


@pytest.fixture
def seq_dir(tmp_path):
    cloud = PointCloud(points=np.zeros((1, 3)))
    # written out of order, with numbers of different widths, plus a non-PLY file
    for i in (10, 9, 100, 11):
        write_ply(cloud, tmp_path / f"frame_q08_{i:04d}.ply")
    (tmp_path / "notes.txt").write_text("x")
    return tmp_path


def test_frame_number():
    assert frame_number("soldier_q08_0536.ply") == 536
    assert frame_number("basketball_player_00000002_vox10.ply") == 2
    assert frame_number("/a/b7/c.ply") is None


def test_number_that_varies_wins(tmp_path):
    cloud = PointCloud(points=np.zeros((1, 3)))
    for i in (2, 1, 3):
        write_ply(cloud, tmp_path / f"player_{i}_vox10.ply")  # the constant "10" is not the frame number
    assert [f.index for f in resolve_frames(tmp_path)] == [1, 2, 3]


def test_directory_sorted_by_number(seq_dir):
    frames = resolve_frames(seq_dir)
    assert [f.index for f in frames] == [9, 10, 11, 100]
    assert all(f.path.suffix == ".ply" for f in frames)


def test_glob_and_window(seq_dir):
    frames = resolve_frames(str(seq_dir / "frame_*.ply"), start=10, count=2)
    assert [f.index for f in frames] == [10, 11]


def test_printf_pattern(seq_dir):
    pattern = str(seq_dir / "frame_q08_%04d.ply")
    assert [f.index for f in resolve_frames(pattern, start=9, count=3)] == [9, 10, 11]
    assert [f.index for f in resolve_frames(pattern, start=9)] == [9, 10, 11]  # stops at the first gap
    with pytest.raises(InputError, match="asked for 4 frames"):
        resolve_frames(pattern, start=9, count=4)
    with pytest.raises(InputError, match="no frame found"):
        resolve_frames(pattern, start=500)


def test_single_file(seq_dir):
    frames = resolve_frames(seq_dir / "frame_q08_0100.ply")
    assert len(frames) == 1 and frames[0].index == 100


@pytest.mark.parametrize("spec, err, needle", [
    ("a_%d_%d.ply", UsageError, "exactly one"),
    ("a_%s.ply", UsageError, "exactly one"),
    ("/no/such/dir/x_*.ply", InputError, "no file matches"),
    ("/no/such/file.ply", InputError, "no such file"),
])
def test_bad_specs(spec, err, needle):
    with pytest.raises(err, match=needle):
        resolve_frames(spec)


def test_bad_window(seq_dir):
    with pytest.raises(UsageError, match="--count"):
        resolve_frames(seq_dir, count=0)
    with pytest.raises(InputError, match="window"):
        resolve_frames(seq_dir, start=1000)


def test_empty_directory(tmp_path):
    with pytest.raises(InputError, match="no .ply files"):
        resolve_frames(tmp_path)

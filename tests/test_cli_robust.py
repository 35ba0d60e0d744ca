"""Bad input and awkward outputs: one-line errors, no partial or misplaced outputs (audit findings)."""

from __future__ import annotations

import os
import stat
import tempfile
import threading

import numpy as np
import pytest

from imcodec.errors import InputError
from imcodec.io.bitstream import parse_stream
from imcodec.io.files import atomic_output, staged_outputs, write_bytes_atomic
from imcodec.io.ply import read_ply, write_ply
from imcodec.synth import make_sequence
from imcodec.types import PointCloud


def _cloud(n: int = 200, seed: int = 0) -> PointCloud:
    rng = np.random.default_rng(seed)
    return PointCloud(points=np.unique(rng.integers(0, 32, (n, 3)), axis=0).astype(np.float64))


def test_output_through_a_symlink_replaces_its_target(tmp_path):
    target = tmp_path / "target.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    write_bytes_atomic(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_output_onto_a_fifo_writes_into_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    write_bytes_atomic(fifo, b"payload" * 1000)
    reader.join(timeout=10)
    assert got == [b"payload" * 1000]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not replaced by a regular file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_unwritable_output_is_a_one_line_input_error(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(InputError, match=r"out\.bin: cannot write \(Permission denied\)"):
        write_bytes_atomic(tmp_path / "out.bin", b"x")
    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(InputError, match="cannot write"):
        with atomic_output(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []  # the temp file is gone too


def test_staged_outputs_leave_nothing_on_failure(tmp_path):
    out = tmp_path / "new" / "frames"
    with pytest.raises(RuntimeError):
        with staged_outputs(out) as stage:
            (stage / "a.ply").write_bytes(b"1")
            raise RuntimeError("boom")
    assert not out.exists()
    keep = tmp_path / "kept"
    keep.mkdir()
    (keep / "other.txt").write_text("mine")
    with staged_outputs(keep) as stage:
        (stage / "a.ply").write_bytes(b"1")
    assert sorted(p.name for p in keep.iterdir()) == ["a.ply", "other.txt"]


def _octree_sequence(tmp_path, run_cli):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, cloud in enumerate(make_sequence("torus", bits=6, frames=3, motion="rigid", color=False, seed=1)):
        write_ply(cloud, folder / f"f_{i:04d}.ply")
    stream = tmp_path / "seq.imc"
    code, _, err = run_cli("-q", "encode", folder, "-o", stream)
    assert code == 0, err
    return stream


def test_failed_multi_frame_decode_leaves_no_frames(tmp_path, run_cli):
    stream = _octree_sequence(tmp_path, run_cli)
    data = bytearray(stream.read_bytes())
    _, entries = parse_stream(bytes(data))
    last = entries[-1]
    data[last.offset + last.length - 1] ^= 0x55  # damage the last frame only
    bad = tmp_path / "bad.imc"
    bad.write_bytes(bytes(data))
    out = tmp_path / "decoded"
    code, _, err = run_cli("decode", bad, "-o", out)
    assert code == 1 and err.startswith("imcodec: error:") and err.count("\n") == 1
    assert not out.exists()
    code, _, err = run_cli("-q", "decode", stream, "-o", out)
    assert code == 0 and len(list(out.glob("*.ply"))) == 3 and not list(out.glob(".*"))


def test_outputs_never_replace_their_input(tmp_path, run_cli):
    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    stream = tmp_path / "a.imc"
    assert run_cli("-q", "encode", src, "-o", stream)[0] == 0
    before = stream.read_bytes()
    code, _, err = run_cli("decode", stream, "-o", stream)
    assert code == 2 and "would overwrite its input" in err and stream.read_bytes() == before
    for cmd in ("upsample", "restore"):
        code, _, err = run_cli(cmd, src, "-o", src)
        assert code == 2 and "would overwrite its input" in err, (cmd, err)


@pytest.mark.parametrize("value", ["0", "-1", "5000"])
def test_threads_out_of_range_is_a_usage_error(tmp_path, run_cli, value):
    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    for cmd in ("upsample", "restore"):
        code, _, err = run_cli(cmd, src, "-o", tmp_path / "o.ply", "--threads", value)
        assert code == 2 and f"--threads must be 1..256, got {value}" in err, (cmd, err)
    assert not (tmp_path / "o.ply").exists()


def test_training_options_checked_before_training(tmp_path, run_cli):
    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    base = ("train", "upsample", "--data", src, "--no-synth", "--epochs", "1", "--steps-per-epoch", "1")
    code, _, err = run_cli(*base, "-o", tmp_path / "t.pt", "--lr", "-1")
    assert code == 2 and "--lr must be a positive number" in err
    code, _, err = run_cli(*base, "-o", tmp_path / "nodir" / "t.pt")
    assert code == 2 and "does not exist" in err and "epoch" not in err
    code, _, err = run_cli(*base, "-o", tmp_path / "t.pt", "--resume")
    assert code == 2 and "--resume needs --checkpoint-dir" in err
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run_cli(*base, "-o", tmp_path / "t.pt", "--checkpoint-dir", ck, "--resume")
    assert code == 1 and "not a readable training checkpoint" in err and err.count("\n") == 1


def test_huge_coordinates_fail_fast(tmp_path, run_cli):
    src = tmp_path / "huge.ply"
    write_ply(PointCloud(points=np.array([[1.0, 2.0, 3.0], [1e19, 5.0, 6.0]])), src)
    code, _, err = run_cli("encode", src, "-o", tmp_path / "v.imc", "--codec", "vpcc", "--rate", "r5")
    assert code == 1 and "spans 1e+19 units" in err and not (tmp_path / "v.imc").exists()
    for cmd in ("upsample", "restore"):
        code, _, err = run_cli(cmd, src, "-o", tmp_path / "o.ply")
        assert code == 1 and "coordinates too large" in err, (cmd, err)
        assert not (tmp_path / "o.ply").exists()


@pytest.mark.parametrize("points", [[[3, 4, 5]], [[3, 4, 5]] * 3, [[0, 0, 0], [0, 0, 5]]])
def test_render_degenerate_clouds(tmp_path, run_cli, points):
    src = tmp_path / "p.ply"
    write_ply(PointCloud(points=np.array(points, dtype=np.float64)), src)
    out = tmp_path / "p.png"
    code, _, err = run_cli("-q", "render", src, "-o", out, "--size", "16")
    assert code == 0, err
    assert out.stat().st_size > 0


def test_errors_start_the_first_line_of_stderr(tmp_path, run_cli):
    folder = tmp_path / "seq"
    folder.mkdir()
    write_ply(_cloud(seed=1), folder / "f_0000.ply")
    write_ply(PointCloud(points=np.array([[-1.0, 2.0, 3.0]])), folder / "f_0001.ply")
    code, _, err = run_cli("encode", folder, "-o", tmp_path / "s.imc")
    assert code == 1 and err.startswith("imcodec: error:"), repr(err)
    assert not (tmp_path / "s.imc").exists()
    assert read_ply(folder / "f_0000.ply") is not None


def test_contradictory_flags_are_usage_errors(tmp_path, run_cli):
    src = tmp_path / "a.ply"
    cloud = _cloud()
    write_ply(PointCloud(points=cloud.points, colors=np.full((len(cloud), 3), 90, np.uint8)), src)
    code, _, err = run_cli("encode", src, "-o", tmp_path / "o.imc", "--lossless-color", "--attr-qp", "30")
    assert code == 2 and "--lossless-color and --attr-qp 30 exclude each other" in err
    code, _, err = run_cli("encode", src, "-o", tmp_path / "o.imc", "--codec", "vpcc", "--attr-qp", "30",
                           "--attribute-qp", "40")
    assert code == 2 and "--attribute-qp 40 and its alias --attr-qp 30 disagree" in err
    code, _, err = run_cli("convert", src, tmp_path / "c.ply", "--ascii", "--format", "binary_big_endian")
    assert code == 2 and "--ascii and --format binary_big_endian exclude each other" in err
    assert not list(tmp_path.glob("o.imc")) and not (tmp_path / "c.ply").exists()
    assert run_cli("-q", "convert", src, tmp_path / "c.ply", "--ascii", "--format", "ascii")[0] == 0
    assert (tmp_path / "c.ply").read_bytes().startswith(b"ply\nformat ascii")


def test_non_finite_weights_are_rejected(tmp_path):
    import torch

    from imcodec.learned.zoo import load_upsampler, payload_bytes, read_weights, shipped_weights

    payload = read_weights(shipped_weights(4))
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], float("nan"))
    bad = tmp_path / "nan.pt"
    bad.write_bytes(payload_bytes(payload))  # as a diverged training run writes it: the digest matches
    with pytest.raises(InputError, match=f"nan.pt: weights hold non-finite values \\(in '{name}'\\)"):
        load_upsampler(4, bad)


def test_input_spec_edge_cases(tmp_path, run_cli):
    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    code, _, err = run_cli("encode", "", "-o", tmp_path / "o.imc")
    assert code == 2 and "empty input path" in err
    code, _, err = run_cli("encode", src, "-o", tmp_path / "o.imc", "--start", "3", "--count", "5")
    assert code == 2 and "--start/--count select frames of a sequence" in err
    assert not (tmp_path / "o.imc").exists()
    fifo = tmp_path / "pipe.ply"  # what a shell's <(...) gives
    os.mkfifo(fifo)
    feeder = threading.Thread(target=lambda: fifo.write_bytes(src.read_bytes()), daemon=True)
    feeder.start()
    code, _, err = run_cli("-q", "encode", fifo, "-o", tmp_path / "p.imc")
    feeder.join(timeout=10)
    assert code == 0, err
    code, _, err = run_cli("-q", "decode", tmp_path / "p.imc", "-o", tmp_path / "p.ply")
    assert code == 0 and np.array_equal(np.unique(read_ply(tmp_path / "p.ply").points, axis=0),
                                        np.unique(_cloud().points, axis=0))


def test_output_to_stdout_in_a_pipeline(tmp_path):
    import subprocess
    import sys

    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    cli = [sys.executable, "-m", "imcodec.cli", "-q"]
    subprocess.run(cli + ["encode", str(src), "-o", str(tmp_path / "a.imc")], check=True, capture_output=True)
    piped = subprocess.run(cli + ["encode", str(src), "-o", "/dev/stdout"], check=True, capture_output=True)
    assert piped.stdout == (tmp_path / "a.imc").read_bytes()  # the stream only: the summary went to stderr
    assert b"encoded 1 frame" in piped.stderr
    with open(tmp_path / "redirected.imc", "wb") as f:  # `> file`: /dev/stdout is that file
        subprocess.run(cli + ["encode", str(src), "-o", "/dev/stdout", "--json"], check=True, stdout=f,
                       stderr=subprocess.PIPE)
    assert (tmp_path / "redirected.imc").read_bytes() == piped.stdout
    ply = subprocess.run(cli + ["decode", str(tmp_path / "a.imc"), "-o", "/dev/stdout"], check=True,
                         capture_output=True).stdout
    (tmp_path / "out.ply").write_bytes(ply)
    assert len(read_ply(tmp_path / "out.ply")) == len(_cloud())


def test_ctrl_c_says_interrupted(tmp_path, run_cli, monkeypatch):
    from imcodec import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "info", interrupted)
    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    code, _, err = run_cli("info", src)
    assert code == 130 and err == "imcodec: interrupted\n"


def test_missing_torch_is_named(tmp_path, run_cli, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)

    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    code, _, err = run_cli("upsample", src, "-o", tmp_path / "o.ply")
    assert code == 1 and err.count("\n") == 1
    assert "needs torch" in err and "pip install torch==2.13.0" in err


def test_frame_selection_edge_cases(tmp_path, run_cli):
    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    stream = tmp_path / "a.imc"
    assert run_cli("-q", "encode", src, "-o", stream)[0] == 0
    for spec in ("-1", "-2:", ":-1"):
        code, _, err = run_cli("decode", stream, "-o", tmp_path / "o.ply", "--frames", spec)
        assert code == 2 and "not negative" in err, (spec, err)
    code, _, err = run_cli("info", stream, "--count", "1")
    assert code == 2 and "--start/--count select frames of a PLY sequence" in err


def test_synth_and_motion_outputs_do_not_mix_with_older_runs(tmp_path, run_cli):
    code, _, err = run_cli("-q", "synth", "-o", f"{tmp_path / 'one'}/", "--bits", "5")
    assert code == 0 and (tmp_path / "one" / "sphere_0000.ply").is_file()
    seq = tmp_path / "seq"
    assert run_cli("-q", "synth", "-o", seq, "--bits", "5", "--frames", "3")[0] == 0
    code, _, err = run_cli("synth", "-o", seq, "--bits", "5", "--frames", "2")
    assert code == 2 and "sphere_0002.ply" in err and "use an empty folder" in err
    assert run_cli("-q", "synth", "-o", seq, "--bits", "5", "--frames", "3", "--seed", "1")[0] == 0  # same names
    hints = tmp_path / "hints"
    hints.mkdir()
    (hints / "hints_0007.csv").write_text("old")
    code, _, err = run_cli("motion", seq, "--out", hints, "--rate", "r1")
    assert code == 2 and "hints_0007.csv" in err


def test_trailing_slash_means_a_folder(tmp_path, run_cli):
    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    stream = tmp_path / "a.imc"
    assert run_cli("-q", "encode", src, "-o", stream)[0] == 0
    code, _, err = run_cli("-q", "decode", stream, "-o", f"{tmp_path / 'out'}/")
    assert code == 0 and [p.name for p in (tmp_path / "out").iterdir()] == ["a_0000.ply"]


def test_damaged_stream_errors_name_the_stream(tmp_path, run_cli):
    src = tmp_path / "a.ply"
    write_ply(_cloud(), src)
    stream = tmp_path / "a.imc"
    code, _, err = run_cli("encode", src, "-o", stream)
    assert code == 0, err
    data = stream.read_bytes()
    cut = tmp_path / "cut.imc"
    cut.write_bytes(data[: len(data) - 7])
    flipped = tmp_path / "flip.imc"
    arr = bytearray(data)
    arr[-3] ^= 0x40
    flipped.write_bytes(bytes(arr))
    for bad in (cut, flipped):
        for args in (("info", bad), ("decode", bad, "-o", tmp_path / "o.ply")):
            code, _, err = run_cli(*args)
            assert code == 1 and err.startswith(f"imcodec: error: {bad}: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o.ply").exists()

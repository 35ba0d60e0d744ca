"""bench config parsing and the bad-input checks that must fire before any work starts."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from imcodec.bench.config import load_config, parse_config
from imcodec.bench.runner import plan, run
from imcodec.errors import InputError, UsageError
from imcodec.io.ply import write_ply
from imcodec.types import PointCloud

OCTREE = """
[codecs.octree]
options = { attr_qp = 40 }
rates = { r01 = { scale = 0.25 }, r02 = { scale = 0.5, attr_qp = 34 } }
"""


def _write(tmp_path, text: str, name: str = "bench.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _synth_config(tmp_path, extra: str = "", codecs: str = OCTREE) -> str:
    return f"""
[bench]
cache_dir = "{tmp_path / 'cache'}"
{extra}

[[sequences]]
name = "sph"
synth = {{ shape = "sphere", bits = 6, frames = 2, seed = 3 }}
{codecs}
"""


def test_parse_full_config(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (10, 11, 12):
        write_ply(PointCloud(points=np.full((2, 3), float(i))), frames / f"f_{i:04d}.ply")
    cfg = load_config(_write(tmp_path, f"""
[bench]
out = "res.csv"
bits = 10
color = false
workers = 3

[[sequences]]
name = "real"
path = "frames/f_%04d.ply"
start = 11
count = 2

[[sequences]]
name = "synthetic"
synth = {{ shape = "body", bits = 7, frames = 3, seed = 5, color = false, motion = "wave" }}
peak = 255
{OCTREE}
[codecs.second]
codec = "octree"
rates = {{ lossless = {{ lossless = true }} }}
"""))
    assert cfg.out == tmp_path / "res.csv" and cfg.peak == 1023.0 and cfg.color == "off" and cfg.workers == 3
    real, syn = cfg.sequences
    assert real.path == str(tmp_path / "frames/f_%04d.ply") and (real.start, real.count) == (11, 2)
    assert real.peak is None and syn.peak == 255.0
    assert syn.synth.shape == "body" and syn.synth.bits == 7 and syn.synth.motion == "wave" and not syn.synth.color
    octree, second = cfg.codecs
    assert octree.label == "octree" and second.codec == "octree"
    # rate options override the codec's common options
    assert octree.rates[0].as_dict() == {"attr_qp": 40, "scale": 0.25}
    assert octree.rates[1].as_dict() == {"attr_qp": 34, "scale": 0.5}
    p = plan(cfg)
    assert [(t.sequence, t.frame) for t in p.tasks[:3]] == [("real", 11), ("real", 11), ("real", 11)]
    assert len(p.tasks) == (2 + 3) * 3
    assert p.tasks[0].peak == 1023.0  # [bench] bits applies to the file sequence
    synth_peaks = {t.peak for t in p.tasks if t.sequence == "synthetic"}
    assert synth_peaks == {255.0}


def test_synth_peak_defaults_to_bit_depth(tmp_path):
    cfg = parse_config({"sequences": [{"name": "s", "synth": {"bits": 6}}],
                        "codecs": {"octree": {"rates": {"a": {"scale": 0.5}}}}})
    assert cfg.sequences[0].peak == 63.0 and cfg.color == "auto"


@pytest.mark.parametrize("text, match", [
    ("[bench]\nbogus = 1\n", "'bogus'"),
    ("[[sequences]]\nname = 's'\n", "exactly one of path or synth"),
    ("[[sequences]]\nname = 's'\nsynth = { shape = 'cube' }\n", "'cube'"),
    ("[[sequences]]\nname = 's'\nsynth = { bits = 2 }\n", "bits must be an integer in 3..16"),
    ("[[sequences]]\nname = 'a'\nsynth = {}\n[[sequences]]\nname = 'a'\nsynth = {}\n", "two sequences are named 'a'"),
    ("[bench]\npeak = 10\nbits = 3\n", "both peak and bits"),
    ("[bench]\ncolor = 'maybe'\n", "color must be"),
    ("[codecs.x]\nrates = {}\n", "needs rates"),
    ("[codecs.x]\nrates = { a = { scale = [1, 2] } }\n", "must be a number, string or boolean"),
    ("this is = not toml =", "not valid TOML"),
])
def test_config_usage_errors(tmp_path, text, match):
    base = "[[sequences]]\nname = 'ok'\nsynth = {}\n" if "sequences" not in text else ""
    codecs = "" if "codecs" in text else OCTREE
    body = text if "not toml" in text else (text + "\n" + base + codecs)
    with pytest.raises(UsageError, match=match):
        load_config(_write(tmp_path, body))


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="no such benchmark config"):
        load_config(tmp_path / "nope.toml")


def _no_work_done(tmp_path):
    assert not (tmp_path / "cache").exists(), "synthetic frames were generated before the error"
    assert not list(tmp_path.glob("*.csv")), "a results file was written before the error"


def test_unknown_codec_before_work(tmp_path):
    cfg = _write(tmp_path, _synth_config(tmp_path, codecs="[codecs.mine]\ncodec = 'jpeg9'\nrates = { a = {} }\n"))
    with pytest.raises(UsageError, match="unknown codec 'jpeg9'.*available: .*octree"):
        run(cfg, out=tmp_path / "r.csv")
    _no_work_done(tmp_path)


def test_bad_codec_option_before_work(tmp_path):
    codecs = "[codecs.octree]\nrates = { r1 = { scale = 0.5 }, r2 = { rate = 'r3' } }\n"
    with pytest.raises(UsageError, match="codec 'octree' rate 'r2'.*--rate"):
        run(_write(tmp_path, _synth_config(tmp_path, codecs=codecs)), out=tmp_path / "r.csv")
    codecs = "[codecs.octree]\nrates = { r1 = { scale = 99.0 } }\n"
    with pytest.raises(UsageError, match="rate 'r1'.*scale"):
        run(_write(tmp_path, _synth_config(tmp_path, codecs=codecs)), out=tmp_path / "r.csv")
    _no_work_done(tmp_path)


def test_missing_sequence_before_work(tmp_path):
    text = _synth_config(tmp_path) + f"\n[[sequences]]\nname = 'gone'\npath = '{tmp_path / 'nothing' / 'x_%04d.ply'}'\n"
    with pytest.raises(InputError, match="sequence 'gone'.*no frame found"):
        run(_write(tmp_path, text), out=tmp_path / "r.csv")
    text = _synth_config(tmp_path) + f"\n[[sequences]]\nname = 'gone'\npath = '{tmp_path / 'missing_dir'}'\n"
    with pytest.raises(InputError, match="sequence 'gone'.*no such file"):
        run(_write(tmp_path, text), out=tmp_path / "r.csv")
    _no_work_done(tmp_path)


def test_overlapping_outputs_before_work(tmp_path):
    frame = tmp_path / "in_0001.ply"
    write_ply(PointCloud(points=np.zeros((1, 3))), frame)
    text = _synth_config(tmp_path) + f"\n[[sequences]]\nname = 'file'\npath = '{frame}'\n"
    cfg = _write(tmp_path, text)
    with pytest.raises(UsageError, match="would overwrite frame"):
        run(cfg, out=frame)
    with pytest.raises(UsageError, match="would overwrite the config file"):
        run(cfg, out=cfg)
    # an input inside the results' part folder
    parts = tmp_path / "res.csv.parts"
    parts.mkdir()
    write_ply(PointCloud(points=np.zeros((1, 3))), parts / "p_0001.ply")
    cfg2 = _write(tmp_path, _synth_config(tmp_path) + f"\n[[sequences]]\nname = 'p'\npath = '{parts}'\n", "b2.toml")
    with pytest.raises(UsageError, match="part folder"):
        run(cfg2, out=tmp_path / "res.csv")
    with pytest.raises(UsageError, match="is a directory"):
        run(cfg, out=tmp_path)
    assert not (tmp_path / "cache").exists()


def test_unreachable_scheduler_before_work(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    cfg = _write(tmp_path, _synth_config(tmp_path, extra="scheduler_timeout = 1.5"))
    t0 = time.monotonic()
    with pytest.raises(UsageError, match=f"cannot reach the Dask scheduler tcp://127.0.0.1:{port} within 1.5 s"):
        run(cfg, out=tmp_path / "r.csv", scheduler=f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - t0 < 20
    with pytest.raises(UsageError, match="expected an address"):
        run(cfg, out=tmp_path / "r.csv", scheduler="127.0.0.1:8786")
    with pytest.raises(UsageError, match="either --workers or --scheduler"):
        run(cfg, out=tmp_path / "r.csv", scheduler=f"tcp://127.0.0.1:{port}", workers=2)
    _no_work_done(tmp_path)


def test_scheduler_without_workers_before_work(tmp_path):
    distributed = pytest.importorskip("distributed")
    cfg = _write(tmp_path, _synth_config(tmp_path, extra="scheduler_timeout = 1"))
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None,
                                  scheduler_port=0) as cluster:
        with pytest.raises(UsageError, match="has no workers"):
            run(cfg, out=tmp_path / "r.csv", scheduler=cluster.scheduler_address)
    _no_work_done(tmp_path)


@pytest.mark.parametrize("codecs, match", [
    ('[codecs.""]\ncodec = "octree"\nrates = { r1 = { scale = 0.5 } }\n', r"codec label '' in \[codecs\] is empty"),
    ('[codecs."  "]\ncodec = "octree"\nrates = { r1 = { scale = 0.5 } }\n', r"codec label '  ' in \[codecs\] is empty"),
    ('[codecs.o]\ncodec = "octree"\nrates = { "" = { scale = 0.5 } }\n', r"\[codecs.o\] rates: rate name '' is empty"),
    ('[codecs.o]\ncodec = "octree"\nrates = { r1 = { scale = 0.5 }, " " = { scale = 0.25 } }\n',
     r"\[codecs.o\] rates: rate name ' ' is empty"),
])
def test_empty_codec_label_or_rate_name_rejected(tmp_path, codecs, match):
    # an empty key cell makes a results table that every later read refuses: stop at the config
    path = _write(tmp_path, _synth_config(tmp_path, codecs=codecs))
    with pytest.raises(UsageError, match=f"{path}: {match}"):
        load_config(path)


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_empty_sequence_name_rejected(tmp_path, name):
    text = _synth_config(tmp_path).replace('name = "sph"', f'name = "{name}"')
    path = _write(tmp_path, text.replace("\t", "\\t"))
    with pytest.raises(UsageError, match=r"\[\[sequences\]\] #1 needs a name"):
        load_config(path)


def test_empty_label_cli_exit_2(tmp_path, run_cli):
    path = _write(tmp_path, _synth_config(tmp_path, codecs='[codecs.""]\ncodec = "octree"\nrates = { r1 = { scale = 0.5 } }\n'))
    code, _, err = run_cli("bench", "run", path, "-o", tmp_path / "r.csv")
    assert code == 2 and err.count("\n") == 1 and str(path) in err and "codec label ''" in err
    assert not (tmp_path / "r.csv").exists()

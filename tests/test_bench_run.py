"""bench run end to end on tiny synthetic frames: row contents against independent computations,
resuming, a worker killed mid-task (local pool and Dask), and the bench CLI commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from imcodec.bench.report import read_results
from imcodec.bench.runner import parts_dir, run
from imcodec.bench.tasks import HEADER
from imcodec.io.ply import read_ply
from imcodec.io.rowstore import write_part

CRASH_PLUGIN = '''
"""Test plugin: an octree codec whose worker kills itself (SIGKILL) in its first encode."""
import os
import signal
from pathlib import Path

from imcodec.codecs import register_codec
from imcodec.octree.codec import OctreeCodec

MARKER = Path({marker!r})


@register_codec({name!r}, codec_id={codec_id})
class CrashOnce(OctreeCodec):
    def encode_frame(self, cloud, config, state):
        if not MARKER.exists():
            MARKER.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode_frame(cloud, config, state)
'''


def _config(tmp_path, codecs: str, extra: str = "", frames: int = 2, bits: int = 6) -> object:
    p = tmp_path / "bench.toml"
    p.write_text(f"""
[bench]
cache_dir = "{tmp_path / 'cache'}"
{extra}

[[sequences]]
name = "sph"
synth = {{ shape = "sphere", bits = {bits}, frames = {frames}, seed = 3, color = true }}
{codecs}
""")
    return p


OCTREE = "[codecs.octree]\noptions = { attr_qp = 34 }\nrates = { r1 = { scale = 0.5 }, lossless = { lossless = true } }\n"


def _d1_psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """Symmetric point-to-point PSNR by brute-force nearest neighbours (pc_error definition)."""
    a = np.unique(a.astype(np.float32).astype(np.float64), axis=0)
    b = np.unique(b.astype(np.float32).astype(np.float64), axis=0)
    mse = max(np.mean(cKDTree(b).query(a)[0] ** 2), np.mean(cKDTree(a).query(b)[0] ** 2))
    return math.inf if mse == 0 else 10 * math.log10(3 * peak * peak / mse)


def test_local_run_rows_and_resume(tmp_path):
    out = tmp_path / "res.csv"
    cfg = _config(tmp_path, OCTREE)
    seen = []
    res = run(cfg, out=out, workers=1, progress=lambda d, t, n: seen.append((d, t)))
    assert res["tasks"] == 4 and res["ran"] == 4 and res["failed"] == [] and res["generated_frames"] == 2
    assert seen[-1] == (4, 4)
    rows = read_results(out)
    assert out.read_text().splitlines()[0].split(",") == HEADER
    assert sorted((r["frame"], r["rate"]) for r in rows) == [(0, "lossless"), (0, "r1"), (1, "lossless"), (1, "r1")]
    for r in rows:
        src = read_ply(tmp_path / "cache" / "sphere-b6-s3-rigid-rgb" / f"sphere_{r['frame']:04d}.ply")
        assert r["points"] == len(src) and r["peak"] == 63.0
        comps = dict(kv.split("=") for kv in r["components"].split(";"))
        assert r["bytes_geometry"] == int(comps["geometry"]) and r["bytes_attribute"] == int(comps["attribute"])
        assert r["bytes_total"] > r["bytes_geometry"] + r["bytes_attribute"]  # + container headers
        assert r["bpp_total"] == pytest.approx(8 * r["bytes_total"] / len(src))
        assert r["encode_s"] > 0 and r["decode_s"] > 0 and r["peak_mem_mib"] > 10
        assert r["y_psnr"] is not None and r["cb_psnr"] is not None
        if r["rate"] == "lossless":
            assert r["d1_psnr"] == math.inf and r["decoded_points"] == len(src)
        else:
            # lossy: decoded positions are the scale-0.5 grid; D1 against a brute-force reference
            q = np.sign(src.points * 0.5) * np.floor(np.abs(src.points * 0.5) + 0.5)
            recon = np.unique(q, axis=0) / 0.5
            assert r["decoded_points"] == len(recon)
            assert r["d1_psnr"] == pytest.approx(_d1_psnr(src.points, recon, 63.0), abs=1e-3)
    first = out.read_bytes()
    assert not parts_dir(out).exists()

    # rerun: everything is skipped, the table is unchanged
    again = run(cfg, out=out, workers=1)
    assert again["skipped"] == 4 and again["ran"] == 0 and out.read_bytes() == first

    # a row lost from the table runs again (same bytes and PSNR; timings may differ)
    lines = out.read_text().splitlines()
    header, body = lines[0], lines[1:]
    out.write_text("\n".join([header] + body[1:]) + "\n")
    res = run(cfg, out=out, workers=1)
    assert res["ran"] == 1 and res["skipped"] == 3
    redone = {(r["frame"], r["rate"]): r for r in read_results(out)}
    for r in rows:
        assert redone[(r["frame"], r["rate"])]["bytes_total"] == r["bytes_total"]
        assert redone[(r["frame"], r["rate"])]["d1_psnr"] == r["d1_psnr"]
    # a finished part file left behind by a killed run is merged, not rerun; a damaged one is dropped
    snapshot = out.read_text()
    lines = snapshot.splitlines()
    header, body = lines[0], lines[1:]
    cells = dict(zip(header.split(","), body[2].split(",")))
    out.write_text("\n".join([header] + body[:2] + body[3:]) + "\n")
    write_part(parts_dir(out), "leftover", cells)
    (parts_dir(out) / "broken.json").write_text('{"sequence": "sph", "fra')
    res = run(cfg, out=out, workers=1)
    assert res["ran"] == 0 and res["skipped"] == 4
    assert out.read_text() == snapshot
    assert not parts_dir(out).exists()


def _crash_config(tmp_path, name: str, codec_id: int, extra: str = ""):
    plugin = tmp_path / "crash_plugin.py"
    marker = tmp_path / "crashed.marker"
    plugin.write_text(CRASH_PLUGIN.format(marker=str(marker), name=name, codec_id=codec_id))
    codecs = f"[codecs.{name}]\nrates = {{ a = {{ scale = 0.5 }}, b = {{ scale = 0.75 }} }}\n"
    return _config(tmp_path, codecs, extra=f'plugins = ["{plugin}"]\n' + extra, frames=2), marker


def _assert_complete(out, n_rows: int) -> None:
    text = out.read_text().splitlines()
    keys = [tuple(line.split(",")[:4]) for line in text[1:]]
    assert len(keys) == n_rows == len(set(keys)), "missing or duplicated rows"
    for line in text[1:]:
        assert len(line.split(",")) == len(HEADER)
    rows = read_results(out)
    assert all(r["d1_psnr"] is not None and r["bytes_total"] > 0 for r in rows)


def test_local_worker_killed_mid_task(tmp_path):
    cfg, marker = _crash_config(tmp_path, "crashy_local", 241)
    out = tmp_path / "res.csv"
    res = run(cfg, out=out, workers=2)
    assert marker.exists(), "the plugin never killed its worker"
    assert res["pool_restarts"] >= 1 and res["failed"] == [] and res["ran"] == 4
    _assert_complete(out, 4)


def test_dask_local_cluster_with_killed_worker(tmp_path):
    distributed = pytest.importorskip("distributed")
    cfg, marker = _crash_config(tmp_path, "crashy_dask", 242)
    out = tmp_path / "res.csv"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, memory_limit="1GiB", scheduler_port=0) as cluster:
        res = run(cfg, out=out, scheduler=cluster.scheduler_address)
    assert marker.exists(), "the plugin never killed its worker"
    assert res["failed"] == [] and res["ran"] == 4 and res["executor"].startswith("tcp://127.0.0.1:")
    _assert_complete(out, 4)


def test_bench_cli_run_report_check(tmp_path, run_cli):
    codecs = ("[codecs.coarse]\ncodec = 'octree'\noptions = { attr_qp = 40 }\n"
              "rates = { a = { scale = 0.25 }, b = { scale = 0.375 }, c = { scale = 0.5 }, d = { scale = 0.625 } }\n"
              "[codecs.fine]\ncodec = 'octree'\noptions = { attr_qp = 28 }\n"
              "rates = { a = { scale = 0.25 }, b = { scale = 0.375 }, c = { scale = 0.5 }, d = { scale = 0.625 } }\n")
    cfg = _config(tmp_path, codecs, frames=1, bits=7)
    out = tmp_path / "res.csv"
    code, stdout, err = run_cli("--quiet", "bench", "run", cfg, "-o", out, "--workers", "1", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["ran"] == 8 and summary["rows"] == 8

    code, stdout, err = run_cli("bench", "report", out, "--anchor", "coarse", "--test", "fine", "--json",
                                "--plots", tmp_path / "plots")
    assert code == 0, err
    rep = json.loads(stdout)
    # same geometry, finer colour: identical geometry bits, so D1 vs geometry rate gives BD-rate 0
    assert rep["sequences"]["sph"]["d1_psnr/bpp_geometry"]["bd_rate"] == pytest.approx(0.0, abs=1e-9)
    assert (tmp_path / "plots" / "sph_d1.png").is_file()
    code, stdout, _ = run_cli("bench", "report", out, "--anchor", "coarse", "--test", "fine", "--no-plots")
    assert code == 0 and "d1_psnr/bpp_total" in stdout

    base = tmp_path / "base.json"
    code, _, err = run_cli("bench", "check", out, "--baseline", base, "--write-baseline")
    assert code == 0 and base.is_file(), err
    code, stdout, err = run_cli("bench", "check", out, "--baseline", base, "--max-bdrate", "1.0")
    assert code == 0 and "passed" in stdout, err
    # inject a 2% rate regression into the 'fine' rows of the results and check again
    rows = out.read_text().splitlines()
    head = rows[0].split(",")
    bad = [rows[0]]
    for line in rows[1:]:
        cells = line.split(",")
        if cells[head.index("codec")] == "fine":
            for col in ("bytes_total", "bpp_total"):
                v = float(cells[head.index(col)]) * 1.02
                cells[head.index(col)] = str(round(v)) if col == "bytes_total" else repr(v)
        bad.append(",".join(cells))
    regressed = tmp_path / "regressed.csv"
    regressed.write_text("\n".join(bad) + "\n")
    code, stdout, err = run_cli("bench", "check", regressed, "--baseline", base, "--max-bdrate", "1.0")
    assert code == 1
    assert "REGRESSION sph fine d1_psnr/bpp_total" in stdout and "coarse" not in stdout
    assert err.count("\n") == 1 and "sph/fine" in err


def test_interrupted_run_resumes_from_parts(tmp_path):
    cfg = _config(tmp_path, OCTREE)
    out = tmp_path / "res.csv"

    def stop_after_first(done, total, note):
        if done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=out, workers=1, progress=stop_after_first)
    # the finished task survived: as a part file, or already merged into the table
    kept = len(read_results(out)) if out.exists() else 0
    assert kept + len(list(parts_dir(out).glob("*.json"))) >= 1
    res = run(cfg, out=out, workers=1)
    assert res["skipped"] >= 1 and res["skipped"] + res["ran"] == 4
    _assert_complete(out, 4)


# ------------------------------------------------------------------------ output, lock, plugins

def test_output_must_be_a_regular_file(tmp_path, run_cli):
    """The table is read back to resume: a device, pipe or /dev, /proc output is refused before any work."""
    import os

    from imcodec.errors import UsageError

    cfg = _config(tmp_path, OCTREE, frames=1)
    link = tmp_path / "null.csv"
    link.symlink_to("/dev/null")
    with pytest.raises(UsageError, match="must go to a regular file"):
        run(cfg, out=link, workers=1)
    with pytest.raises(UsageError, match="expected a results CSV file name"):
        run(cfg, out="", workers=1)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="must go to a regular file"):
        run(cfg, out=fifo, workers=1)
    code, _, err = run_cli("bench", "run", cfg, "-o", "/dev/stdout")
    assert code == 2 and "must go to a regular file" in err and err.count("\n") == 1
    code, _, err = run_cli("bench", "run", cfg, "-o", "")
    assert code == 2 and "expected a results CSV file name" in err and "internal error" not in err
    assert not (tmp_path / "cache").exists(), "work started before the output was checked"
    assert not (tmp_path / "null.csv.parts").exists() and not os.path.exists("/dev/stdout.parts")


LOCK_HOLDER = '''
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
time.sleep(60)
'''


def test_concurrent_run_into_same_table_is_refused(tmp_path):
    """A second run into a table that another run is writing fails at once (rows would be lost); the
    lock of a killed run does not block (flock: the OS releases it), nor does a stale lock file."""
    import subprocess
    import sys

    from imcodec.bench.runner import OutputLock, lock_path
    from imcodec.errors import UsageError

    pytest.importorskip("fcntl")
    cfg = _config(tmp_path, OCTREE, frames=1)
    out = tmp_path / "res.csv"
    with OutputLock(out):
        with pytest.raises(UsageError, match="another bench run is writing .*res.csv"):
            run(cfg, out=out, workers=1)
    assert not lock_path(out).exists()

    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(lock_path(out))], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=f"held by process {holder.pid}"):
            run(cfg, out=out, workers=1)
    finally:
        holder.kill()  # SIGKILL: no clean-up, the lock file stays behind
        holder.wait()
    assert lock_path(out).exists()
    res = run(cfg, out=out, workers=1)
    assert res["ran"] == 2 and not lock_path(out).exists()
    lock_path(out).write_text("999999999")  # stale lock file, nobody holds it
    assert run(cfg, out=out, workers=1)["skipped"] == 2


@pytest.mark.parametrize("body, message", [
    ("def oops(:\n", "import failed: SyntaxError: .*line 1"),
    ("raise RuntimeError('boom')\n", "import failed: RuntimeError: boom"),
    ("import sys\nsys.exit(3)\n", r"import failed: it called sys.exit\(3\)"),
])
def test_plugin_import_errors_are_usage_errors(tmp_path, run_cli, body, message):
    from imcodec.errors import UsageError

    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(body)
    cfg = _config(tmp_path, OCTREE, extra=f'plugins = ["{plugin}"]', frames=1)
    with pytest.raises(UsageError, match=f"plugin {plugin}: {message}"):
        run(cfg, out=tmp_path / "res.csv", workers=1)
    code, _, err = run_cli("bench", "run", cfg, "-o", tmp_path / "res.csv")
    assert code == 2 and err.count("\n") == 1 and "import failed" in err and "internal error" not in err
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------ settings, Hausdorff

def test_rows_rerun_when_settings_change(tmp_path):
    """Rows carry a fingerprint of their settings: a changed rate point, a changed frame file or metric
    setting reruns (and replaces) exactly the affected rows; rows without one (old tables) are rerun."""
    import os

    from imcodec.bench.config import load_config
    from imcodec.bench.tasks import settings_fingerprint
    from imcodec.io.rowstore import read_csv_rows, write_csv_rows

    out = tmp_path / "res.csv"
    cfg = _config(tmp_path, OCTREE)
    first = run(cfg, out=out, workers=1)
    assert first["ran"] == 4 and first["settings_changed"] == 0 and "note" not in first
    before = {(r["frame"], r["rate"]): r for r in read_results(out)}
    assert len({r["settings"] for r in before.values()}) == 4 and all(len(r["settings"]) == 16 for r in before.values())

    # r1 changes from scale 0.5 to 0.75: its two rows rerun and are replaced, the lossless rows are kept
    cfg2 = _config(tmp_path, OCTREE.replace("r1 = { scale = 0.5 }", "r1 = { scale = 0.75 }"))
    res = run(cfg2, out=out, workers=1)
    assert res["ran"] == 2 and res["skipped"] == 2 and res["settings_changed"] == 2 and res["rows"] == 4
    assert "because their settings changed" in res["note"] and "no settings fingerprint" not in res["note"]
    after = {(r["frame"], r["rate"]): r for r in read_results(out)}
    for f in (0, 1):
        assert after[(f, "r1")]["settings"] != before[(f, "r1")]["settings"]
        assert after[(f, "r1")]["decoded_points"] > before[(f, "r1")]["decoded_points"]  # finer grid
        assert after[(f, "lossless")] == before[(f, "lossless")]
    again = run(cfg2, out=out, workers=1)
    assert again["ran"] == 0 and again["skipped"] == 4 and again["settings_changed"] == 0

    # a table written before the settings column existed: every row is treated as stale and rerun
    header, cells = read_csv_rows(out)
    old_header = [h for h in header if h != "settings"]
    write_csv_rows(out, old_header, cells)
    res = run(cfg2, out=out, workers=1)
    assert res["ran"] == 4 and res["settings_changed"] == 4 and "no settings fingerprint" in res["note"]
    assert read_csv_rows(out)[0] == HEADER

    # a file sequence: rewriting a frame (new size/mtime) reruns that frame's rows only
    frames = tmp_path / "frames"
    frames.mkdir()
    cache = tmp_path / "cache" / "sphere-b6-s3-rigid-rgb"
    for i in (0, 1):
        (frames / f"f_{i:04d}.ply").write_bytes((cache / f"sphere_{i:04d}.ply").read_bytes())
    cfg3 = tmp_path / "files.toml"
    cfg3.write_text(f"[[sequences]]\nname = 'files'\npath = '{frames}'\n{OCTREE}")
    out3 = tmp_path / "files.csv"
    assert run(cfg3, out=out3, workers=1)["ran"] == 4
    target = frames / "f_0001.ply"
    target.write_bytes((cache / "sphere_0000.ply").read_bytes())
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    res = run(cfg3, out=out3, workers=1)
    assert res["ran"] == 2 and res["settings_changed"] == 2
    rows = {(r["frame"], r["rate"]): r for r in read_results(out3)}
    assert rows[(1, "r1")]["bytes_total"] == rows[(0, "r1")]["bytes_total"]  # frame 1 now holds frame 0
    # the fingerprint of a task is the one the runner records
    c = load_config(cfg3)
    rp = c.codecs[0].rates[0]
    st = os.stat(target)
    ident = ["file", os.path.realpath(target), st.st_size, st.st_mtime_ns]
    assert rows[(1, rp.name)]["settings"] == settings_fingerprint("octree", rp.options, ident, None, "auto", False)


PLAIN_PLUGIN = '''
"""Test plugin: the octree codec under another name."""
from imcodec.codecs import register_codec
from imcodec.octree.codec import OctreeCodec


@register_codec("octree_plugged", codec_id=201)
class Plugged(OctreeCodec):
    pass
'''


def test_an_edited_plugin_reruns_the_rows(tmp_path):
    """The fingerprint covers the plugin files (path, size, mtime): rows of a run are reused while the
    plugin is unchanged and rerun once it is edited."""
    plugin = tmp_path / "plug.py"
    plugin.write_text(PLAIN_PLUGIN)
    cfg = _config(tmp_path, "[codecs.octree_plugged]\nrates = { r1 = { scale = 0.5 } }\n",
                  extra=f'plugins = ["{plugin}"]', frames=1)
    out = tmp_path / "res.csv"
    assert run(cfg, out=out, workers=1)["ran"] == 1
    assert run(cfg, out=out, workers=1)["ran"] == 0
    plugin.write_text(PLAIN_PLUGIN + "\n# edited\n")
    res = run(cfg, out=out, workers=1)
    assert res["ran"] == 1 and res["settings_changed"] == 1


def test_hausdorff_columns(tmp_path):
    """[bench] hausdorff = true fills the Hausdorff columns (symmetric: the worse direction); checked
    against brute-force nearest neighbours. Without it they stay empty."""
    cfg = _config(tmp_path, "[codecs.octree]\nrates = { r1 = { scale = 0.5 } }\n", extra="hausdorff = true",
                  frames=1)
    out = tmp_path / "res.csv"
    res = run(cfg, out=out, workers=1)
    assert res["ran"] == 1
    assert {"d1_hausdorff", "d1_hausdorff_psnr", "d2_hausdorff", "d2_hausdorff_psnr", "r_hausdorff_psnr",
            "g_hausdorff_psnr", "b_hausdorff_psnr"} <= set(out.read_text().splitlines()[0].split(","))
    (r,) = read_results(out)
    src = read_ply(tmp_path / "cache" / "sphere-b6-s3-rigid-rgb" / "sphere_0000.ply")
    q = np.sign(src.points * 0.5) * np.floor(np.abs(src.points * 0.5) + 0.5)
    recon = np.unique(q, axis=0) / 0.5
    a = np.unique(src.points, axis=0)
    h = max(np.max(cKDTree(recon).query(a)[0] ** 2), np.max(cKDTree(a).query(recon)[0] ** 2))
    assert h > 0 and r["d1_hausdorff"] == pytest.approx(h)
    assert r["d1_hausdorff_psnr"] == pytest.approx(10 * math.log10(3 * 63.0 ** 2 / h))
    assert r["d1_hausdorff_psnr"] <= r["d1_psnr"] and r["d2_hausdorff"] <= r["d1_hausdorff"] + 1e-9
    assert all(r[f"{c}_hausdorff_psnr"] is not None for c in "rgb")

    # switching Hausdorff off changes the metric settings: the row reruns, the columns are empty
    cfg_off = _config(tmp_path, "[codecs.octree]\nrates = { r1 = { scale = 0.5 } }\n", frames=1)
    res = run(cfg_off, out=out, workers=1)
    assert res["settings_changed"] == 1
    (r,) = read_results(out)
    assert r["d1_hausdorff"] is None and r["d1_hausdorff_psnr"] is None and r["r_hausdorff_psnr"] is None

"""One benchmark task: encode, decode and measure one frame at one rate point -> one result row.

Tasks run in worker processes (a local pool or Dask workers), so this module imports nothing heavy at
import time and everything a task needs travels in the :class:`Task` (plain, picklable values).

Row columns (:data:`COLUMNS`): the key (sequence, frame, codec, rate), input and decoded point
counts, the PSNR peak, bytes of the whole stream and per component class (``bytes_geometry``: every
component whose name lacks "attribute" - octree ``geometry``, V-PCC ``patches``, ``occupancy``,
``geometry_video``, ``raw_points``; ``bytes_attribute``: ``attribute``, ``attribute_video``;
``bytes_total`` also counts the container's headers, index and CRCs), ``components`` (name=bytes;...),
bits per input point (total, geometry, attribute), symmetric D1/D2 PSNR and MSE and Y/Cb/Cr PSNR
(:func:`imcodec.metrics.psnr.compute_metrics`, pc_error conventions; empty when not computed),
codec encode/decode seconds (file I/O excluded), metric seconds, the whole task's wall seconds (file
I/O included), CPU seconds of the worker process and its finished child processes (ffmpeg) during
the task (with several tasks per process, as Dask threads, this includes the others'), peak resident
memory of the worker
during the task (MiB; on Linux the high-water mark is reset before each task) and the worker id.

With ``[bench] hausdorff = true`` also the symmetric Hausdorff values: ``d1_hausdorff`` /
``d2_hausdorff`` (the largest squared point-to-point / point-to-plane distance of either direction)
with their PSNRs, and with colour the per-channel R/G/B Hausdorff PSNRs (the smaller direction's);
empty otherwise.

``settings`` is a fingerprint of everything the row depends on (:func:`settings_fingerprint`): the
runner reruns a row whose fingerprint differs from the current config's (or is missing).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

# (column, type) in CSV order; types: "str", "int", "float"
COLUMNS: tuple[tuple[str, str], ...] = (
    ("sequence", "str"), ("frame", "int"), ("codec", "str"), ("rate", "str"),
    ("points", "int"), ("decoded_points", "int"), ("peak", "float"),
    ("bytes_total", "int"), ("bytes_geometry", "int"), ("bytes_attribute", "int"), ("components", "str"),
    ("bpp_total", "float"), ("bpp_geometry", "float"), ("bpp_attribute", "float"),
    ("d1_psnr", "float"), ("d2_psnr", "float"), ("y_psnr", "float"), ("cb_psnr", "float"), ("cr_psnr", "float"),
    ("d1_mse", "float"), ("d2_mse", "float"),
    ("d1_hausdorff", "float"), ("d1_hausdorff_psnr", "float"), ("d2_hausdorff", "float"),
    ("d2_hausdorff_psnr", "float"), ("r_hausdorff_psnr", "float"), ("g_hausdorff_psnr", "float"),
    ("b_hausdorff_psnr", "float"),
    ("encode_s", "float"), ("decode_s", "float"), ("metrics_s", "float"), ("task_s", "float"),
    ("cpu_s", "float"), ("peak_mem_mib", "float"),
    ("worker", "str"), ("settings", "str"),
)
HEADER = [c for c, _ in COLUMNS]
KEY = ("sequence", "frame", "codec", "rate")
_TYPES = dict(COLUMNS)


@dataclass(frozen=True)
class Task:
    """Everything one task needs: the frame, the codec and its options, the metric settings."""

    sequence: str
    frame: int
    path: str
    label: str          # codec label (the "codec" column)
    codec: str          # registered codec name
    rate: str
    options: tuple[tuple[str, Any], ...]
    peak: float | None  # None: 2^bit_depth - 1 of the frame
    color: str = "auto"
    hausdorff: bool = False
    plugins: tuple[str, ...] = ()
    settings: str = ""  # fingerprint of the row's inputs, see settings_fingerprint

    @property
    def key(self) -> tuple[str, int, str, str]:
        return (self.sequence, self.frame, self.label, self.rate)

    @property
    def task_id(self) -> str:
        """A file-name-safe id, unique per key."""
        return task_id(self.key)


def task_id(key: tuple) -> str:
    seq, frame, label, rate = key
    text = f"{seq}\x00{int(frame)}\x00{label}\x00{rate}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{seq}_{int(frame)}_{label}_{rate}")[:80]
    return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def settings_fingerprint(codec: str, options: tuple[tuple[str, Any], ...], frame: Any, peak: float | None,
                         color: str, hausdorff: bool, plugins: Any = ()) -> str:
    """Short sha256 hex of a task's effective settings: the registered codec, its merged options, the
    frame's identity (``frame``: e.g. path, size and mtime of a file, or a synthetic spec and index),
    the metric settings, the imcodec version and the plugin files' identities (``plugins``, see
    :func:`plugin_identity`). Equal fingerprints mean a finished row can be reused."""
    import json

    from imcodec import __version__

    text = json.dumps({"codec": codec, "options": [[k, v] for k, v in options], "frame": frame,
                       "peak": peak, "color": color, "hausdorff": bool(hausdorff), "imcodec": __version__,
                       "plugins": list(plugins)},
                      sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plugin_identity(paths: tuple[str, ...]) -> list[list[Any]]:
    """[real path, size, mtime_ns] of each plugin file (a missing one: [path]); an edited plugin
    changes the fingerprint of every row."""
    import os

    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append([str(p)])
            continue
        out.append([os.path.realpath(p), st.st_size, st.st_mtime_ns])
    return out


# ------------------------------------------------------------------------------------- row typing

def format_cell(column: str, value: Any) -> str:
    """CSV text of one cell: '' for None, 'inf' for infinity, repr precision for floats."""
    if value is None or value == "":
        return ""
    kind = _TYPES.get(column, "str")
    if kind == "int":
        return str(int(value))
    if kind == "float":
        v = float(value)
        if math.isnan(v):
            return ""
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    return str(value)


def format_row(row: dict[str, Any]) -> dict[str, str]:
    return {c: format_cell(c, row.get(c)) for c in HEADER}


def parse_row(cells: dict[str, Any], where: str = "results") -> dict[str, Any]:
    """Typed row from CSV cells or JSON values; InputError naming ``where`` for a bad cell."""
    from imcodec.errors import InputError

    out: dict[str, Any] = {}
    for c in HEADER:
        v = cells.get(c, "")
        if v is None or v == "":
            out[c] = None
            continue
        kind = _TYPES[c]
        try:
            out[c] = int(float(v)) if kind == "int" else float(v) if kind == "float" else str(v)
        except (TypeError, ValueError):
            raise InputError(f"{where}: column {c!r} holds {v!r}, expected a {kind}") from None
    for c in KEY:
        if out[c] is None:
            raise InputError(f"{where}: a row has no {c!r}")
    return out


def row_key(row: dict[str, Any]) -> tuple[str, int, str, str]:
    return (str(row["sequence"]), int(row["frame"]), str(row["codec"]), str(row["rate"]))


# ---------------------------------------------------------------------------------------- plugins

_LOADED: set[str] = set()


def load_plugins(paths: tuple[str, ...]) -> None:
    """Import Python files that register extra codecs (each once per process)."""
    import importlib.util

    from imcodec.errors import UsageError

    for p in paths:
        real = os.path.realpath(p)
        if real in _LOADED:
            continue
        if not os.path.isfile(real):
            raise UsageError(f"plugin {p}: no such Python file")
        name = "imcodec_bench_plugin_" + hashlib.sha1(real.encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, real)
        if spec is None or spec.loader is None:
            raise UsageError(f"plugin {p}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            where = f" (line {exc.lineno})" if exc.lineno else ""
            raise UsageError(f"plugin {p}: import failed: {type(exc).__name__}: {exc.msg}{where}") from None
        except SystemExit as exc:
            raise UsageError(f"plugin {p}: import failed: it called sys.exit({exc.code!r})") from None
        except Exception as exc:  # noqa: BLE001 - any error of the plugin's code is the config's problem
            msg = " ".join(str(exc).split())
            raise UsageError(f"plugin {p}: import failed: {type(exc).__name__}: {msg}".rstrip(": ")) from None
        _LOADED.add(real)


# ----------------------------------------------------------------------------------------- memory

def _reset_peak_rss() -> bool:
    """Reset the process's resident-memory high-water mark (Linux: /proc/self/clear_refs = 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # procfs control file, not data
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    """VmHWM of this process (Linux), else the lifetime maximum from getrusage, in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its waited-for children (ffmpeg)."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------------------------------- task

def run_task(task: Task) -> dict[str, Any]:
    """Encode, decode and measure one frame; returns the typed row (see :data:`COLUMNS`).

    Raises the codec's/metric's ImcodecError for bad input; the runner records it as a failed task.
    """
    from imcodec import api
    from imcodec.io.files import temporary_directory
    from imcodec.io.ply import read_ply
    from imcodec.metrics.psnr import compute_metrics

    load_plugins(task.plugins)
    _reset_peak_rss()
    t_task = time.perf_counter()
    cpu0 = _cpu_seconds()
    with temporary_directory(prefix="imcodec-bench-") as tmp:
        enc = api.encode(task.path, tmp / "stream.imc", codec=task.codec, options=dict(task.options))
        dec = api.decode(tmp / "stream.imc", tmp / "decoded.ply")
        original = read_ply(task.path)
        decoded = read_ply(tmp / "decoded.ply", allow_empty=True)
    peak = task.peak
    if peak is None:
        depth = api.cloud_info(original).get("bit_depth") or 10
        peak = float((1 << depth) - 1)
    both = original.colors is not None and decoded.colors is not None
    if task.color == "on" and not both:
        from imcodec.errors import InputError

        raise InputError(f"{task.path}: color = true needs colours in the input and the decoded cloud "
                         f"({task.label} {task.rate})")
    color = task.color == "on" or (task.color == "auto" and both)
    t0 = time.perf_counter()
    m: dict[str, Any] = {}
    if len(decoded):
        m = compute_metrics(original, decoded, peak=peak, normals_a=original.normals, color=color,
                            hausdorff=task.hausdorff)
    metrics_s = time.perf_counter() - t0
    comps = enc["components"]
    geo = sum(v for k, v in comps.items() if "attribute" not in k)
    att = sum(v for k, v in comps.items() if "attribute" in k)
    n = enc["points"]

    def bpp(b: int) -> float | None:
        return 8.0 * b / n if n else None

    return {
        "sequence": task.sequence, "frame": task.frame, "codec": task.label, "rate": task.rate,
        "points": n, "decoded_points": dec["points"], "peak": peak,
        "bytes_total": enc["bytes"], "bytes_geometry": geo, "bytes_attribute": att,
        "components": ";".join(f"{k}={v}" for k, v in comps.items()),
        "bpp_total": bpp(enc["bytes"]), "bpp_geometry": bpp(geo), "bpp_attribute": bpp(att) if att else None,
        "d1_psnr": m.get("d1_psnr"), "d2_psnr": m.get("d2_psnr"), "y_psnr": m.get("y_psnr"),
        "cb_psnr": m.get("cb_psnr"), "cr_psnr": m.get("cr_psnr"),
        "d1_mse": m.get("d1_mse"), "d2_mse": m.get("d2_mse"), **_hausdorff(m),
        "encode_s": enc["encode_seconds"], "decode_s": dec["decode_seconds"], "metrics_s": round(metrics_s, 4),
        "task_s": round(time.perf_counter() - t_task, 4), "cpu_s": round(_cpu_seconds() - cpu0, 4),
        "peak_mem_mib": round(_peak_rss_mib(), 1), "worker": worker_id(), "settings": task.settings,
    }


def _hausdorff(m: dict[str, Any]) -> dict[str, Any]:
    """Symmetric Hausdorff columns from compute_metrics' per-direction values (empty when absent)."""
    a, b = m.get("a_to_b") or {}, m.get("b_to_a") or {}
    out: dict[str, Any] = {}
    for d in ("d1", "d2"):
        dist = [x[f"{d}_hausdorff"] for x in (a, b) if x.get(f"{d}_hausdorff") is not None]
        psnrs = [x[f"{d}_hausdorff_psnr"] for x in (a, b) if x.get(f"{d}_hausdorff_psnr") is not None]
        out[f"{d}_hausdorff"] = max(dist) if len(dist) == 2 else None
        out[f"{d}_hausdorff_psnr"] = min(psnrs) if len(psnrs) == 2 else None
    for i, ch in enumerate("rgb"):
        vals = [x["rgb_hausdorff_psnr"][i] for x in (a, b) if x.get("rgb_hausdorff_psnr")]
        out[f"{ch}_hausdorff_psnr"] = min(vals) if len(vals) == 2 else None
    return out


# ---------------------------------------------------------------------------------------- warm-up

def warm_up(codecs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...], plugins: tuple[str, ...] = (),
            threads: int | None = None) -> float:
    """Prepare this process for tasks: import and JIT-load the codec and metric kernels (Numba's
    on-disk cache makes this a load, not a compile, after the first process) by running the whole
    task on a tiny coloured synthetic frame once per (codec, options). Returns the seconds taken.

    ``threads`` caps the kernel threads of this process (NUMBA_NUM_THREADS), so that N workers on
    N cores do not oversubscribe them; it must be set before Numba is first imported here.
    """
    if threads is not None:
        os.environ["NUMBA_NUM_THREADS"] = str(max(1, int(threads)))
    from imcodec.io.files import temporary_directory
    from imcodec.io.ply import write_ply
    from imcodec.synth import make_cloud

    t0 = time.perf_counter()
    load_plugins(plugins)
    with temporary_directory(prefix="imcodec-warm-") as tmp:
        frame = tmp / "warm_0000.ply"
        write_ply(make_cloud("sphere", bits=5, color=True, seed=0), frame)
        for codec, options in codecs:
            run_task(Task(sequence="warm", frame=0, path=str(frame), label=codec, codec=codec, rate="warm",
                          options=options, peak=31.0, color="auto", plugins=plugins))
    return time.perf_counter() - t0

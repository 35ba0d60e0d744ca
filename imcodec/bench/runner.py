"""Run a benchmark config: validate everything, plan the tasks, skip finished rows, execute, merge.

Order of work (everything that can be wrong is checked before the first task):

1. the codecs and every rate point's options (:func:`imcodec.bench.config.check_codecs`),
2. the sequences (files exist, windows hold frames), the output (not an input, not the config, not
   a plugin, its part folder holds no input), the scheduler (reachable within ``scheduler_timeout``),
3. synthetic sequences are generated into the cache (existing frames are reused),
4. the rows already in the CSV or in finished part files are skipped,
5. the other tasks run; each result is written at once as a part file ``OUT.parts/<task>.json``
   (atomic) and the parts are merged into ``OUT`` by an atomic rewrite every few seconds and at the
   end. A run that is killed loses at most the tasks in flight; the next run merges the parts left
   behind and does the rest. Rows are unique by (sequence, frame, codec, rate).

Each row records a ``settings`` fingerprint of its inputs (codec, merged options, the frame file's
path/size/mtime or the synthetic spec, peak, colour and Hausdorff settings, the imcodec version and the
plugin files' path/size/mtime): a row whose fingerprint
differs from the current config's is run again and replaced. Rows without one (tables written before
the column existed) are treated as stale and rerun too; the summary counts them (``settings_changed``).

The results must go to a regular file (or a new one): they are read back to resume, so a device,
pipe or /dev, /proc path is refused. One run at a time writes a given table: ``OUT.lock`` is held
(``flock``, released by the OS when the process ends, even when killed) for the whole run, and a
second run into the same table fails at once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imcodec.bench.config import BenchConfig, check_codecs, load_config
from imcodec.bench.tasks import (HEADER, Task, format_row, parse_row, plugin_identity, row_key,
                                 settings_fingerprint)
from imcodec.errors import InputError, UsageError

MERGE_EVERY_S = 5.0


@dataclass
class Plan:
    """The validated work: tasks, output, and the frames still to be generated."""

    cfg: BenchConfig
    out: Path
    tasks: list[Task]
    synth: list[tuple[Any, Path, int]] = field(default_factory=list)  # (SynthSpec, path, t)
    client: Any = None


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


def _check_out_path(out: Path) -> None:
    """UsageError unless ``out`` names a regular file or a new one (the table is read back to resume
    and rewritten by atomic rename)."""
    text = str(out)
    if not text.strip() or out.name in ("", ".", ".."):
        raise UsageError(f"--out {text!r}: expected a results CSV file name (not empty, not a directory)")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory, expected a CSV file name")

    def system(a: str) -> bool:  # /dev/stdout, /dev/fd/N, /proc/self/fd/N, ...; /dev/shm holds plain files
        return any(a == d or a.startswith(d + "/") for d in ("/dev", "/proc")) and not a.startswith("/dev/shm/")

    special = system(os.path.normpath(out.absolute())) or system(os.path.realpath(out))
    if special or (os.path.lexists(out) and not out.is_file()):
        raise UsageError(f"--out {out}: bench results must go to a regular file: they are read back to resume "
                         "(give a file name; a device, pipe or /dev, /proc path cannot be used)")


# --------------------------------------------------------------------------------------- planning

def _frames(cfg: BenchConfig) -> tuple[dict[str, list[tuple[int, Path]]], list[tuple[Any, Path, int]]]:
    from imcodec.io.sequence import resolve_frames

    frames: dict[str, list[tuple[int, Path]]] = {}
    synth = []
    for s in cfg.sequences:
        if s.synth is not None:
            folder = cfg.cache_dir / s.synth.key
            idx = [i for i in range(s.synth.frames) if s.start is None or i >= s.start]
            if s.count is not None:
                idx = idx[: s.count]
            if not idx:
                raise UsageError(f"sequence {s.name!r}: start/count select none of its {s.synth.frames} synthetic frames")
            frames[s.name] = [(i, folder / f"{s.synth.shape}_{i:04d}.ply") for i in idx]
            synth += [(s.synth, p, i) for i, p in frames[s.name]]
            continue
        try:
            found = resolve_frames(s.path, s.start, s.count)
        except (InputError, UsageError) as exc:
            raise type(exc)(f"sequence {s.name!r}: {exc}") from None
        frames[s.name] = [(fr.index, fr.path) for fr in found]
    return frames, synth


def _frame_identity(seq: Any, index: int, path: Path) -> Any:
    """What a frame's content depends on: the synthetic spec and index (the cached file is regenerated
    identically), or the file's path, size and modification time."""
    if seq.synth is not None:
        sp = seq.synth
        return ["synth", sp.shape, sp.bits, sp.seed, sp.color, sp.motion, int(index)]
    st = os.stat(path)
    return ["file", os.path.realpath(path), st.st_size, st.st_mtime_ns]


def _check_outputs(cfg: BenchConfig, out: Path, frames: dict[str, list[tuple[int, Path]]]) -> None:
    real = Path(os.path.realpath(out))
    parts = Path(os.path.realpath(parts_dir(out)))
    lock = Path(os.path.realpath(lock_path(out)))
    if real.is_dir():
        raise UsageError(f"--out {out}: is a directory, expected a CSV file name")
    guarded = {Path(os.path.realpath(p)): f"plugin {p}" for p in cfg.plugins}
    if cfg.source is not None:
        guarded[Path(os.path.realpath(cfg.source))] = "the config file"
    for name, items in frames.items():
        for _, p in items:
            guarded.setdefault(Path(os.path.realpath(p)), f"frame {p} of sequence {name!r}")
    for p, what in guarded.items():
        if p == real:
            raise UsageError(f"--out {out}: the results file would overwrite {what}")
        if p == lock:
            raise UsageError(f"--out {out}: its lock file {lock_path(out)} would overwrite {what}")
        if p == parts or parts in p.parents:
            raise UsageError(f"--out {out}: its part folder {parts_dir(out)} would hold {what}")
    if Path(os.path.realpath(cfg.cache_dir)) in (real, parts):
        raise UsageError(f"--out {out}: overlaps the synthetic-frame cache {cfg.cache_dir}")


def plan(cfg: BenchConfig, out: str | os.PathLike | None = None, workers: int | None = None,
         scheduler: str | None = None) -> Plan:
    """Validate the config against this machine and build the task list (no frame is coded yet)."""
    from imcodec.bench.executors import connect

    out_path = Path(out) if out is not None else cfg.out
    if out_path is None and cfg.source is not None:
        out_path = Path(f"{Path(cfg.source).stem}.csv")  # CONFIG.toml -> ./CONFIG.csv
    if out_path is None:
        raise UsageError("no output: give --out or [bench] out")
    if workers is not None and scheduler is not None:
        raise UsageError("give either --workers or --scheduler, not both")
    if workers is not None and not 1 <= workers <= 1024:
        raise UsageError(f"--workers must be in 1..1024, got {workers}")
    if scheduler is not None:
        from imcodec.bench.executors import parse_scheduler_address

        parse_scheduler_address(scheduler)  # a malformed address fails at once
    _check_out_path(out_path)
    check_codecs(cfg)
    frames, synth = _frames(cfg)
    _check_outputs(cfg, out_path, frames)
    parent = out_path.parent if str(out_path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--out {out_path}: output directory {str(parent)!r} does not exist")
    tasks = []
    plugins = tuple(str(p) for p in cfg.plugins)
    plugin_ids = plugin_identity(plugins)
    for s in cfg.sequences:
        peak = s.peak if s.peak is not None else cfg.peak
        for index, path in frames[s.name]:
            ident = _frame_identity(s, index, path)
            for c in cfg.codecs:
                for rp in c.rates:
                    tasks.append(Task(sequence=s.name, frame=index, path=str(path), label=c.label, codec=c.codec,
                                      rate=rp.name, options=rp.options, peak=peak,
                                      color=cfg.color, hausdorff=cfg.hausdorff, plugins=plugins,
                                      settings=settings_fingerprint(c.codec, rp.options, ident, peak, cfg.color,
                                                                    cfg.hausdorff, plugin_ids)))
    client = connect(scheduler, cfg.scheduler_timeout) if scheduler is not None else None
    return Plan(cfg=cfg, out=out_path, tasks=tasks, synth=synth, client=client)


def generate_frames(items: list[tuple[Any, Path, int]]) -> int:
    from imcodec.io.files import ensure_dir
    from imcodec.io.ply import write_ply
    from imcodec.synth import make_cloud

    made = 0
    for spec, path, t in items:
        if path.is_file():
            continue
        ensure_dir(path.parent)
        write_ply(make_cloud(spec.shape, spec.bits, color=spec.color, seed=spec.seed, t=float(t),
                             motion=spec.motion), path)
        made += 1
    return made


# ------------------------------------------------------------------------------------------- lock

class OutputLock:
    """An exclusive ``flock`` on ``OUT.lock`` for the whole run: a second run into the same table fails
    at once naming the holder's PID; the OS drops the lock when the holder exits (killed included), so
    a stale lock file never blocks. The file is removed on release."""

    def __init__(self, out: Path):
        self.out = out
        self.path = lock_path(out)
        self.fd: int | None = None

    def acquire(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return self
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise InputError(f"--out {self.out}: cannot create the lock file {self.path} "
                                 f"({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = ""
                try:
                    holder = os.read(fd, 64).decode("ascii", "replace").strip()
                except OSError:
                    pass
                os.close(fd)
                who = f"held by process {holder}" if holder.isdigit() else "held"
                raise UsageError(f"another bench run is writing {self.out} (lock {self.path} {who}); "
                                 "wait for it to finish or use another --out") from None
            try:  # the holder before us may have removed the file after we opened it: lock the live one
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self.fd = fd
            return self
        raise UsageError(f"--out {self.out}: cannot lock {self.path} (it keeps being replaced)")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                os.unlink(self.path)  # while still locked: a waiting run then locks a fresh file
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---------------------------------------------------------------------------------------- results

class ResultStore:
    """The results CSV plus its part folder; see the module docstring."""

    def __init__(self, out: Path):
        self.out = out
        self.parts = parts_dir(out)
        self.rows: dict[tuple, dict[str, Any]] = {}
        self.unmerged: list[Path] = []
        self.last_merge = time.monotonic()

    def load(self) -> int:
        """Read the CSV and any finished parts; merge the parts in. Returns the number of rows."""
        from imcodec.io.rowstore import read_csv_rows, read_parts, remove_files

        _, cells = read_csv_rows(self.out)
        for i, c in enumerate(cells, start=2):
            row = parse_row(c, where=f"{self.out} row {i}")
            self.rows[row_key(row)] = row
        good, bad = read_parts(self.parts)
        for p, obj in good:
            try:
                row = parse_row(obj, where=str(p))
            except InputError:
                bad.append(p)
                continue
            self.rows[row_key(row)] = row
            self.unmerged.append(p)
        remove_files(bad)  # unreadable parts: their tasks simply run again
        if self.unmerged:
            self.merge()
        return len(self.rows)

    def add(self, row: dict[str, Any], name: str) -> None:
        from imcodec.io.rowstore import write_part

        self.unmerged.append(write_part(self.parts, name, format_row(row)))
        self.rows[row_key(row)] = row
        if time.monotonic() - self.last_merge >= MERGE_EVERY_S:
            self.merge()

    def merge(self) -> None:
        from imcodec.io.rowstore import remove_empty_dir, remove_files, write_csv_rows

        ordered = sorted(self.rows.values(), key=lambda r: (r["sequence"], r["codec"], r["rate"], r["frame"]))
        write_csv_rows(self.out, HEADER, [format_row(r) for r in ordered])
        remove_files(self.unmerged)
        self.unmerged = []
        remove_empty_dir(self.parts)
        self.last_merge = time.monotonic()


# -------------------------------------------------------------------------------------------- run

def run(config: BenchConfig | str | os.PathLike, out: str | os.PathLike | None = None, workers: int | None = None,
        scheduler: str | None = None, progress=None) -> dict[str, Any]:
    """Run a benchmark (a config object or a TOML path); returns a summary dict.

    ``progress(done, total, note)`` is called as tasks finish. Failed tasks (bad frames, workers
    that kept dying) are listed under ``failed``; their rows are absent, so a rerun retries them.
    """
    from imcodec.bench import executors

    cfg = config if isinstance(config, BenchConfig) else load_config(config)
    p = plan(cfg, out, workers, scheduler)
    lock = OutputLock(p.out)
    try:
        lock.acquire()
        t0 = time.perf_counter()
        generated = generate_frames(p.synth)
        store = ResultStore(p.out)
        store.load()
        stale = [t for t in p.tasks if t.key in store.rows and store.rows[t.key].get("settings") != t.settings]
        unversioned = sum(1 for t in stale if not store.rows[t.key].get("settings"))
        for t in stale:  # replaced when the task finishes; absent (so retried) if it fails
            del store.rows[t.key]
        todo = [t for t in p.tasks if t.key not in store.rows]
        skipped = len(p.tasks) - len(todo)
        failed: list[dict[str, str]] = []
        done = [0]
        total = len(todo)

        def on_result(task: Task, row: dict) -> None:
            store.add(row, task.task_id)
            done[0] += 1
            if progress is not None:
                progress(done[0], total, f"{task.sequence} {task.frame} {task.label} {task.rate}")

        def on_failure(task: Task, message: str) -> None:
            failed.append({"sequence": task.sequence, "frame": task.frame, "codec": task.label,
                           "rate": task.rate, "error": message})
            done[0] += 1
            if progress is not None:
                progress(done[0], total, f"FAILED {task.sequence} {task.frame} {task.label} {task.rate}")

        if progress is not None:
            progress(0, total, "warming up")
        from imcodec.codecs import _MODULES as builtin  # plugin codecs are not run in the warm-up

        warm = tuple(dict.fromkeys((c.codec, c.rates[0].options) for c in cfg.codecs if c.codec in builtin))
        plugins = tuple(str(x) for x in cfg.plugins)
        info: dict[str, Any] = {}
        warm_s = 0.0
        n_workers = workers or cfg.workers or 1
        if todo and p.client is not None:
            info = executors.run_dask(p.client, todo, warm, plugins, on_result, on_failure)
        elif todo:
            if n_workers > 1:  # fill the on-disk Numba cache once, so workers only load it
                from imcodec.bench.tasks import warm_up

                warm_s = warm_up(warm, plugins)
            info = executors.run_local(todo, n_workers, warm, plugins, cfg.retries, on_result, on_failure)
        store.merge()
        seconds = time.perf_counter() - t0
    finally:
        try:
            if p.client is not None:
                p.client.close()
        finally:
            lock.release()
    summary = {"output": str(p.out), "tasks": len(p.tasks), "skipped": skipped, "ran": total - len(failed),
               "settings_changed": len(stale), "failed": failed, "rows": len(store.rows),
               "generated_frames": generated, "executor": scheduler if scheduler else f"local x{n_workers}",
               "warm_seconds": round(warm_s, 3), "seconds": round(seconds, 3), **info}
    if stale:
        note = (f"{len(stale)} finished row(s) rerun and replaced because their settings changed (codec "
                "options, frame file, peak, colour or Hausdorff setting)")
        if unversioned:
            note += (f"; {unversioned} of them had no settings fingerprint (a table written before the column "
                     "existed) and were treated as stale")
        summary["note"] = note
    return summary

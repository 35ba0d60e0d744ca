"""Benchmark configuration: a TOML file read into frozen dataclasses, validated before any work.

Layout (every key except ``sequences`` and ``codecs`` is optional)::

    [bench]
    out = "results.csv"              # default for --out (relative paths: relative to this file;
                                     # without both: CONFIG.csv in the current directory)
    cache_dir = ".bench-cache"       # where synthetic sequences are generated (default:
                                     # $XDG_CACHE_HOME/imcodec/bench, i.e. ~/.cache/imcodec/bench)
    peak = 1023                      # PSNR peak for every sequence (or bits = 10); default per sequence
    color = "auto"                   # Y/Cb/Cr PSNR: "auto" (when both clouds have colour), true, false
    hausdorff = false
    workers = 2                      # default local workers (--workers wins)
    retries = 3                      # attempts of a task whose worker dies
    scheduler_timeout = 10           # seconds to reach a --scheduler before giving up
    plugins = ["my_codec.py"]        # Python files that register extra codecs (imported by every worker)

    [[sequences]]
    name = "soldier"
    path = "/data/soldier_q08_%04d.ply"   # file, directory, glob or %04d pattern
    start = 536                           # optional frame window
    count = 3
    peak = 1023                           # or bits = 10; overrides [bench]

    [[sequences]]
    name = "body7"
    synth = { shape = "body", bits = 7, frames = 2, seed = 1, color = true, motion = "wave" }

    [codecs.octree]                       # the label used in the results ("codec" column)
    codec = "octree"                      # registered codec name (default: the label)
    options = { attr_qp = 28 }            # options of every rate point
    rates = { r01 = { scale = 0.125, attr_qp = 51 }, r02 = { scale = 0.25, attr_qp = 46 } }

Options are the codec's ``make_config`` keys (``scale``, ``attr_qp``, ``lossless``, ``rate``,
``geometry_qp``, ...). The peak of a synthetic sequence defaults to 2^bits - 1; a file sequence
without a peak uses 2^bit_depth - 1 of each frame (the ``peak`` column says which).
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imcodec.errors import UsageError

COLOR_MODES = ("auto", "on", "off")
_BENCH_KEYS = {"out", "cache_dir", "peak", "bits", "color", "hausdorff", "workers", "retries",
               "scheduler_timeout", "plugins"}
_SEQ_KEYS = {"name", "path", "synth", "start", "count", "peak", "bits"}
_SYNTH_KEYS = {"shape", "bits", "frames", "seed", "color", "motion"}
_CODEC_KEYS = {"codec", "options", "rates"}
_TOP_KEYS = {"bench", "sequences", "codecs"}


@dataclass(frozen=True)
class SynthSpec:
    """A synthetic sequence of :func:`imcodec.synth.make_cloud` frames t = 0..frames-1."""

    shape: str = "sphere"
    bits: int = 8
    frames: int = 1
    seed: int = 0
    color: bool = True
    motion: str = "rigid"

    @property
    def key(self) -> str:
        """Folder name of this sequence in the cache (one folder per distinct spec)."""
        return f"{self.shape}-b{self.bits}-s{self.seed}-{self.motion}-{'rgb' if self.color else 'geo'}"


@dataclass(frozen=True)
class SequenceSpec:
    """One sequence: a ``path`` spec (see :func:`imcodec.io.sequence.resolve_frames`) or ``synth``."""

    name: str
    path: str | None = None
    synth: SynthSpec | None = None
    start: int | None = None
    count: int | None = None
    peak: float | None = None


@dataclass(frozen=True)
class RatePoint:
    """A named rate point: codec options as sorted (key, value) pairs (hashable)."""

    name: str
    options: tuple[tuple[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class CodecSpec:
    """A codec under a label, with its rate points (options of every point already merged in)."""

    label: str
    codec: str
    rates: tuple[RatePoint, ...]


@dataclass(frozen=True)
class BenchConfig:
    """A whole benchmark: sequences x codecs x rate points, and how to measure them."""

    sequences: tuple[SequenceSpec, ...]
    codecs: tuple[CodecSpec, ...]
    source: Path | None = None
    out: Path | None = None
    cache_dir: Path = Path(".bench-cache")
    peak: float | None = None
    color: str = "auto"
    hausdorff: bool = False
    workers: int | None = None
    retries: int = 3
    scheduler_timeout: float = 10.0
    plugins: tuple[Path, ...] = ()


# ------------------------------------------------------------------------------------------ loading

def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/imcodec/bench (~/.cache/imcodec/bench): where synthetic frames go by default."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "imcodec" / "bench"


def load_config(path: str | os.PathLike) -> BenchConfig:
    """Read and validate a TOML config; relative paths in it are relative to its folder.

    Raises InputError for a missing/unreadable file, UsageError for bad TOML or bad values (the
    message names the file and the key).
    """
    from imcodec.io.rowstore import read_text

    path = Path(path)
    text = read_text(path, what="benchmark config")
    try:
        obj = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(obj, base=path.resolve().parent, source=path)


def parse_config(obj: dict[str, Any], base: Path | None = None, source: Path | None = None) -> BenchConfig:
    """Validate a config mapping (as TOML gives it); see the module docstring for the layout."""
    where = str(source) if source is not None else "config"
    base = Path.cwd() if base is None else Path(base)
    _unknown(obj, _TOP_KEYS, where, "the top level")
    bench = obj.get("bench", {})
    if not isinstance(bench, dict):
        raise UsageError(f"{where}: [bench] must be a table")
    _unknown(bench, _BENCH_KEYS, where, "[bench]")
    peak = _peak(bench, where, "[bench]")
    color = bench.get("color", "auto")
    if color is True or color is False:
        color = "on" if color else "off"
    if color not in COLOR_MODES:
        raise UsageError(f"{where}: [bench] color must be \"auto\", true or false, got {color!r}")
    hausdorff = _bool(bench.get("hausdorff", False), where, "[bench] hausdorff")
    workers = bench.get("workers")
    if workers is not None:
        workers = _int(workers, where, "[bench] workers", 1, 1024)
    retries = _int(bench.get("retries", 3), where, "[bench] retries", 1, 100)
    timeout = bench.get("scheduler_timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise UsageError(f"{where}: [bench] scheduler_timeout must be seconds in (0, 3600], got {timeout!r}")
    plugins = bench.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise UsageError(f"{where}: [bench] plugins must be a list of Python file paths, got {plugins!r}")
    out = bench.get("out")
    if out is not None and (not isinstance(out, str) or not out):
        raise UsageError(f"{where}: [bench] out must be a file name, got {out!r}")
    cache = bench.get("cache_dir", str(default_cache_dir()))
    if not isinstance(cache, str) or not cache:
        raise UsageError(f"{where}: [bench] cache_dir must be a directory name, got {cache!r}")
    return BenchConfig(
        sequences=_sequences(obj.get("sequences"), where, base),
        codecs=_codecs(obj.get("codecs"), where),
        source=source, out=_rel(base, out) if out else None, cache_dir=_rel(base, cache), peak=peak,
        color=color, hausdorff=hausdorff, workers=workers, retries=retries,
        scheduler_timeout=float(timeout), plugins=tuple(_rel(base, p) for p in plugins))


def _rel(base: Path, p: str) -> Path:
    q = Path(os.path.expanduser(p))
    return q if q.is_absolute() else base / q


def _unknown(table: dict, allowed: set[str], where: str, what: str) -> None:
    bad = sorted(set(table) - allowed)
    if bad:
        raise UsageError(f"{where}: unknown key(s) {', '.join(map(repr, bad))} in {what}; "
                         f"expected {', '.join(sorted(allowed))}")


def _int(v: Any, where: str, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise UsageError(f"{where}: {what} must be an integer in {lo}..{hi}, got {v!r}")
    return v


def _bool(v: Any, where: str, what: str) -> bool:
    if not isinstance(v, bool):
        raise UsageError(f"{where}: {what} must be true or false, got {v!r}")
    return v


def _peak(table: dict, where: str, what: str) -> float | None:
    peak, bits = table.get("peak"), table.get("bits")
    if peak is not None and bits is not None:
        raise UsageError(f"{where}: {what} gives both peak and bits; give one")
    if bits is not None:
        return float((1 << _int(bits, where, f"{what} bits", 1, 30)) - 1)
    if peak is None:
        return None
    if isinstance(peak, bool) or not isinstance(peak, (int, float)) or not (peak > 0 and math.isfinite(peak)):
        raise UsageError(f"{where}: {what} peak must be a positive number, got {peak!r}")
    return float(peak)


def _sequences(items: Any, where: str, base: Path) -> tuple[SequenceSpec, ...]:
    if not isinstance(items, list) or not items:
        raise UsageError(f"{where}: needs at least one [[sequences]] entry")
    out, names = [], set()
    for i, s in enumerate(items, start=1):
        what = f"[[sequences]] #{i}"
        if not isinstance(s, dict):
            raise UsageError(f"{where}: {what} must be a table")
        _unknown(s, _SEQ_KEYS, where, what)
        name = s.get("name")
        if not isinstance(name, str) or not name.strip() or any(c in name for c in ",\n\r\"/\\"):
            raise UsageError(f"{where}: {what} needs a name (text without , / \\ quotes or newlines), got {name!r}")
        what = f"sequence {name!r}"
        if name in names:
            raise UsageError(f"{where}: two sequences are named {name!r}: their rows would overwrite each other")
        names.add(name)
        has_path, has_synth = "path" in s, "synth" in s
        if has_path == has_synth:
            raise UsageError(f"{where}: {what} needs exactly one of path or synth")
        start = s.get("start")
        count = s.get("count")
        if start is not None:
            start = _int(start, where, f"{what} start", 0, 1 << 31)
        if count is not None:
            count = _int(count, where, f"{what} count", 1, 1 << 31)
        peak = _peak(s, where, what)
        synth = None
        path = None
        if has_synth:
            synth = _synth(s["synth"], where, what)
            if peak is None:
                peak = float((1 << synth.bits) - 1)
        else:
            if not isinstance(s["path"], str) or not s["path"]:
                raise UsageError(f"{where}: {what} path must be a file, directory, glob or pattern, got {s['path']!r}")
            path = str(_rel(base, s["path"]))
        out.append(SequenceSpec(name=name, path=path, synth=synth, start=start, count=count, peak=peak))
    return tuple(out)


def _synth(t: Any, where: str, what: str) -> SynthSpec:
    from imcodec.synth import MOTIONS, SHAPES

    if not isinstance(t, dict):
        raise UsageError(f"{where}: {what} synth must be a table such as {{ shape = \"sphere\", bits = 7 }}")
    _unknown(t, _SYNTH_KEYS, where, f"{what} synth")
    spec = SynthSpec(shape=t.get("shape", "sphere"), bits=_int(t.get("bits", 8), where, f"{what} synth bits", 3, 16),
                     frames=_int(t.get("frames", 1), where, f"{what} synth frames", 1, 100000),
                     seed=_int(t.get("seed", 0), where, f"{what} synth seed", 0, 1 << 31),
                     color=_bool(t.get("color", True), where, f"{what} synth color"),
                     motion=t.get("motion", "rigid"))
    if spec.shape not in SHAPES:
        raise UsageError(f"{where}: {what} synth shape {spec.shape!r} is not one of {', '.join(SHAPES)}")
    if spec.motion not in MOTIONS:
        raise UsageError(f"{where}: {what} synth motion {spec.motion!r} is not one of {', '.join(MOTIONS)}")
    return spec


def _options(t: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(t, dict):
        raise UsageError(f"{where}: {what} must be a table of codec options, got {t!r}")
    for k, v in t.items():
        if not isinstance(v, (str, int, float, bool)):
            raise UsageError(f"{where}: {what} option {k!r} must be a number, string or boolean, got {v!r}")
    return dict(t)


def _codecs(table: Any, where: str) -> tuple[CodecSpec, ...]:
    if not isinstance(table, dict) or not table:
        raise UsageError(f"{where}: needs at least one [codecs.LABEL] table")
    out = []
    for label, t in table.items():
        what = f"[codecs.{label}]"
        if not label.strip():
            raise UsageError(f"{where}: codec label {label!r} in [codecs] is empty; give the codec a name "
                             "such as [codecs.octree]")
        if not isinstance(t, dict):
            raise UsageError(f"{where}: {what} must be a table")
        if any(c in label for c in ",\n\r\"/\\"):
            raise UsageError(f"{where}: codec label {label!r} may not contain , / \\ quotes or newlines")
        _unknown(t, _CODEC_KEYS, where, what)
        codec = t.get("codec", label)
        if not isinstance(codec, str) or not codec:
            raise UsageError(f"{where}: {what} codec must be a codec name, got {codec!r}")
        common = _options(t.get("options", {}), where, f"{what} options")
        rates = t.get("rates")
        if not isinstance(rates, dict) or not rates:
            raise UsageError(f"{where}: {what} needs rates = {{ NAME = {{ option = value, ... }}, ... }}")
        points = []
        for rname, ropts in rates.items():
            if not rname.strip():
                raise UsageError(f"{where}: {what} rates: rate name {rname!r} is empty; give each rate point "
                                 "a name such as r01")
            if any(c in rname for c in ",\n\r\"/\\"):
                raise UsageError(f"{where}: rate name {rname!r} may not contain , / \\ quotes or newlines")
            merged = {**common, **_options(ropts, where, f"{what} rate {rname!r}")}
            points.append(RatePoint(rname, tuple(sorted(merged.items()))))
        out.append(CodecSpec(label=label, codec=codec, rates=tuple(points)))
    return tuple(out)


# ------------------------------------------------------------------------------------ codec checks

def check_codecs(cfg: BenchConfig) -> None:
    """Load the plugins, then make every rate point's codec config: UsageError naming the codec,
    the rate and the problem (unknown codec, unsupported option, bad value), before any work."""
    from imcodec.bench.tasks import load_plugins
    from imcodec.codecs import codec_names, get_codec

    load_plugins(tuple(str(p) for p in cfg.plugins))
    names = codec_names()
    for spec in cfg.codecs:
        if spec.codec not in names:
            where = cfg.source or "config"
            raise UsageError(f"{where}: [codecs.{spec.label}] names unknown codec {spec.codec!r}; "
                             f"available: {', '.join(names)}")
        codec = get_codec(spec.codec)
        for rp in spec.rates:
            try:
                codec.make_config(rp.as_dict())
            except UsageError as exc:
                raise UsageError(f"{cfg.source or 'config'}: codec {spec.label!r} rate {rp.name!r}: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise UsageError(f"{cfg.source or 'config'}: codec {spec.label!r} rate {rp.name!r}: "
                                 f"bad option value ({exc})") from None

"""RD curves, BD-rate tables and RD plots from a benchmark results CSV.

A curve is one (sequence, codec): per rate point, the bit rates and PSNRs averaged over the frames
coded at that point (MPEG CTC practice: rates and PSNRs are averaged over the sequence, then
compared). BD-rate pairs (:data:`PAIRS`): D1 and D2 PSNR against geometry and total bits per input
point, Y, Cb and Cr PSNR against attribute and total bits per input point. Points with infinite
PSNR (lossless) cannot enter a BD integral and are left out of it; a pair with fewer than 4 finite
points, a non-monotonic curve or no overlap gets a note instead of a number. The average over
sequences is the mean of the per-sequence BD-rates (as the CTC spreadsheets do).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from pathlib import Path
from typing import Any

from imcodec.errors import InputError, UsageError

GEOMETRY_METRICS = ("d1_psnr", "d2_psnr")
COLOR_METRICS = ("y_psnr", "cb_psnr", "cr_psnr")
RATES = ("bpp_geometry", "bpp_attribute", "bpp_total")
PAIRS: tuple[tuple[str, str], ...] = (
    tuple((m, "bpp_geometry") for m in GEOMETRY_METRICS) + tuple((m, "bpp_total") for m in GEOMETRY_METRICS)
    + tuple((m, "bpp_attribute") for m in COLOR_METRICS) + tuple((m, "bpp_total") for m in COLOR_METRICS))
LABELS = {"d1_psnr": "D1 PSNR (dB)", "d2_psnr": "D2 PSNR (dB)", "y_psnr": "Y PSNR (dB)",
          "cb_psnr": "Cb PSNR (dB)", "cr_psnr": "Cr PSNR (dB)", "bpp_geometry": "geometry bits per input point",
          "bpp_attribute": "attribute bits per input point", "bpp_total": "total bits per input point"}


def pair_name(metric: str, rate: str) -> str:
    return f"{metric}/{rate}"


# columns the reports and the gate read: a results table without one of them is damaged
REQUIRED_COLUMNS = ("sequence", "frame", "codec", "rate") + RATES + GEOMETRY_METRICS + COLOR_METRICS
_INT_RE = re.compile(r"[0-9]+")
# numeric columns: (required, lowest allowed value, whether the lowest value itself is allowed, +inf allowed)
_NUMERIC_RULES: dict[str, tuple[bool, float, bool, bool]] = {
    "frame": (True, 0, True, False),
    "points": (False, 0, False, False), "decoded_points": (False, 0, True, False),
    "bytes_total": (False, 0, False, False), "bytes_geometry": (False, 0, True, False),
    "bytes_attribute": (False, 0, True, False),
    "peak": (False, 0, False, False),
    "bpp_total": (True, 0, False, False), "bpp_geometry": (False, 0, True, False),
    "bpp_attribute": (False, 0, True, False),
    "d1_mse": (False, 0, True, False), "d2_mse": (False, 0, True, False),
    "encode_s": (False, 0, True, False), "decode_s": (False, 0, True, False), "metrics_s": (False, 0, True, False),
    "task_s": (False, 0, True, False), "cpu_s": (False, 0, True, False), "peak_mem_mib": (False, 0, True, False),
}
# PSNRs (and any other float column): finite, or +inf (a lossless point); never NaN or -inf


def _check_cell(column: str, kind: str, text: str, where: str) -> None:
    """InputError naming ``where`` and the column when a numeric cell is not a valid value."""
    required, lo, lo_ok, inf_ok = _NUMERIC_RULES.get(column, (False, -math.inf, False, True))
    cell = text.strip()
    if not cell:
        if required:
            raise InputError(f"{where}: column {column!r} is empty")
        return
    if kind == "int":
        if not _INT_RE.fullmatch(cell) or len(cell) > 18:
            raise InputError(f"{where}: column {column!r} holds {text!r}, expected a non-negative integer")
        v: float = int(cell)
    else:
        try:
            v = float(cell)
        except ValueError:
            raise InputError(f"{where}: column {column!r} holds {text!r}, expected a number") from None
        if math.isnan(v) or v == -math.inf or (v == math.inf and not inf_ok):
            raise InputError(f"{where}: column {column!r} holds {text!r}, expected a finite number"
                             + (" or inf (lossless)" if inf_ok else ""))
    if v < lo or (v == lo and not lo_ok):
        raise InputError(f"{where}: column {column!r} holds {text!r}, expected a "
                         f"{'non-negative' if lo_ok else 'positive'} number")


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Typed rows of a results CSV written by ``bench run``; InputError naming the file, the row and
    the column when it is missing or damaged: a column of :data:`REQUIRED_COLUMNS` absent, an empty
    key cell, a frame that is not a non-negative integer, a NaN or -inf anywhere, an infinity outside
    the PSNR columns (+inf = lossless), a bit rate (``bpp_total``, ``bytes_total``) that is empty or
    not positive, another rate or size that is negative, or two rows with the same (sequence, frame,
    codec, rate) key."""
    from imcodec.bench.tasks import COLUMNS, KEY, parse_row
    from imcodec.io.rowstore import read_csv_rows

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such results table")
    header, cells = read_csv_rows(path)
    missing = [c for c in KEY if c not in header]
    if missing:
        raise InputError(f"{path}: not a bench results table (no column {', '.join(missing)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: results table has no column {', '.join(map(repr, missing))} "
                         "(a damaged or hand-edited table)")
    if not cells:
        raise InputError(f"{path}: results table has no rows")
    kinds = dict(COLUMNS)
    rows: list[dict[str, Any]] = []
    seen: dict[tuple, int] = {}
    for i, c in enumerate(cells, start=2):
        where = f"{path} row {i}"
        for col in ("sequence", "codec", "rate"):
            if not c[col].strip():
                raise InputError(f"{where}: column {col!r} is empty ({c[col]!r})")
        for col, kind in kinds.items():
            if kind != "str" and col in c:
                _check_cell(col, kind, c[col], where)
        row = parse_row(c, where=where)
        row["frame"] = int(c["frame"].strip())
        key = (row["sequence"], row["frame"], row["codec"], row["rate"])
        if key in seen:
            raise InputError(f"{where}: duplicate row for sequence {key[0]!r} frame {key[1]} codec {key[2]!r} "
                             f"rate {key[3]!r} (also row {seen[key]})")
        seen[key] = i
        rows.append(row)
    return rows


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if v is not None]
    if len(vals) != len(values) or not vals:
        return None
    return math.inf if any(math.isinf(v) for v in vals) else sum(vals) / len(vals)


def curves(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{sequence: {codec: [point, ...]}} with each point the frame average at one rate point:
    rate, frames (how many rows), frame_ids (the sorted frame numbers), bpp_geometry/attribute/total
    and the five PSNRs (None when any frame lacks it, inf when any frame is lossless), sorted by total
    rate."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["sequence"], r["codec"], r["rate"]), []).append(r)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for (seq, codec, rate), items in groups.items():
        point: dict[str, Any] = {"rate": rate, "frames": len(items),
                                 "frame_ids": sorted({int(r["frame"]) for r in items})}
        for col in RATES + GEOMETRY_METRICS + COLOR_METRICS:
            point[col] = _mean([r.get(col) for r in items])
        out.setdefault(seq, {}).setdefault(codec, []).append(point)
    for per_codec in out.values():
        for pts in per_codec.values():
            pts.sort(key=lambda p: (p["bpp_total"] if p["bpp_total"] is not None else math.inf, p["rate"]))
    return out


def finite_curve(points: list[dict[str, Any]], metric: str, rate: str) -> tuple[list[float], list[float]]:
    """(rates, qualities) of the points where both are known, the rate positive and the quality finite."""
    r, q = [], []
    for p in points:
        if p.get(rate) is None or p.get(metric) is None:
            continue
        if p[rate] > 0 and math.isfinite(p[metric]):
            r.append(float(p[rate]))
            q.append(float(p[metric]))
    return r, q


def bd_pair(anchor: list[dict], test: list[dict], metric: str, rate: str, method: str = "pchip") -> dict[str, Any]:
    """BD-rate (%) and BD-PSNR (dB) of one pair, or a note saying why there is none."""
    from imcodec.metrics.bdrate import MIN_POINTS, bd_psnr, bd_rate

    ra, qa = finite_curve(anchor, metric, rate)
    rt, qt = finite_curve(test, metric, rate)
    if len(ra) < MIN_POINTS or len(rt) < MIN_POINTS:
        return {"bd_rate": None, "bd_psnr": None,
                "note": f"needs {MIN_POINTS} finite points per curve (anchor {len(ra)}, test {len(rt)})"}
    try:
        return {"bd_rate": bd_rate(ra, qa, rt, qt, method=method), "bd_psnr": bd_psnr(ra, qa, rt, qt, method=method),
                "note": None}
    except InputError as exc:
        return {"bd_rate": None, "bd_psnr": None, "note": str(exc)}


def bd_table(rows: list[dict[str, Any]], anchor: str, test: str, method: str = "pchip") -> dict[str, Any]:
    """BD-rate/BD-PSNR of codec ``test`` against ``anchor`` per sequence and on average.

    Returns {"anchor", "test", "method", "pairs": [names], "sequences": {seq: {pair: {bd_rate,
    bd_psnr, note}}}, "average": {pair: {bd_rate, bd_psnr, sequences}}}. UsageError when a codec
    label is not in the results.
    """
    from imcodec.metrics.bdrate import METHODS

    if anchor == test:
        raise UsageError(f"--anchor and --test name the same codec {anchor!r}; compare two different codecs")
    if method not in METHODS:
        raise UsageError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    cv = curves(rows)
    codecs = sorted({c for per in cv.values() for c in per})
    for which, label in (("--anchor", anchor), ("--test", test)):
        if label not in codecs:
            raise UsageError(f"{which} {label!r} is not in the results; codecs: {', '.join(codecs)}")
    seqs: dict[str, dict[str, Any]] = {}
    for seq, per in sorted(cv.items()):
        if anchor not in per or test not in per:
            continue
        seqs[seq] = {pair_name(m, r): bd_pair(per[anchor], per[test], m, r, method) for m, r in PAIRS}
    average = {}
    for m, r in PAIRS:
        key = pair_name(m, r)
        vals = [s[key] for s in seqs.values() if s[key]["bd_rate"] is not None]
        average[key] = {"bd_rate": sum(v["bd_rate"] for v in vals) / len(vals) if vals else None,
                        "bd_psnr": sum(v["bd_psnr"] for v in vals) / len(vals) if vals else None,
                        "sequences": len(vals)}
    if not seqs:
        raise InputError(f"no sequence has results for both {anchor!r} and {test!r}")
    return {"anchor": anchor, "test": test, "method": method, "pairs": [pair_name(m, r) for m, r in PAIRS],
            "sequences": seqs, "average": average}


# ------------------------------------------------------------------------------------------- plots

def _plot_png(seq: str, metric: str, per_codec: dict[str, list[dict]]) -> bytes | None:
    from matplotlib.figure import Figure

    rate_kind = "bpp_geometry" if metric in GEOMETRY_METRICS else "bpp_attribute"
    fig = Figure(figsize=(10, 4.2), dpi=100)
    axes = fig.subplots(1, 2)
    drawn = False
    for ax, rate in zip(axes, (rate_kind, "bpp_total")):
        for codec, pts in sorted(per_codec.items()):
            r, q = finite_curve(pts, metric, rate)
            if not r:
                continue
            order = sorted(range(len(r)), key=r.__getitem__)
            ax.plot([r[i] for i in order], [q[i] for i in order], marker="o", label=codec)
            drawn = True
        ax.set_xlabel(LABELS[rate])
        ax.set_ylabel(LABELS[metric])
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if not drawn:
        return None
    fig.suptitle(f"{seq}: {LABELS[metric]}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_names(sequences: list[str]) -> dict[str, str]:
    """A distinct file-name stem per sequence: the name with runs of characters other than letters,
    digits, ``.``, ``_`` and ``-`` replaced by ``_`` (at most 80 characters), plus ``-`` and a short hash
    of the name when that changed it or when two stems would still collide (also ignoring case, for
    case-insensitive file systems); ``a b``, ``a_b`` and ``a:b`` get three different stems."""
    def digest(seq: str, n: int = 8) -> str:
        return hashlib.sha1(seq.encode("utf-8", "surrogatepass")).hexdigest()[:n]

    out: dict[str, str] = {}
    for seq in sorted(set(sequences)):
        clean = re.sub(r"[^A-Za-z0-9._-]+", "_", seq)[:80]
        out[seq] = clean if clean == seq and clean not in (".", "..") else f"{clean}-{digest(seq)}"
    counts: dict[str, int] = {}
    for stem in out.values():
        counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
    for seq, stem in list(out.items()):
        if counts[stem.casefold()] > 1:
            out[seq] = f"{stem}-{digest(seq, 16)}"
    taken: set[str] = set()
    for seq, stem in sorted(out.items()):  # last resort (hash collisions): a counter
        k, unique = 1, stem
        while unique.casefold() in taken:
            k += 1
            unique = f"{stem}-{k}"
        taken.add(unique.casefold())
        out[seq] = unique
    return out


def plot_curves(rows: list[dict[str, Any]], folder: str | os.PathLike) -> list[Path]:
    """Write one PNG per sequence and metric (``STEM_METRIC.png`` with the file-name stem of
    :func:`plot_names`, every codec of the results, against the component rate and the total rate)
    into ``folder``; returns the written paths (all distinct)."""
    from imcodec.io.files import ensure_dir, write_bytes_atomic

    folder = ensure_dir(folder)
    cv = curves(rows)
    stems = plot_names(list(cv))
    written: list[Path] = []
    for seq, per in sorted(cv.items()):
        for metric in GEOMETRY_METRICS + COLOR_METRICS:
            png = _plot_png(seq, metric, per)
            if png is None:
                continue
            path = folder / f"{stems[seq]}_{metric.replace('_psnr', '')}.png"
            if path in written:  # cannot happen with distinct stems; never report a plot twice
                raise InputError(f"{path}: two RD plots would share this file name")
            write_bytes_atomic(path, png)
            written.append(path)
    return written

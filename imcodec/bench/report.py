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

import io
import math
import os
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


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Typed rows of a results CSV written by ``bench run``; InputError when missing or damaged."""
    from imcodec.bench.tasks import KEY, parse_row
    from imcodec.io.rowstore import read_csv_rows

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such results table")
    header, cells = read_csv_rows(path)
    missing = [c for c in KEY if c not in header]
    if missing:
        raise InputError(f"{path}: not a bench results table (no column {', '.join(missing)})")
    if not cells:
        raise InputError(f"{path}: results table has no rows")
    return [parse_row(c, where=f"{path} row {i}") for i, c in enumerate(cells, start=2)]


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if v is not None]
    if len(vals) != len(values) or not vals:
        return None
    return math.inf if any(math.isinf(v) for v in vals) else sum(vals) / len(vals)


def curves(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{sequence: {codec: [point, ...]}} with each point the frame average at one rate point:
    rate, frames, bpp_geometry/attribute/total and the five PSNRs (None when any frame lacks it,
    inf when any frame is lossless), sorted by total rate."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["sequence"], r["codec"], r["rate"]), []).append(r)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for (seq, codec, rate), items in groups.items():
        point: dict[str, Any] = {"rate": rate, "frames": len(items)}
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


def plot_curves(rows: list[dict[str, Any]], folder: str | os.PathLike) -> list[Path]:
    """Write one PNG per sequence and metric (``SEQ_METRIC.png``, every codec of the results, against
    the component rate and the total rate) into ``folder``; returns the written paths."""
    import re

    from imcodec.io.files import ensure_dir, write_bytes_atomic

    folder = ensure_dir(folder)
    written = []
    for seq, per in sorted(curves(rows).items()):
        for metric in GEOMETRY_METRICS + COLOR_METRICS:
            png = _plot_png(seq, metric, per)
            if png is None:
                continue
            path = folder / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', seq)}_{metric.replace('_psnr', '')}.png"
            write_bytes_atomic(path, png)
            written.append(path)
    return written

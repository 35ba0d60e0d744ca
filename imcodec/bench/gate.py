"""BD-rate regression gate: compare a results CSV with a recorded baseline of RD curves.

A baseline (:func:`make_baseline`) stores, per sequence and codec, the frame-averaged RD points of
:func:`imcodec.bench.report.curves`. :func:`check` recomputes the curves from new results and, for
every sequence, codec and BD pair (:data:`imcodec.bench.report.PAIRS`), computes the BD-rate of the
new curve against the baseline's (positive = more bits for the same quality = worse):

* with 4+ finite points on both curves: a regression when BD-rate > ``max_bdrate`` percent;
* rate points lossless in the baseline (infinite PSNR): a regression when the point's rate grew by
  more than ``max_bdrate`` percent, or when it is no longer lossless;
* otherwise (too few points for BD): per rate point of the same name, a regression when its rate
  grew by more than ``max_bdrate`` percent or its PSNR fell by more than ``max_psnr_drop`` dB.

A sequence or codec of the baseline missing from the results is a regression too (the gate must not
pass because a run lost data). Pairs whose metric neither side has (no colour) are skipped.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from imcodec.bench.report import PAIRS, bd_pair, curves, pair_name
from imcodec.errors import InputError

BASELINE_VERSION = 1
_POINT_KEYS = ("rate", "frames", "bpp_geometry", "bpp_attribute", "bpp_total", "d1_psnr", "d2_psnr",
               "y_psnr", "cb_psnr", "cr_psnr")


def _enc(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def _dec(v: Any) -> Any:
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    return v


def make_baseline(rows: list[dict[str, Any]], source: str | None = None) -> dict[str, Any]:
    """The baseline object (JSON-ready: infinities as "inf") for results ``rows``."""
    cv = curves(rows)
    return {"imcodec_bench_baseline": BASELINE_VERSION, "source": source,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "curves": {seq: {codec: [{k: _enc(p.get(k)) for k in _POINT_KEYS} for p in pts]
                             for codec, pts in sorted(per.items())} for seq, per in sorted(cv.items())}}


def write_baseline(path: str | os.PathLike, rows: list[dict[str, Any]], source: str | None = None) -> dict[str, Any]:
    from imcodec.io.files import write_text_atomic

    base = make_baseline(rows, source)
    write_text_atomic(path, json.dumps(base, indent=1) + "\n")
    return base


def read_baseline(path: str | os.PathLike) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The curves of a baseline file; InputError naming the file when it is not one."""
    from imcodec.io.rowstore import read_text

    text = read_text(path, what="baseline")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: bad JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(obj, dict) or obj.get("imcodec_bench_baseline") != BASELINE_VERSION \
            or not isinstance(obj.get("curves"), dict):
        raise InputError(f"{path}: not an imcodec bench baseline (version {BASELINE_VERSION}); "
                         "write one with bench check --write-baseline")
    try:
        return {seq: {codec: [{k: _dec(p.get(k)) for k in _POINT_KEYS} for p in pts] for codec, pts in per.items()}
                for seq, per in obj["curves"].items()}
    except (AttributeError, TypeError):
        raise InputError(f"{path}: baseline curves are malformed") from None


def _pct(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old <= 0:
        return None
    return 100.0 * (new / old - 1.0)


def _pair_check(base: list[dict], cur: list[dict], metric: str, rate: str, max_bdrate: float,
                max_psnr_drop: float, method: str) -> tuple[dict[str, Any] | None, list[str]]:
    """(entry for the report or None when the metric is absent, list of regression reasons)."""
    if all(p.get(metric) is None for p in base) and all(p.get(metric) is None for p in cur):
        return None, []
    reasons: list[str] = []
    entry: dict[str, Any] = {"bd_rate": None, "mode": None}
    bd = bd_pair(base, cur, metric, rate, method)
    if bd["bd_rate"] is not None:
        entry.update(bd_rate=bd["bd_rate"], mode="bd-rate")
        if bd["bd_rate"] > max_bdrate:
            reasons.append(f"BD-rate {bd['bd_rate']:+.2f}% > {max_bdrate:g}%")
    by_name = {p["rate"]: p for p in cur}
    for bp in base:
        cp = by_name.get(bp["rate"])
        bq, br = bp.get(metric), bp.get(rate)
        if cp is None:
            reasons.append(f"rate point {bp['rate']} missing")
            continue
        cq, cr = cp.get(metric), cp.get(rate)
        if bq is not None and math.isinf(bq):  # lossless in the baseline
            entry["mode"] = entry["mode"] or "lossless points"
            if cq is None or not math.isinf(cq):
                reasons.append(f"rate point {bp['rate']} is no longer lossless ({cq})")
            elif (d := _pct(cr, br)) is not None and d > max_bdrate:
                reasons.append(f"lossless rate point {bp['rate']}: rate {d:+.2f}% > {max_bdrate:g}%")
        elif bd["bd_rate"] is None and bq is not None:
            entry["mode"] = "per point"
            d = _pct(cr, br)
            if d is not None and d > max_bdrate:
                reasons.append(f"rate point {bp['rate']}: rate {d:+.2f}% > {max_bdrate:g}%")
            if cq is None or cq < bq - max_psnr_drop:
                reasons.append(f"rate point {bp['rate']}: PSNR {bq:.3f} -> {cq} dB (more than {max_psnr_drop:g} dB lower)")
    if entry["mode"] is None:
        entry["mode"] = "unchecked"
        entry["note"] = bd["note"]
    return entry, reasons


def check(rows: list[dict[str, Any]], baseline: dict[str, dict[str, list[dict]]], max_bdrate: float = 1.0,
          max_psnr_drop: float = 0.05, method: str = "pchip") -> dict[str, Any]:
    """Compare results with a baseline (see the module docstring).

    Returns {"passed": bool, "max_bdrate", "regressions": [{"sequence", "codec", "pair", "reason"}],
    "results": {seq: {codec: {pair: {"bd_rate", "mode"}}}}}.
    """
    if not (max_bdrate >= 0 and math.isfinite(max_bdrate)):
        from imcodec.errors import UsageError

        raise UsageError(f"--max-bdrate must be a non-negative percentage, got {max_bdrate}")
    cv = curves(rows)
    regressions: list[dict[str, str]] = []
    results: dict[str, Any] = {}
    for seq, per in sorted(baseline.items()):
        for codec, base_pts in sorted(per.items()):
            cur = cv.get(seq, {}).get(codec)
            if cur is None:
                regressions.append({"sequence": seq, "codec": codec, "pair": "-", "reason": "missing from the results"})
                continue
            for m, r in PAIRS:
                entry, reasons = _pair_check(base_pts, cur, m, r, max_bdrate, max_psnr_drop, method)
                if entry is None:
                    continue
                results.setdefault(seq, {}).setdefault(codec, {})[pair_name(m, r)] = entry
                regressions += [{"sequence": seq, "codec": codec, "pair": pair_name(m, r), "reason": why}
                                for why in dict.fromkeys(reasons)]
    return {"passed": not regressions, "max_bdrate": max_bdrate, "regressions": regressions, "results": results}


def baseline_path_check(results: Path, baseline: Path) -> None:
    """UsageError when the baseline would overwrite the results table."""
    from imcodec.errors import UsageError

    if Path(os.path.realpath(results)) == Path(os.path.realpath(baseline)):
        raise UsageError(f"--baseline {baseline}: is the results table itself")

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

A sequence, codec or rate point of the baseline missing from the results, or a rate point measured on
fewer frames (or, where the baseline lists them, without some of its frames), is a regression too (the
gate must not pass because a run lost data). Pairs whose metric neither side has (no colour) are
skipped. A baseline with nothing to check (no curves, a curve without points) is an error, not a pass.
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
_POINT_KEYS = ("rate", "frames", "frame_ids", "bpp_geometry", "bpp_attribute", "bpp_total", "d1_psnr", "d2_psnr",
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
    """The curves of a baseline file; InputError naming the file when it is not one, or when it is
    malformed (see :func:`validate_baseline`)."""
    from imcodec.io.rowstore import read_text

    text = read_text(path, what="baseline")
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: bad JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise InputError(f"{path}: malformed baseline: {exc}") from None
    if not isinstance(obj, dict) or obj.get("imcodec_bench_baseline") != BASELINE_VERSION \
            or not isinstance(obj.get("curves"), dict):
        raise InputError(f"{path}: not an imcodec bench baseline (version {BASELINE_VERSION}); "
                         "write one with bench check --write-baseline")
    raw = obj["curves"]
    for seq, per in raw.items():
        if not isinstance(per, dict):
            raise InputError(f"{path}: malformed baseline: curves of sequence {seq!r} are "
                             f"{type(per).__name__}, expected an object of codecs")
        for codec, pts in per.items():
            if not isinstance(pts, list):
                raise InputError(f"{path}: malformed baseline: sequence {seq!r} codec {codec!r} holds "
                                 f"{type(pts).__name__}, expected a list of rate points")
            for i, p in enumerate(pts, start=1):
                if not isinstance(p, dict):
                    raise InputError(f"{path}: malformed baseline: sequence {seq!r} codec {codec!r} point #{i} "
                                     f"is {p!r}, expected an object")
    curves_ = {seq: {codec: [{k: _dec(v) for k, v in p.items()} for p in pts] for codec, pts in per.items()}
               for seq, per in raw.items()}
    validate_baseline(curves_, where=str(path))
    return curves_


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid value (write infinities as \"inf\")")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_baseline(baseline: Any, where: str = "baseline") -> None:
    """InputError ("WHERE: malformed baseline: ...", one line) unless ``baseline`` has something to
    check: at least one sequence, each with at least one codec, each curve with at least one rate
    point; every point an object with a non-empty, unique ``rate`` name, ``frames`` (a positive
    integer), optional ``frame_ids`` (that many distinct non-negative integers), ``bpp_total`` (a
    positive number), ``bpp_geometry``/``bpp_attribute`` (null or a non-negative number) and the PSNRs
    (null, a finite number or inf); and each curve with at least one metric against a rate."""
    from imcodec.bench.report import COLOR_METRICS, GEOMETRY_METRICS

    def bad(msg: str) -> InputError:
        return InputError(f"{where}: malformed baseline: {msg}")

    if not isinstance(baseline, dict) or not baseline:
        raise bad("no curves (nothing to check); write one with bench check --write-baseline")
    for seq, per in baseline.items():
        if not isinstance(seq, str) or not seq.strip():
            raise bad(f"empty sequence name {seq!r}")
        if not isinstance(per, dict) or not per:
            raise bad(f"sequence {seq!r} has no codec curves")
        for codec, pts in per.items():
            what = f"sequence {seq!r} codec {codec!r}"
            if not isinstance(codec, str) or not codec.strip():
                raise bad(f"sequence {seq!r}: empty codec label {codec!r}")
            if not isinstance(pts, list) or not pts:
                raise bad(f"{what} has no rate points")
            names: set[str] = set()
            for i, p in enumerate(pts, start=1):
                if not isinstance(p, dict):
                    raise bad(f"{what} point #{i} is {p!r}, expected an object")
                rate = p.get("rate")
                if not isinstance(rate, str) or not rate.strip():
                    raise bad(f"{what} point #{i} has no rate name (rate = {rate!r})")
                pw = f"{what} rate point {rate!r}"
                if rate in names:
                    raise bad(f"{what} has two rate points named {rate!r}")
                names.add(rate)
                frames = p.get("frames")
                if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
                    raise bad(f"{pw}: frames is {frames!r}, expected a positive integer")
                ids = p.get("frame_ids")
                if ids is not None and (not isinstance(ids, list) or len(ids) != frames
                                        or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0
                                                   for f in ids) or len(set(ids)) != len(ids)):
                    raise bad(f"{pw}: frame_ids is {ids!r}, expected {frames} distinct frame numbers")
                for key in ("bpp_total", "bpp_geometry", "bpp_attribute"):
                    v = p.get(key)
                    if v is None and key != "bpp_total":
                        continue
                    if not _is_number(v) or not math.isfinite(v) or v < 0 or (key == "bpp_total" and v == 0):
                        raise bad(f"{pw}: {key} is {_show(v)}, expected a "
                                  f"{'positive' if key == 'bpp_total' else 'non-negative'} number")
                for key in GEOMETRY_METRICS + COLOR_METRICS:
                    v = p.get(key)
                    if v is not None and (not _is_number(v) or math.isnan(v) or v == -math.inf):
                        raise bad(f"{pw}: {key} is {_show(v)}, expected a PSNR in dB, \"inf\" or null")
            if not any(p.get(m) is not None and p.get(r) is not None for m, r in PAIRS for p in pts):
                raise bad(f"{what} has no PSNR with a rate at any point (nothing to check)")


def _show(v: Any) -> str:
    return _enc(v) if _is_number(v) and math.isinf(v) else repr(v)


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


def check_tolerances(max_bdrate: float, max_psnr_drop: float) -> None:
    """UsageError unless both tolerances are finite and non-negative."""
    from imcodec.errors import UsageError

    if not (isinstance(max_bdrate, (int, float)) and max_bdrate >= 0 and math.isfinite(max_bdrate)):
        raise UsageError(f"--max-bdrate must be a finite, non-negative percentage, got {max_bdrate}")
    if not (isinstance(max_psnr_drop, (int, float)) and max_psnr_drop >= 0 and math.isfinite(max_psnr_drop)):
        raise UsageError(f"--max-psnr-drop must be a finite, non-negative number of dB, got {max_psnr_drop}")


def _frames_text(ids: list[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def _frame_check(base: list[dict], cur: list[dict]) -> list[str]:
    """Regression reasons for rate points measured on fewer frames, or other frames, than in the
    baseline (a frame average over fewer frames must not pass as the same curve)."""
    reasons = []
    by_name = {p["rate"]: p for p in cur}
    for bp in base:
        cp = by_name.get(bp["rate"])
        if cp is None:
            continue  # reported per pair as a missing rate point
        b_ids, c_ids = bp.get("frame_ids"), cp.get("frame_ids")
        if b_ids is not None and c_ids is not None:
            lost = sorted(set(b_ids) - set(c_ids))
            if lost:
                reasons.append(f"rate point {bp['rate']}: frame(s) {_frames_text(lost)} missing from the results "
                               f"({len(c_ids)} of the baseline's {len(b_ids)} frames)")
                continue
        if cp["frames"] < bp["frames"]:
            reasons.append(f"rate point {bp['rate']}: {cp['frames']} frame(s) in the results, "
                           f"{bp['frames']} in the baseline (frames missing)")
    return reasons


def check(rows: list[dict[str, Any]], baseline: dict[str, dict[str, list[dict]]], max_bdrate: float = 1.0,
          max_psnr_drop: float = 0.05, method: str = "pchip") -> dict[str, Any]:
    """Compare results with a baseline (see the module docstring).

    Returns {"passed": bool, "max_bdrate", "regressions": [{"sequence", "codec", "pair", "reason"}],
    "results": {seq: {codec: {pair: {"bd_rate", "mode"}}}}}.
    """
    check_tolerances(max_bdrate, max_psnr_drop)
    validate_baseline(baseline)
    cv = curves(rows)
    regressions: list[dict[str, str]] = []
    results: dict[str, Any] = {}
    for seq, per in sorted(baseline.items()):
        for codec, base_pts in sorted(per.items()):
            cur = cv.get(seq, {}).get(codec)
            if cur is None:
                regressions.append({"sequence": seq, "codec": codec, "pair": "-", "reason": "missing from the results"})
                continue
            regressions += [{"sequence": seq, "codec": codec, "pair": "-", "reason": why}
                            for why in _frame_check(base_pts, cur)]
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

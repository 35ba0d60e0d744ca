"""The regression gate (bench check) on broken input: empty or malformed baselines, lost frames, bad
tolerances, and --write-baseline's options. It must never pass on input it cannot really check."""

from __future__ import annotations

import json
import math

import pytest

from imcodec.bench import gate
from imcodec.bench.report import curves
from imcodec.bench.tasks import HEADER, format_row
from imcodec.errors import InputError, UsageError
from imcodec.io.rowstore import write_csv_rows

RATES = ("r1", "r2", "r3", "r4", "r5")


def _rows(codec: str = "oa", seq: str = "s5", frames=(0, 1), rates=RATES) -> list[dict]:
    out = []
    for f in frames:
        for i, r in enumerate(rates):
            geo, att = 0.1 * 2 ** i, 0.2 * 2 ** i
            q = 50.0 + 3.0 * i + 0.1 * f
            out.append({"sequence": seq, "frame": f, "codec": codec, "rate": r, "points": 1000,
                        "bpp_geometry": geo, "bpp_attribute": att, "bpp_total": geo + att + 0.01,
                        "d1_psnr": q, "d2_psnr": q + 4, "y_psnr": q - 20, "cb_psnr": q - 15, "cr_psnr": q - 14})
    return out


def _csv(path, rows):
    write_csv_rows(path, HEADER, [format_row(r) for r in rows])
    return path


def _json(path, obj):
    path.write_text(json.dumps(obj))
    return path


POINT = {"rate": "r1", "frames": 1, "bpp_geometry": 0.1, "bpp_attribute": 0.2, "bpp_total": 0.31,
         "d1_psnr": 50.0, "d2_psnr": 54.0, "y_psnr": 30.0, "cb_psnr": 35.0, "cr_psnr": 36.0}
V = "imcodec_bench_baseline"


# ------------------------------------------------------------------------------ malformed baselines

@pytest.mark.parametrize("curves_, match", [
    ({}, "no curves"),
    ({"s5": {}}, "sequence 's5' has no codec curves"),
    ({"s5": {"oa": []}}, "sequence 's5' codec 'oa' has no rate points"),
    ({"s5": {"oa": [{k: v for k, v in POINT.items() if k != "rate"}]}}, r"point #1 has no rate name \(rate = None\)"),
    ({"s5": {"oa": [dict(POINT, rate="")]}}, "point #1 has no rate name"),
    ({"s5": {"oa": [POINT, POINT]}}, "two rate points named 'r1'"),
    ({"s5": {"oa": [dict(POINT, bpp_total="abc")]}}, "rate point 'r1': bpp_total is 'abc', expected a positive number"),
    ({"s5": {"oa": [dict(POINT, d1_psnr="x")]}}, "rate point 'r1': d1_psnr is 'x', expected a PSNR"),
    ({"s5": {"oa": [dict(POINT, d1_psnr=True)]}}, "d1_psnr is True"),
    ({"s5": {"oa": [dict(POINT, d1_psnr="-inf")]}}, "d1_psnr is -inf"),
    ({"s5": {"oa": [dict(POINT, bpp_total=0)]}}, "bpp_total is 0"),
    ({"s5": {"oa": [dict(POINT, bpp_total="inf")]}}, "bpp_total is inf"),
    ({"s5": {"oa": [dict(POINT, bpp_geometry=-1)]}}, "bpp_geometry is -1, expected a non-negative number"),
    ({"s5": {"oa": [dict(POINT, frames=0)]}}, "frames is 0, expected a positive integer"),
    ({"s5": {"oa": [dict(POINT, frames="2")]}}, "frames is '2'"),
    ({"s5": {"oa": [dict(POINT, frame_ids=[0, 1])]}}, r"frame_ids is \[0, 1\], expected 1 distinct frame numbers"),
    ({"s5": {"oa": [dict(POINT, **{m: None for m in ("d1_psnr", "d2_psnr", "y_psnr", "cb_psnr", "cr_psnr")})]}},
     "has no PSNR with a rate at any point"),
    ({"s5": {"oa": [5]}}, "point #1 is 5, expected an object"),
    ({"s5": {"oa": {"a": 1}}}, "holds dict, expected a list of rate points"),
    ({"s5": [1, 2]}, "curves of sequence 's5' are list"),
])
def test_malformed_baseline_is_an_error(tmp_path, curves_, match):
    path = _json(tmp_path / "b.json", {V: 1, "curves": curves_})
    with pytest.raises(InputError, match=f"^{path}: .*{match}"):
        gate.read_baseline(path)


def test_nan_literal_in_baseline_is_an_error(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('{"%s": 1, "curves": {"s5": {"oa": [{"rate": "r1", "frames": 1, "bpp_total": 0.3, '
                    '"d1_psnr": NaN}]}}}' % V)
    with pytest.raises(InputError, match="malformed baseline: NaN is not a valid value"):
        gate.read_baseline(path)


def test_check_refuses_an_empty_baseline_mapping():
    with pytest.raises(InputError, match="malformed baseline: no curves"):
        gate.check(_rows(), {})
    with pytest.raises(InputError, match="has no rate points"):
        gate.check(_rows(), {"s5": {"oa": []}})


@pytest.mark.parametrize("curves_", [{}, {"s5": {}}, {"s5": {"oa": []}}])
def test_cli_empty_baseline_fails(tmp_path, run_cli, curves_):
    res = _csv(tmp_path / "r.csv", _rows())
    base = _json(tmp_path / "b.json", {V: 1, "curves": curves_})
    code, stdout, err = run_cli("bench", "check", res, "--baseline", base)
    assert code == 1 and "passed" not in stdout
    assert err.startswith(f"imcodec: error: {base}: malformed baseline") and err.count("\n") == 1


@pytest.mark.parametrize("point", [
    {k: v for k, v in POINT.items() if k != "rate"},   # was: "rate point None missing"
    dict(POINT, bpp_total="abc", d1_psnr="x"),         # was: internal error: TypeError
])
def test_cli_bad_baseline_point_is_one_line(tmp_path, run_cli, point):
    res = _csv(tmp_path / "r.csv", _rows(frames=(0,)))
    base = _json(tmp_path / "b.json", {V: 1, "curves": {"s5": {"oa": [point]}}})
    code, stdout, err = run_cli("bench", "check", res, "--baseline", base)
    assert code == 1 and stdout == "" and err.count("\n") == 1
    assert "malformed baseline" in err and "internal error" not in err


def test_written_baseline_round_trips_with_frame_ids_and_infinity(tmp_path):
    rows = _rows()
    rows = [dict(r, d1_psnr=math.inf) if r["rate"] == "r5" else r for r in rows]
    path = tmp_path / "b.json"
    gate.write_baseline(path, rows)
    base = gate.read_baseline(path)
    p = base["s5"]["oa"][-1]
    assert p["frames"] == 2 and p["frame_ids"] == [0, 1] and p["d1_psnr"] == math.inf
    assert gate.check(rows, base)["passed"]
    # a baseline of an older version: no frame_ids
    obj = json.loads(path.read_text())
    for pt in obj["curves"]["s5"]["oa"]:
        del pt["frame_ids"]
    assert gate.check(rows, gate.read_baseline(_json(tmp_path / "old.json", obj)))["passed"]


# ----------------------------------------------------------------------------------- lost frames

def test_missing_frames_are_regressions_naming_them():
    rows = _rows(frames=(0, 1, 2))
    base = curves(rows)
    lost = [r for r in rows if not (r["frame"] == 1 and r["rate"] == "r2")]
    res = gate.check(lost, base)
    assert not res["passed"]
    assert [(r["sequence"], r["codec"]) for r in res["regressions"]] == [("s5", "oa")]
    assert "rate point r2: frame(s) 1 missing from the results (2 of the baseline's 3 frames)" in \
        res["regressions"][0]["reason"]
    # a whole frame lost at every rate point (the frame average of what is left may still look fine)
    res = gate.check([r for r in rows if r["frame"] != 2], base)
    frame_regs = [r for r in res["regressions"] if r["pair"] == "-"]
    assert not res["passed"] and len(frame_regs) == len(RATES)
    assert all("frame(s) 2 missing" in r["reason"] for r in frame_regs)
    # the same number of frames, but other ones
    base2 = curves(_rows(frames=(0, 2)))
    res = gate.check(_rows(frames=(0, 3)), base2)
    assert not res["passed"] and len(res["regressions"]) == len(RATES)
    assert all("frame(s) 2 missing" in r["reason"] for r in res["regressions"])
    # more frames than the baseline is not a loss
    assert gate.check(rows + [dict(r, frame=7) for r in rows if r["frame"] == 0], base)["passed"]


def test_missing_frames_with_a_count_only_baseline():
    rows = _rows(frames=(0, 1))
    base = {seq: {c: [{k: v for k, v in p.items() if k != "frame_ids"} for p in pts] for c, pts in per.items()}
            for seq, per in curves(rows).items()}
    res = gate.check([r for r in rows if r["frame"] == 0], base)
    assert not res["passed"]
    assert "rate point r1: 1 frame(s) in the results, 2 in the baseline (frames missing)" in \
        [r["reason"] for r in res["regressions"]]


def test_cli_reports_lost_frame(tmp_path, run_cli):
    res = _csv(tmp_path / "r.csv", _rows())
    base = tmp_path / "b.json"
    assert run_cli("bench", "check", res, "--baseline", base, "--write-baseline")[0] == 0
    lost = _csv(tmp_path / "lost.csv", [r for r in _rows() if r["frame"] == 0])
    code, stdout, err = run_cli("bench", "check", lost, "--baseline", base)
    assert code == 1
    assert "REGRESSION s5 oa -: rate point r1: frame(s) 1 missing from the results" in stdout
    assert "s5/oa" in err


# ------------------------------------------------------------------------------------ tolerances

@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -0.1])
def test_max_psnr_drop_must_be_finite_and_non_negative(value):
    rows = _rows(rates=RATES[:3])
    base = curves(rows)
    with pytest.raises(UsageError, match="--max-psnr-drop must be a finite, non-negative number of dB"):
        gate.check(rows, base, max_psnr_drop=value)
    with pytest.raises(UsageError, match="--max-bdrate must be a finite, non-negative percentage"):
        gate.check(rows, base, max_bdrate=value)


@pytest.mark.parametrize("flag", ["--max-psnr-drop", "--max-bdrate"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_cli_bad_tolerance_exit_2(tmp_path, run_cli, flag, value):
    res = _csv(tmp_path / "r.csv", _rows())
    base = tmp_path / "b.json"
    gate.write_baseline(base, _rows())
    code, stdout, err = run_cli("bench", "check", res, "--baseline", base, f"{flag}={value}")
    assert code == 2 and stdout == "" and flag in err and err.count("\n") == 1


def test_zero_psnr_drop_still_checks():
    rows = _rows(rates=RATES[:3])
    base = curves(rows)
    assert gate.check(rows, base, max_psnr_drop=0.0)["passed"]
    worse = [dict(r, cr_psnr=r["cr_psnr"] - 1.0) for r in rows]
    assert not gate.check(worse, base, max_psnr_drop=0.0)["passed"]


# -------------------------------------------------------------------------------- --write-baseline

def test_write_baseline_takes_no_tolerance_and_keeps_an_existing_file(tmp_path, run_cli):
    res = _csv(tmp_path / "r.csv", _rows())
    base = tmp_path / "b.json"
    for extra in (["--max-bdrate", "5"], ["--max-psnr-drop", "0.1"]):
        code, _, err = run_cli("bench", "check", res, "--baseline", base, "--write-baseline", *extra)
        assert code == 2 and f"{extra[0]} does not apply with --write-baseline" in err and not base.exists()
    code, _, err = run_cli("bench", "check", res, "--baseline", base, "--write-baseline")
    assert code == 0 and base.is_file(), err
    before = base.read_text()
    other = _csv(tmp_path / "other.csv", _rows(codec="ob"))
    code, _, err = run_cli("bench", "check", other, "--baseline", base, "--write-baseline")
    assert code == 2 and "already exists" in err and "--force" in err and err.count("\n") == 1
    assert base.read_text() == before
    code, _, err = run_cli("bench", "check", other, "--baseline", base, "--write-baseline", "--force")
    assert code == 0, err
    assert set(json.loads(base.read_text())["curves"]["s5"]) == {"ob"}
    code, _, err = run_cli("bench", "check", other, "--baseline", base, "--force")
    assert code == 2 and "--force applies only with --write-baseline" in err


def test_library_write_baseline_also_keeps_an_existing_file(tmp_path):
    from imcodec import api

    res = _csv(tmp_path / "r.csv", _rows())
    base = tmp_path / "b.json"
    assert api.bench_check(res, base, write_baseline=True)["written"]
    before = base.read_text()
    other = _csv(tmp_path / "other.csv", _rows(codec="ob"))
    with pytest.raises(UsageError, match="already exists; pass --force"):
        api.bench_check(other, base, write_baseline=True)
    assert base.read_text() == before
    assert api.bench_check(other, base, write_baseline=True, force=True)["written"]
    assert set(json.loads(base.read_text())["curves"]["s5"]) == {"ob"}

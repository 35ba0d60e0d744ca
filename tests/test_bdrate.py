"""BD-rate / BD-PSNR: closed-form properties, hand-computed examples, scipy's pchip as a reference,
RD-table reading (CSV/JSON layouts, bad files) and the ``imcodec bdrate`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import PchipInterpolator

from imcodec.errors import InputError, UsageError
from imcodec.io.tables import read_rd_table
from imcodec.metrics.bdrate import bd_psnr, bd_rate

METHODS = ["pchip", "cubic"]


# ------------------------------------------------------------------------------------ strategies

@st.composite
def curves(draw, n_min=4, n_max=8):
    """A random RD curve: (rates, qualities), both strictly increasing, rates spanning ~1-3 decades."""
    n = draw(st.integers(n_min, n_max))
    steps = draw(st.lists(st.floats(0.05, 0.6), min_size=n - 1, max_size=n - 1))
    lr0 = draw(st.floats(-3.0, 1.0))
    log_r = lr0 + np.concatenate([[0.0], np.cumsum(steps)])
    gains = draw(st.lists(st.floats(0.2, 5.0), min_size=n - 1, max_size=n - 1))
    q0 = draw(st.floats(20.0, 60.0))
    q = q0 + np.concatenate([[0.0], np.cumsum(gains)])
    return 10.0 ** log_r, q


def _shuffled(r, q, seed):
    p = np.random.default_rng(seed).permutation(len(r))
    return r[p], q[p]


# -------------------------------------------------------------------------------------- properties

@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=60, deadline=None)
@given(c=curves(), factor=st.floats(0.3, 3.0), seed=st.integers(0, 1000))
def test_scaled_rates_give_the_scale(method, c, factor, seed):
    r, q = c
    assert bd_rate(r, q, r, q, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(r, q, r, q, method) == pytest.approx(0.0, abs=1e-9)
    rt, qt = _shuffled(r * 0.9, q, seed)  # input order must not matter
    assert bd_rate(r, q, rt, qt, method) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(r, q, r * factor, q, method) == pytest.approx(100.0 * (factor - 1.0), abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=60, deadline=None)
@given(c=curves(), shift=st.floats(-3.0, 3.0))
def test_quality_shift_gives_bd_psnr(method, c, shift):
    r, q = c
    assert bd_psnr(r, q, r, q + 1.0, method) == pytest.approx(1.0, abs=1e-9)
    assert bd_psnr(r, q, r, q + shift, method) == pytest.approx(shift, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=60, deadline=None)
@given(a=curves(), t=curves())
def test_swapping_anchor_and_test_inverts(method, a, t):
    ra, qa = a
    rt, qt = t
    # force an overlap in quality and in log-rate by moving the test curve onto the anchor's span
    qt = qt - qt[0] + qa[0] + 0.3 * (qa[-1] - qa[0])
    rt = rt / rt[0] * ra[0] * 10 ** (0.3 * np.log10(ra[-1] / ra[0]))
    x = bd_rate(ra, qa, rt, qt, method) / 100.0
    y = bd_rate(rt, qt, ra, qa, method) / 100.0
    assert y == pytest.approx(1.0 / (1.0 + x) - 1.0, rel=1e-9, abs=1e-12)
    assert bd_psnr(rt, qt, ra, qa, method) == pytest.approx(-bd_psnr(ra, qa, rt, qt, method), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(a=curves(), t=curves())
def test_pchip_matches_scipy_reference(a, t):
    ra, qa = a
    rt, qt = t
    qt = qt - qt[0] + qa[0] + 0.2 * (qa[-1] - qa[0])
    rt = rt / rt[0] * ra[0] * 10 ** (0.2 * np.log10(ra[-1] / ra[0]))
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    ia = PchipInterpolator(qa, np.log10(ra)).integrate(lo, hi)
    it = PchipInterpolator(qt, np.log10(rt)).integrate(lo, hi)
    expect = (10 ** ((it - ia) / (hi - lo)) - 1) * 100
    assert bd_rate(ra, qa, rt, qt, "pchip") == pytest.approx(expect, rel=1e-9, abs=1e-9)
    lo, hi = max(np.log10(ra[0]), np.log10(rt[0])), min(np.log10(ra[-1]), np.log10(rt[-1]))
    ia = PchipInterpolator(np.log10(ra), qa).integrate(lo, hi)
    it = PchipInterpolator(np.log10(rt), qt).integrate(lo, hi)
    assert bd_psnr(ra, qa, rt, qt, "pchip") == pytest.approx((it - ia) / (hi - lo), rel=1e-9, abs=1e-9)


# ------------------------------------------------------------------------- hand-computed examples
#
# Anchor: log10(rate) = -1 + 0.1 * y at quality q = 30 + x, with (x, y) = (0,0) (1,1) (2,3) (3,4).
# pchip by hand: secants 1, 2, 1; interior slopes 6 / (3/1 + 3/2) = 4/3 (both); end slopes
# ((2+1)*1 - 1*2) / 2 = 1/2. Hermite segment integral = h (y0+y1)/2 + h^2 (d0-d1)/12, so
# [0,1]: 1/2 + (1/2-4/3)/12 = 31/72, [1,2]: 2, [2,3]: 7/2 + 5/72 -> total 6.
# VCEG-M33 cubic through the points: y = -x^3/3 + 3x^2/2 - x/6 -> [0,3]: 6, [0,1]: 1/3.
# Test: linear y = x (both methods reproduce a line): [0,3]: 9/2, [0,1]: 1/2.

ANCHOR_Q = np.array([30.0, 31.0, 32.0, 33.0])
ANCHOR_R = 10 ** (-1 + 0.1 * np.array([0.0, 1.0, 3.0, 4.0]))


@pytest.mark.parametrize("method", METHODS)
def test_hand_example_full_overlap(method):
    test_r = 10 ** (-1 + 0.1 * np.array([0.0, 1.0, 2.0, 3.0]))
    expect = (10 ** (0.1 * (4.5 - 6.0) / 3.0) - 1) * 100  # -10.8749...%
    assert bd_rate(ANCHOR_R, ANCHOR_Q, test_r, ANCHOR_Q, method) == pytest.approx(expect, abs=1e-10)
    assert expect == pytest.approx(-10.87491, abs=1e-5)


@pytest.mark.parametrize("method, anchor_integral", [("pchip", 31 / 72), ("cubic", 1 / 3)])
def test_hand_example_partial_overlap(method, anchor_integral):
    # the test curve spans q in [29, 31]: the overlap is [30, 31], where the methods differ
    tq = np.array([29.0, 29.5, 30.5, 31.0])
    test_r = 10 ** (-1 + 0.1 * (tq - 30.0))
    expect = (10 ** (0.1 * (0.5 - anchor_integral)) - 1) * 100
    assert bd_rate(ANCHOR_R, ANCHOR_Q, test_r, tq, method) == pytest.approx(expect, abs=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_hand_example_bd_psnr(method):
    rates = np.array([1.0, 10.0, 100.0, 1000.0])  # log10 = 0, 1, 2, 3
    anchor_q = 30 + np.array([0.0, 1.0, 3.0, 4.0])  # integral 6 over [0, 3] (see above)
    test_q = 30 + np.array([0.0, 1.0, 2.0, 3.0])  # integral 4.5
    assert bd_psnr(rates, anchor_q, rates, test_q, method) == pytest.approx(-0.5, abs=1e-12)


# ------------------------------------------------------------------------------------- bad curves

GOOD_R, GOOD_Q = [0.1, 0.2, 0.4, 0.8], [30.0, 33.0, 36.0, 38.0]


@pytest.mark.parametrize("r, q, message", [
    ([0.1, 0.2, 0.4], [30.0, 33.0, 36.0], "at least 4"),
    ([0.1, 0.2, 0.4, 0.8], [30.0, 33.0, 32.0, 38.0], "not monotonic"),
    ([0.1, 0.2, 0.4, 0.8], [30.0, 33.0, 33.0, 38.0], "not monotonic"),
    ([0.1, 0.2, 0.2, 0.8], [30.0, 33.0, 34.0, 38.0], "appears twice"),
    ([0.0, 0.2, 0.4, 0.8], [30.0, 33.0, 36.0, 38.0], "positive"),
    ([-0.1, 0.2, 0.4, 0.8], [30.0, 33.0, 36.0, 38.0], "positive"),
    ([0.1, 0.2, 0.4, 0.8], [30.0, 33.0, 36.0, np.inf], "not finite"),
    ([0.1, 0.2, 0.4, 0.8], [30.0, np.nan, 36.0, 38.0], "not finite"),
    ([0.1, 0.2, 0.4, np.nan], [30.0, 33.0, 36.0, 38.0], "positive and finite"),
    ([0.1, 0.2, 0.4, 0.8], [30.0, 33.0, 36.0], "equal length"),
])
@pytest.mark.parametrize("fn", [bd_rate, bd_psnr])
def test_bad_test_curve(fn, r, q, message):
    with pytest.raises(InputError, match=message) as info:
        fn(GOOD_R, GOOD_Q, r, q)
    assert "test curve" in str(info.value)


def test_bad_anchor_is_named():
    with pytest.raises(InputError, match="anchor curve.*not monotonic"):
        bd_rate([0.1, 0.2, 0.4, 0.8], [40, 35, 36, 38], GOOD_R, GOOD_Q)


def test_no_overlap():
    with pytest.raises(InputError, match="do not overlap in quality"):
        bd_rate(GOOD_R, GOOD_Q, GOOD_R, [40.0, 41.0, 42.0, 43.0])
    with pytest.raises(InputError, match="do not overlap in log10"):
        bd_psnr(GOOD_R, GOOD_Q, [1.0, 2.0, 4.0, 8.0], GOOD_Q)
    with pytest.raises(InputError, match="do not overlap"):  # touching at one point is no range
        bd_rate(GOOD_R, GOOD_Q, GOOD_R, [38.0, 39.0, 40.0, 41.0])


def test_unknown_method():
    with pytest.raises(UsageError, match="'akima'"):
        bd_rate(GOOD_R, GOOD_Q, GOOD_R, GOOD_Q, method="akima")


# ------------------------------------------------------------------------------------- RD tables

def test_read_csv_and_json_layouts(tmp_path):
    expect = {"bpp": [0.1, 0.2], "d1_psnr": [60.5, 64.0], "name": ["r1", "r2"]}
    (tmp_path / "a.csv").write_text("# comment\nbpp, d1_psnr ,name\n0.1,60.5,r1\n\n0.2,64,r2\n")
    (tmp_path / "b.tsv").write_text("bpp\td1_psnr\tname\n0.1\t60.5\tr1\n0.2\t64\tr2\n")
    (tmp_path / "c.json").write_text(json.dumps([{"bpp": 0.1, "d1_psnr": 60.5, "name": "r1"},
                                                 {"name": "r2", "bpp": 0.2, "d1_psnr": 64}]))
    (tmp_path / "d.json").write_text(json.dumps(expect))
    (tmp_path / "e.json").write_text(json.dumps({"rows": [{"bpp": 0.1, "d1_psnr": 60.5, "name": "r1"},
                                                          {"bpp": 0.2, "d1_psnr": 64, "name": "r2"}]}))
    (tmp_path / "f.txt").write_text(json.dumps(expect))  # no suffix hint: detected by content
    for name in ("a.csv", "b.tsv", "c.json", "d.json", "e.json", "f.txt"):
        assert read_rd_table(tmp_path / name) == expect, name


@pytest.mark.parametrize("name, content, message", [
    ("e.csv", "", "empty"),
    ("h.csv", "bpp,d1_psnr\n", "empty"),
    ("r.csv", "bpp,d1_psnr\n0.1,30\n0.2\n", "row 2 has 1 cells, the header has 2"),
    ("d.csv", "bpp,bpp\n0.1,30\n", "twice"),
    ("b.json", '{"bpp": [0.1, 0.2', "bad JSON at line 1"),
    ("l.json", "[]", "empty"),
    ("c.json", '{"bpp": [], "d1_psnr": []}', "empty"),
    ("g.json", '{"bpp": [0.1, 0.2], "d1_psnr": [30]}', "has 1 values"),
    ("k.json", '[{"bpp": 0.1, "d1_psnr": 30}, {"bpp": 0.2}]', "row 2 has different columns"),
    ("s.json", '"hello"', "list of rows or an object of columns"),
    ("n.json", '[{"bpp": [1, 2]}]', "expected a number"),
])
def test_bad_tables(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        read_rd_table(p)
    assert name in str(info.value)


def test_missing_table(tmp_path):
    with pytest.raises(InputError, match="nope.csv: no such RD table"):
        read_rd_table(tmp_path / "nope.csv")


# ------------------------------------------------------------------------------------------- CLI

def test_cli_bdrate_json(tmp_path, run_cli):
    rates = [0.05, 0.1, 0.2, 0.4, 0.8]
    psnr = [58.0, 62.5, 66.0, 69.0, 71.0]
    (tmp_path / "anchor.csv").write_text("bpp,d1_psnr\n" + "".join(f"{r},{q}\n" for r, q in zip(rates, psnr)))
    (tmp_path / "test.json").write_text(json.dumps([{"bpp": 0.9 * r, "d1_psnr": q, "d2_psnr": "inf"}
                                                    for r, q in zip(rates, psnr)]))
    for method in METHODS:
        code, out, err = run_cli("bdrate", tmp_path / "anchor.csv", tmp_path / "test.json",
                                 "--method", method, "--json")
        assert code == 0, err
        res = json.loads(out)
        assert res["bd_rate_percent"] == pytest.approx(-10.0, abs=1e-9)
        assert res["bd_psnr_db"] > 0
        assert res["method"] == method and res["anchor_points"] == 5


def test_cli_bdrate_errors(tmp_path, run_cli):
    (tmp_path / "a.csv").write_text("bpp,d1_psnr\n0.1,30\n0.2,33\n0.4,36\n")
    (tmp_path / "b.csv").write_text("bpp,d1_psnr\n0.1,30\n0.2,33\n0.4,36\n0.8,38\n")
    code, out, err = run_cli("bdrate", tmp_path / "a.csv", tmp_path / "b.csv")
    assert code == 1 and "at least 4" in err and "a.csv" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli("bdrate", tmp_path / "b.csv", tmp_path / "b.csv", "--metric", "y_psnr")
    assert code == 1 and "no column 'y_psnr'" in err
    code, out, err = run_cli("bdrate", tmp_path / "b.csv", tmp_path / "b.csv", "--method", "akima")
    assert code == 2

"""bench report / check on hand-made result rows: BD-rate against closed forms, the regression gate,
RD plots, and bad result tables."""

from __future__ import annotations

import math

import pytest

from imcodec.bench import gate
from imcodec.bench.report import PAIRS, bd_table, curves, pair_name, plot_curves, read_results
from imcodec.bench.tasks import HEADER, format_row
from imcodec.errors import InputError, UsageError
from imcodec.io.rowstore import write_csv_rows

RATES = ("r1", "r2", "r3", "r4", "r5")


def _rows(codec: str, seq: str = "seqA", rate_factor: float = 1.0, psnr_shift: float = 0.0, frames=(0, 1),
          lossless_last: bool = False) -> list[dict]:
    """Rows of a smooth RD curve: bpp doubles per rate point, PSNR grows 3 dB per point."""
    out = []
    for f in frames:
        for i, r in enumerate(RATES):
            geo = 0.1 * 2 ** i * (1 + 0.01 * f) * rate_factor
            att = 0.2 * 2 ** i * (1 + 0.01 * f) * rate_factor
            q = 50.0 + 3.0 * i + 0.1 * f + psnr_shift
            inf = lossless_last and i == len(RATES) - 1
            out.append({"sequence": seq, "frame": f, "codec": codec, "rate": r, "points": 1000,
                        "bpp_geometry": geo, "bpp_attribute": att, "bpp_total": geo + att + 0.01 * rate_factor,
                        "d1_psnr": math.inf if inf else q, "d2_psnr": math.inf if inf else q + 4,
                        "y_psnr": q - 20, "cb_psnr": q - 15, "cr_psnr": q - 14})
    return out


def test_bd_table_closed_form_rate_scaling():
    # the test codec spends exactly 10% fewer bits at every quality: BD-rate is -10% for every pair
    rows = _rows("anchor", "seqA") + _rows("anchor", "seqB") + _rows("test", "seqA", 0.9) + _rows("test", "seqB", 0.9)
    table = bd_table(rows, "anchor", "test")
    assert set(table["sequences"]) == {"seqA", "seqB"}
    for m, r in PAIRS:
        for seq in ("seqA", "seqB"):
            assert table["sequences"][seq][pair_name(m, r)]["bd_rate"] == pytest.approx(-10.0, abs=1e-6)
        assert table["average"][pair_name(m, r)]["bd_rate"] == pytest.approx(-10.0, abs=1e-6)
        assert table["average"][pair_name(m, r)]["sequences"] == 2


def test_bd_table_psnr_shift_and_frame_average():
    rows = _rows("a") + _rows("b", psnr_shift=0.5)
    table = bd_table(rows, "a", "b")
    # quality +0.5 dB everywhere: BD-PSNR = +0.5 dB on the component rates
    assert table["sequences"]["seqA"]["d1_psnr/bpp_geometry"]["bd_psnr"] == pytest.approx(0.5, abs=1e-9)
    cv = curves(rows)
    p = cv["seqA"]["a"][0]
    assert p["frames"] == 2 and p["bpp_geometry"] == pytest.approx(0.1 * 1.005)
    assert p["d1_psnr"] == pytest.approx(50.05)


def test_bd_table_notes_and_unknown_codec():
    rows = _rows("a", lossless_last=True) + _rows("b", lossless_last=True)
    table = bd_table(rows, "a", "b")
    entry = table["sequences"]["seqA"]["d1_psnr/bpp_geometry"]  # 4 finite points left: still computed
    assert entry["bd_rate"] == pytest.approx(0.0, abs=1e-9)
    few = [r for r in rows if r["rate"] in ("r1", "r2", "r3")]
    entry = bd_table(few, "a", "b")["sequences"]["seqA"]["d1_psnr/bpp_geometry"]
    assert entry["bd_rate"] is None and "4 finite points" in entry["note"]
    with pytest.raises(UsageError, match="'zzz'"):
        bd_table(rows, "a", "zzz")


def test_gate_passes_unchanged_and_catches_two_percent(tmp_path):
    rows = _rows("octree", "s1") + _rows("octree", "s2") + _rows("vpcc", "s1")
    base_path = tmp_path / "base.json"
    gate.write_baseline(base_path, rows)
    base = gate.read_baseline(base_path)
    ok = gate.check(rows, base, max_bdrate=1.0)
    assert ok["passed"] and ok["regressions"] == []
    assert ok["results"]["s1"]["octree"]["d1_psnr/bpp_total"]["bd_rate"] == pytest.approx(0.0, abs=1e-9)
    # inject a 2% rate regression into one sequence/codec
    bad = [dict(r, bpp_total=r["bpp_total"] * 1.02) if (r["sequence"], r["codec"]) == ("s2", "octree") else r
           for r in rows]
    res = gate.check(bad, base, max_bdrate=1.0)
    assert not res["passed"]
    assert {(r["sequence"], r["codec"]) for r in res["regressions"]} == {("s2", "octree")}
    pairs = {r["pair"] for r in res["regressions"]}
    assert pairs == {pair_name(m, "bpp_total") for m in ("d1_psnr", "d2_psnr", "y_psnr", "cb_psnr", "cr_psnr")}
    assert res["results"]["s2"]["octree"]["d1_psnr/bpp_total"]["bd_rate"] == pytest.approx(2.0, abs=1e-6)
    # within the tolerance: passes
    small = [dict(r, bpp_total=r["bpp_total"] * 1.005) for r in rows]
    assert gate.check(small, base, max_bdrate=1.0)["passed"]
    # an improvement is never a regression
    better = [dict(r, bpp_total=r["bpp_total"] * 0.9) for r in rows]
    assert gate.check(better, base, max_bdrate=1.0)["passed"]


def test_gate_quality_drop_missing_and_lossless(tmp_path):
    rows = _rows("octree", lossless_last=True)
    base = {"seqA": {"octree": curves(rows)["seqA"]["octree"]}}
    # PSNR 0.3 dB lower at the same rates: a positive BD-rate
    worse = [dict(r, d1_psnr=r["d1_psnr"] - 0.3) for r in rows]
    res = gate.check(worse, base, max_bdrate=1.0)
    assert not res["passed"] and any(r["pair"] == "d1_psnr/bpp_geometry" for r in res["regressions"])
    # the lossless point got 3% bigger
    bigger = [dict(r, bpp_geometry=r["bpp_geometry"] * 1.03) if r["rate"] == "r5" else r for r in rows]
    res = gate.check(bigger, base, max_bdrate=1.0)
    assert any("lossless rate point r5" in r["reason"] for r in res["regressions"])
    # the lossless point is lossy now
    lossy = [dict(r, d1_psnr=80.0) if r["rate"] == "r5" else r for r in rows]
    assert any("no longer lossless" in r["reason"] for r in gate.check(lossy, base)["regressions"])
    # a sequence of the baseline is missing
    res = gate.check(_rows("octree", "other"), base)
    assert not res["passed"] and res["regressions"][0]["reason"] == "missing from the results"


def test_gate_per_point_fallback_with_three_rates():
    rows = [r for r in _rows("c") if r["rate"] in ("r1", "r2", "r3")]
    base = {"seqA": {"c": curves(rows)["seqA"]["c"]}}
    assert gate.check(rows, base)["passed"]
    assert gate.check(rows, base)["results"]["seqA"]["c"]["d1_psnr/bpp_total"]["mode"] == "per point"
    res = gate.check([dict(r, bpp_total=r["bpp_total"] * 1.02) for r in rows], base, max_bdrate=1.0)
    assert not res["passed"] and "rate +2.00%" in res["regressions"][0]["reason"]


def test_baseline_file_errors(tmp_path):
    p = tmp_path / "b.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match="bad JSON"):
        gate.read_baseline(p)
    p.write_text('{"hello": 1}')
    with pytest.raises(InputError, match="not an imcodec bench baseline"):
        gate.read_baseline(p)
    with pytest.raises(InputError, match="no such baseline"):
        gate.read_baseline(tmp_path / "missing.json")


def test_results_table_roundtrip_and_errors(tmp_path):
    rows = _rows("a")
    path = tmp_path / "r.csv"
    write_csv_rows(path, HEADER, [format_row(r) for r in rows])
    back = read_results(path)
    assert len(back) == len(rows)
    assert back[0]["bpp_total"] == rows[0]["bpp_total"] and back[0]["frame"] == 0
    with pytest.raises(InputError, match="no such results table"):
        read_results(tmp_path / "nope.csv")
    other = tmp_path / "other.csv"
    other.write_text("bpp,d1_psnr\n0.1,50\n")
    with pytest.raises(InputError, match="not a bench results table"):
        read_results(other)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(path.read_text() + "seqA,3,a\n")
    with pytest.raises(InputError, match="cells"):
        read_results(ragged)


def test_plots_written(tmp_path):
    rows = _rows("a") + _rows("b", rate_factor=0.8) + _rows("a", "seq two")
    written = plot_curves(rows, tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert "seqA_d1.png" in names and "seq_two_cr.png" in names and len(names) == 10
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

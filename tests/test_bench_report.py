"""bench report / check on hand-made result rows: BD-rate against closed forms, the regression gate,
RD plots, and bad result tables (more gate tests: test_bench_gate.py)."""

from __future__ import annotations

import json
import math

import pytest

from imcodec.bench import gate
from imcodec.bench.report import PAIRS, bd_table, curves, pair_name, plot_curves, plot_names, read_results
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
    stem = plot_names(["seq two"])["seq two"]
    assert stem.startswith("seq_two-") and len(stem) == len("seq_two-") + 8
    assert "seqA_d1.png" in names and f"{stem}_cr.png" in names and len(names) == 10
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------- damaged results tables

def _csv(tmp_path, rows=None, name="r.csv", edit=None, header=None):
    """Write rows as a results CSV; ``edit(lines)`` may change the text lines (header first)."""
    path = tmp_path / name
    write_csv_rows(path, header or HEADER, [format_row(r) for r in (rows if rows is not None else _rows("a") + _rows("b"))])
    if edit is not None:
        lines = path.read_text().splitlines()
        edit(lines)
        path.write_text("\n".join(lines) + "\n")
    return path


def _set_cell(col: str, value: str, line: int = 1):
    def edit(lines):
        head = lines[0].split(",")
        cells = lines[line].split(",")
        cells[head.index(col)] = value
        lines[line] = ",".join(cells)
    return edit


@pytest.mark.parametrize("col, value, match", [
    ("frame", "1.7", r"row 2: column 'frame' holds '1.7', expected a non-negative integer"),
    ("frame", "inf", r"row 2: column 'frame' holds 'inf'"),
    ("frame", "1e400", r"row 2: column 'frame' holds '1e400'"),
    ("frame", "-1", r"row 2: column 'frame' holds '-1'"),
    ("frame", "", r"row 2: column 'frame' is empty"),
    ("frame", "9" * 5000, r"row 2: column 'frame' holds '9999"),
    ("bpp_total", "-1", r"row 2: column 'bpp_total' holds '-1', expected a positive number"),
    ("bpp_total", "0", r"row 2: column 'bpp_total' holds '0', expected a positive number"),
    ("bpp_total", "", r"row 2: column 'bpp_total' is empty"),
    ("bpp_total", "inf", r"row 2: column 'bpp_total' holds 'inf', expected a finite number"),
    ("bpp_total", "x", r"row 2: column 'bpp_total' holds 'x', expected a number"),
    ("bpp_geometry", "-0.5", r"row 2: column 'bpp_geometry' holds '-0.5', expected a non-negative number"),
    ("d1_psnr", "nan", r"row 2: column 'd1_psnr' holds 'nan', expected a finite number or inf"),
    ("d1_psnr", "-inf", r"row 2: column 'd1_psnr' holds '-inf'"),
    ("y_psnr", "NaN", r"row 2: column 'y_psnr' holds 'NaN'"),
    ("points", "1.5", r"row 2: column 'points' holds '1.5'"),
    ("bytes_total", "0", r"row 2: column 'bytes_total' holds '0', expected a positive number"),
    ("sequence", " ", r"row 2: column 'sequence' is empty"),
    ("codec", "", r"row 2: column 'codec' is empty"),
    ("rate", "", r"row 2: column 'rate' is empty"),
])
def test_damaged_cells_are_errors_naming_row_and_column(tmp_path, col, value, match):
    path = _csv(tmp_path, edit=_set_cell(col, value))
    with pytest.raises(InputError, match=f"^{path} {match}"):
        read_results(path)


def test_missing_column_and_duplicate_key_are_errors(tmp_path):
    for col in ("bpp_total", "d1_psnr", "cr_psnr", "bpp_attribute"):
        path = _csv(tmp_path, header=[h for h in HEADER if h != col], name=f"no_{col}.csv")
        with pytest.raises(InputError, match=f"{path}: results table has no column '{col}'"):
            read_results(path)
    # a repeated key row would be averaged in silently
    path = _csv(tmp_path, edit=lambda lines: lines.append(lines[3]))
    n = len(path.read_text().splitlines())
    with pytest.raises(InputError, match=fr"row {n}: duplicate row for sequence 'seqA' frame 0 codec 'a' rate 'r3' "
                                         r"\(also row 4\)"):
        read_results(path)


def test_legitimate_cells_still_read(tmp_path):
    # lossless PSNR written as inf, zero MSE, empty colour PSNRs and attribute rate (geometry only)
    rows = _rows("a", lossless_last=True) + _rows("b")
    rows = [dict(r, d1_mse=0.0, y_psnr=None, cb_psnr=None, cr_psnr=None, bpp_attribute=None) if r["codec"] == "b" else r
            for r in rows]
    path = _csv(tmp_path, rows)
    back = read_results(path)
    assert any(math.isinf(r["d1_psnr"]) for r in back if r["codec"] == "a")
    assert all(r["y_psnr"] is None and r["bpp_attribute"] is None for r in back if r["codec"] == "b")
    assert {r["frame"] for r in back} == {0, 1} and all(isinstance(r["frame"], int) for r in back)


def test_damaged_table_cli_one_line_exit_1(tmp_path, run_cli):
    for col, value in (("frame", "inf"), ("frame", "1e400"), ("d1_psnr", "nan"), ("bpp_total", "-1")):
        path = _csv(tmp_path, edit=_set_cell(col, value))
        code, _, err = run_cli("bench", "report", path, "--anchor", "a", "--test", "b", "--no-plots")
        assert code == 1 and err.count("\n") == 1 and "internal error" not in err
        assert f"{path} row 2: column '{col}' holds '{value}'" in err


# ---------------------------------------------------------------------------- report options

def test_same_anchor_and_test_is_a_usage_error(tmp_path, run_cli):
    rows = _rows("a") + _rows("b")
    with pytest.raises(UsageError, match="--anchor and --test name the same codec 'a'"):
        bd_table(rows, "a", "a")
    path = _csv(tmp_path, rows)
    code, stdout, err = run_cli("bench", "report", path, "--anchor", "a", "--test", "a", "--no-plots")
    assert code == 2 and "same codec 'a'" in err and stdout == ""


def test_plots_and_no_plots_is_a_usage_error(tmp_path, run_cli):
    path = _csv(tmp_path)
    code, _, err = run_cli("bench", "report", path, "--anchor", "a", "--test", "b", "--no-plots",
                           "--plots", tmp_path / "p")
    assert code == 2 and "--plots" in err and "--no-plots" in err and err.count("\n") == 1
    assert not (tmp_path / "p").exists()


def test_report_table_not_truncated_in_a_pipe(tmp_path, run_cli):
    # captured stdout is not a terminal (as in a CI log): every header and number comes out whole
    seqs = [f"longsequencename_{i:02d}" for i in range(12)]
    rows = [r for i, s in enumerate(seqs) for r in _rows("a", s) + _rows("b", s, rate_factor=1.0 + 0.01 * i)]
    path = _csv(tmp_path, rows)
    code, stdout, err = run_cli("bench", "report", path, "--anchor", "a", "--test", "b", "--no-plots")
    assert code == 0, err
    assert "\u2026" not in stdout
    for s in seqs:
        assert s in stdout
    assert "d1_psnr/bpp_geometry" in stdout and "cr_psnr/bpp_attribute" in stdout
    code, stdout, _ = run_cli("bench", "report", path, "--anchor", "a", "--test", "b", "--no-plots", "--json")
    rep = json.loads(stdout)
    assert rep["sequences"]["longsequencename_11"]["d1_psnr/bpp_total"]["bd_rate"] == pytest.approx(11.0, abs=1e-6)


# -------------------------------------------------------------------------------- plot names

def test_plot_names_distinct_for_sanitised_collisions(tmp_path, run_cli):
    names = ["a b", "a_b", "a:b", "A_B", "a_b-" + plot_names(["a b"])["a b"].split("-")[1]]
    stems = plot_names(names)
    assert len({s.casefold() for s in stems.values()}) == len(names)
    assert plot_names(["plain", "x y"])["plain"] == "plain"  # safe names stay as they are
    assert plot_names(["x y"])["x y"] == plot_names(["x y", "other"])["x y"]  # stable as sequences are added
    rows = [r for s in names[:3] for r in _rows("a", s) + _rows("b", s, rate_factor=0.9)]
    path = _csv(tmp_path, rows)
    code, stdout, err = run_cli("bench", "report", path, "--anchor", "a", "--test", "b", "--json",
                                "--plots", tmp_path / "plots")
    assert code == 0, err
    plots = json.loads(stdout)["plots"]
    assert len(plots) == 15 and len(set(plots)) == 15
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.rsplit("/", 1)[1] for p in plots)

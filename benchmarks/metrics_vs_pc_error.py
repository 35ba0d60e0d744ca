"""imcodec metrics against MPEG pc_error 0.14.2 on the reference pairs of ../shared/data.

For each pair (A = original frame, B = TMC13 decoded output, normals from reference/*_normals.ply)
it runs ``imcodec.api.metrics`` and compares every value pc_error printed (A->B, B->A, symmetric;
D1/D2 MSE and PSNR, Y/Cb/Cr PSNR for raht_r06) with the ``.pc_error.txt`` file. Then it times the
CLI end to end (a fresh process: interpreter start, imports, PLY loading, metrics) on the 800k-point
pairs, recording wall time, CPU time (user + sys), peak memory and the machine's load average (wall
time on a shared machine is only meaningful next to the load). Prints a table; writes
benchmarks/results/metrics_vs_pc_error.json.

    python benchmarks/metrics_vs_pc_error.py [--data ../shared/data] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imcodec import api  # noqa: E402
from imcodec.io.files import ensure_dir, write_text_atomic  # noqa: E402

PAIRS = [
    ("basketball_player_00000001_vox10", "basketball1_tmc13_r01", "basketball1"),
    ("basketball_player_00000001_vox10", "basketball1_tmc13_r03", "basketball1"),
    ("basketball_player_00000001_vox10", "basketball1_tmc13_r05", "basketball1"),
    ("basketball_player_00000001_vox10", "basketball1_tmc13_raht_r06", "basketball1"),
    ("soldier_q08_0536", "soldier0536_tmc13_r01", "soldier0536"),
    ("soldier_q08_0536", "soldier0536_tmc13_r03", "soldier0536"),
    ("soldier_q08_0536", "soldier0536_tmc13_r05", "soldier0536"),
]
TIMED = ["basketball1_tmc13_raht_r06", "basketball1_tmc13_r05"]
TOL_DB = 0.01

def parse_pc_error(path: Path) -> dict[str, float]:
    """pc_error's printed values as {'a_to_b.d1_psnr': .., 'b_to_a.y_psnr': .., 'sym.d2_mse': ..}."""
    out: dict[str, float] = {}
    section = None
    for line in path.read_text().splitlines():
        s = line.strip()
        if s.startswith("1. "):
            section = "a_to_b"
        elif s.startswith("2. "):
            section = "b_to_a"
        elif s.startswith("3. "):
            section = "sym"
        if section is None:
            continue
        m = re.match(r"^(mse[12F])(,PSNR)?\s*\((p2point|p2plane)\):\s*(\S+)$", s)
        if m:
            metric = "d1" if m.group(3) == "p2point" else "d2"
            kind = "psnr" if m.group(2) else "mse"
            out[f"{section}.{metric}_{kind}"] = float(m.group(4))
            continue
        m = re.match(r"^c\[([012])\],\s*(PSNR)?[12F]\s*:\s*(\S+)$", s)
        if m:
            ch = ("y", "cb", "cr")[int(m.group(1))]
            kind = "psnr" if m.group(2) else "mse"
            out[f"{section}.{ch}_{kind}"] = float(m.group(3))
    return out


def ours_value(result: dict, key: str) -> float | None:
    section, name = key.split(".")
    if section == "sym":
        if name.endswith("_mse") and name[:-4] in ("y", "cb", "cr"):
            vals = [result["a_to_b"][name], result["b_to_a"][name]]
            return max(vals)
        return result.get(name)
    return result[section].get(name)


def db_diff(ours: float, ref: float) -> float:
    if math.isinf(ours) and math.isinf(ref):
        return 0.0
    return abs(ours - ref)


def compare(data: Path) -> list[dict]:
    rows = []
    for a, b, n in PAIRS:
        ref = parse_pc_error(data / "reference" / f"{b}.pc_error.txt")
        color = any(k.endswith("y_psnr") for k in ref)
        t = time.perf_counter()
        res = api.metrics(data / f"{a}.ply", data / "reference" / f"{b}.ply", peak=1023.0,
                          normals=data / "reference" / f"{n}_normals.ply", color=color)
        secs = time.perf_counter() - t
        worst_db = 0.0
        checks = {}
        for key, rv in sorted(ref.items()):
            ov = ours_value(res, key)
            if key.endswith("_psnr"):
                d = db_diff(ov, rv)
                worst_db = max(worst_db, d)
                checks[key] = {"ours": ov, "pc_error": rv, "diff_db": d}
            else:
                rel = 0.0 if ov == rv else abs(ov - rv) / max(abs(rv), 1e-300)
                checks[key] = {"ours": ov, "pc_error": rv, "rel_diff": rel}
        rows.append({"pair": b, "seconds_in_process": secs, "worst_db": worst_db,
                     "pass": worst_db <= TOL_DB, "values": checks,
                     "points_a": res["points_a"], "points_b": res["points_b"]})
    return rows


def time_cli(data: Path, pair: str, normals: bool, repeat: int) -> dict:
    a, b, n = next(p for p in PAIRS if p[1] == pair)
    cmd = [sys.executable, "-m", "imcodec.cli", "metrics", str(data / f"{a}.ply"),
           str(data / "reference" / f"{b}.ply"), "--peak", "1023", "--json"]
    if normals:
        cmd += ["--normals", str(data / "reference" / f"{n}_normals.ply")]
    if "raht" in b:
        cmd += ["--color"]
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up: fills Numba's on-disk cache
    walls, cpus = [], []
    for _ in range(repeat):
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # largest child so far (KiB)
    return {"pair": pair, "normals_file": normals, "wall_s_median": statistics.median(walls),
            "wall_s_all": walls, "cpu_s_median": statistics.median(cpus), "cpu_s_all": cpus,
            "peak_rss_mb": rss / 1024.0, "load_avg_1min": os.getloadavg()[0], "cmd": " ".join(cmd)}


def _jsonable(obj):
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return obj


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = compare(args.data)
    print(f"{'pair':30s} {'key':22s} {'imcodec':>14s} {'pc_error':>14s} {'diff dB':>9s}")
    for r in rows:
        for key, v in r["values"].items():
            if key.endswith("_psnr"):
                print(f"{r['pair']:30s} {key:22s} {v['ours']:14.7f} {v['pc_error']:14.7f} {v['diff_db']:9.2e}")
    print()
    print(f"{'pair':30s} {'A pts':>8s} {'B pts':>8s} {'worst dB':>10s} {'pass':>5s}")
    for r in rows:
        print(f"{r['pair']:30s} {r['points_a']:8d} {r['points_b']:8d} {r['worst_db']:10.2e} {str(r['pass']):>5s}")
    timings = []
    for pair in TIMED:
        for normals in (True, False):
            timings.append(time_cli(args.data, pair, normals, args.repeat))
    print()
    print(f"{'CLI run (fresh process)':46s} {'wall s':>7s} {'CPU s':>6s} {'peak RSS MB':>12s} {'load avg':>9s}")
    for t in timings:
        label = f"{t['pair']} {'normals file' if t['normals_file'] else 'estimated normals'}"
        print(f"{label:46s} {t['wall_s_median']:7.3f} {t['cpu_s_median']:6.3f} {t['peak_rss_mb']:12.0f}"
              f" {t['load_avg_1min']:9.2f}")
    print("(medians; CPU s = user + sys of the process, all threads; peak RSS is the largest run so far)")
    out = {"tolerance_db": TOL_DB, "all_pass": all(r["pass"] for r in rows), "pairs": rows,
           "timings": timings, "cpu_count": os.cpu_count()}
    results = ensure_dir(ROOT / "benchmarks" / "results")
    write_text_atomic(results / "metrics_vs_pc_error.json", json.dumps(_jsonable(out), indent=2) + "\n")
    return 0 if out["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""RAHT colour coding of the octree codec against TMC13 (lossless geometry, basketball 1).

    python benchmarks/octree_color.py [--frames 1,2] [--qps 16,18,...] [--repeat 2]
                                      # writes benchmarks/results/octree_color.json

For each frame: a QP sweep (colour bytes, bits per point, Y/Cb/Cr PSNR, encode/decode seconds with
a warm Numba cache; wall and process CPU time, since the machine may be shared), the cheapest QP whose Y PSNR reaches TMC13 r06's 42.858 dB against TMC13's
59,824 colour bytes, and the lossless colour mode. Positions are put in Morton order first, as the
geometry decoder delivers them. PSNR is computed here directly: geometry is lossless, so it is the
per-point error of the BT.709 YCbCr values (8-bit peak 255), as pc_error does; the script checks
this against pc_error's own figure by scoring TMC13's decoded r06 frame the same way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASKETBALL, DATA, require_data, write_result  # noqa: E402

from imcodec.io.ply import read_ply  # noqa: E402
from imcodec.octree.attributes import decode_colors, encode_colors  # noqa: E402
from imcodec.octree.morton import morton_encode  # noqa: E402

TMC13_R06 = {"bytes": 59824, "qp": 22, "psnr": [42.8581912, 47.8215473, 50.7061943],
             "encode_s": 2.58, "decode_s": 1.06}
TMC13_LOSSLESS_TOTAL_BPP, TMC13_LOSSLESS_GEOM_BPP = 8.24, 0.5487
SPEED_TARGET_S = 1.5


def timed(fn, repeat: int):
    """(best wall seconds, best CPU seconds of this process, result) over ``repeat`` calls.

    The CPU time is what the run costs on an idle core; wall time also counts other processes."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu, out


def ycbcr(rgb: np.ndarray) -> np.ndarray:
    """BT.709 YCbCr of (N, 3) RGB, float64 (the pc_error convention)."""
    c = rgb.astype(np.float64)
    y = 0.2126 * c[:, 0] + 0.7152 * c[:, 1] + 0.0722 * c[:, 2]
    return np.stack([y, (c[:, 2] - y) / 1.8556 + 128.0, (c[:, 0] - y) / 1.5748 + 128.0], axis=1)


def colour_psnr(a: np.ndarray, b: np.ndarray) -> list[float]:
    mse = ((ycbcr(a) - ycbcr(b)) ** 2).mean(axis=0)
    return [float(10 * np.log10(255.0 ** 2 / m)) if m > 0 else float("inf") for m in mse]


def morton_sorted(points: np.ndarray, colors: np.ndarray):
    pos = np.ascontiguousarray(np.rint(points).astype(np.int64))
    order = np.argsort(morton_encode(pos), kind="stable")
    return np.ascontiguousarray(pos[order]), np.ascontiguousarray(colors[order])


def check_metric(pos: np.ndarray, col: np.ndarray) -> dict | None:
    """Score TMC13's decoded r06 frame with colour_psnr: should match pc_error's numbers."""
    ref = DATA / "reference" / "basketball1_tmc13_raht_r06.ply"
    if not ref.is_file():
        return None
    dec = read_ply(ref)
    dpos, dcol = morton_sorted(dec.points, dec.colors)
    if not np.array_equal(dpos, pos):
        return {"note": "TMC13 output positions differ from the original; metric check skipped"}
    ours = colour_psnr(col, dcol)
    return {"psnr_ours": ours, "psnr_pc_error": TMC13_R06["psnr"],
            "max_abs_diff_db": max(abs(a - b) for a, b in zip(ours, TMC13_R06["psnr"]))}


def run_frame(path: Path, qps: list[int], repeat: int) -> dict:
    cloud = read_ply(path)
    pos, col = morton_sorted(cloud.points, cloud.colors)
    n = len(pos)
    rows = []
    for qp in qps:
        t_enc, c_enc, data = timed(lambda: encode_colors(pos, col, qp, False), repeat)
        t_dec, c_dec, dec = timed(lambda: decode_colors(pos, data), repeat)
        p = colour_psnr(col, dec)
        rows.append({"qp": qp, "bytes": len(data), "bpp": 8 * len(data) / n, "psnr_y": p[0],
                     "psnr_cb": p[1], "psnr_cr": p[2], "encode_s": t_enc, "decode_s": t_dec,
                     "encode_cpu_s": c_enc, "decode_cpu_s": c_dec})
    ok = [r for r in rows if r["psnr_y"] >= TMC13_R06["psnr"][0]]
    best = min(ok, key=lambda r: r["bytes"]) if ok else None
    ys = np.array([r["psnr_y"] for r in rows])
    bs = np.array([r["bytes"] for r in rows], dtype=float)
    srt = np.argsort(ys)
    at_target = None
    if ys.min() <= TMC13_R06["psnr"][0] <= ys.max():
        at_target = float(np.exp(np.interp(TMC13_R06["psnr"][0], ys[srt], np.log(bs[srt]))))
    t_enc, c_enc, data = timed(lambda: encode_colors(pos, col, 22, True), repeat)
    t_dec, c_dec, dec = timed(lambda: decode_colors(pos, data), repeat)
    lossless = {"bytes": len(data), "bpp": 8 * len(data) / n, "exact": bool(np.array_equal(dec, col)),
                "encode_s": t_enc, "decode_s": t_dec, "encode_cpu_s": c_enc, "decode_cpu_s": c_dec,
                "tmc13_colour_bpp": TMC13_LOSSLESS_TOTAL_BPP - TMC13_LOSSLESS_GEOM_BPP,
                "tmc13_total_bpp": TMC13_LOSSLESS_TOTAL_BPP}
    try:  # total with imcodec's own lossless geometry, when that codec is present
        from imcodec.octree.geometry import encode_geometry

        geom = encode_geometry(pos, True)[0]
        lossless["geometry_bytes"] = len(geom)
        lossless["total_bpp"] = 8 * (len(geom) + len(data)) / n
    except ImportError:
        pass
    return {"frame": path.name, "points": n, "rd": rows, "best_at_tmc13_psnr": best,
            "bytes_interpolated_at_tmc13_psnr": at_target, "lossless": lossless,
            "metric_check": check_metric(pos, col) if "00000001" in path.name else None}


def print_frame(res: dict) -> None:
    print(f"\n{res['frame']}: {res['points']} points")
    print(f"{'QP':>3} {'bytes':>8} {'bpp':>7} {'Y dB':>7} {'Cb dB':>7} {'Cr dB':>7} {'enc s':>6} {'dec s':>6}"
          f" {'enc cpu':>7} {'dec cpu':>7}")
    for r in res["rd"]:
        print(f"{r['qp']:>3} {r['bytes']:>8} {r['bpp']:>7.4f} {r['psnr_y']:>7.3f} {r['psnr_cb']:>7.3f} "
              f"{r['psnr_cr']:>7.3f} {r['encode_s']:>6.3f} {r['decode_s']:>6.3f} {r['encode_cpu_s']:>7.3f} "
              f"{r['decode_cpu_s']:>7.3f}")
    b = res["best_at_tmc13_psnr"]
    if b:
        print(f"TMC13 r06: {TMC13_R06['bytes']} bytes at Y {TMC13_R06['psnr'][0]:.3f} dB; ours: QP {b['qp']} "
              f"{b['bytes']} bytes ({b['bytes'] / TMC13_R06['bytes'] - 1:+.1%}) at Y {b['psnr_y']:.3f} dB")
    if res["bytes_interpolated_at_tmc13_psnr"]:
        print(f"interpolated bytes at Y {TMC13_R06['psnr'][0]:.3f} dB: {res['bytes_interpolated_at_tmc13_psnr']:.0f}")
    ll = res["lossless"]
    print(f"lossless colour: {ll['bytes']} bytes, {ll['bpp']:.3f} bpp (TMC13 colour ~{ll['tmc13_colour_bpp']:.2f}), "
          f"exact={ll['exact']}, enc {ll['encode_s']:.3f} s ({ll['encode_cpu_s']:.3f} cpu), "
          f"dec {ll['decode_s']:.3f} s ({ll['decode_cpu_s']:.3f} cpu)")
    if "total_bpp" in ll:
        print(f"lossless geometry + colour: {ll['total_bpp']:.3f} bpp (TMC13 {ll['tmc13_total_bpp']:.2f})")
    if res["metric_check"]:
        print(f"metric check vs pc_error on TMC13 r06: {res['metric_check']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="1", help="basketball frames, e.g. 1,2")
    ap.add_argument("--qps", default="10,16,20,21,22,23,24,28,34,40,46")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    require_data()
    qps = [int(q) for q in args.qps.split(",")]
    frames = [BASKETBALL[int(f) - 1] for f in args.frames.split(",")]
    encode_colors(np.zeros((2, 3), np.int64), np.zeros((2, 3), np.uint8), 22, False)  # warm the cache
    encode_colors(np.zeros((2, 3), np.int64), np.zeros((2, 3), np.uint8), 22, True)
    results = []
    for f in frames:
        res = run_frame(f, qps, args.repeat)
        print_frame(res)
        results.append(res)
    ok = all((r["best_at_tmc13_psnr"] or {}).get("bytes", 1e18) <= TMC13_R06["bytes"] for r in results)
    fast = all(r["best_at_tmc13_psnr"] and r["best_at_tmc13_psnr"]["encode_cpu_s"] <= SPEED_TARGET_S
               and r["best_at_tmc13_psnr"]["decode_cpu_s"] <= SPEED_TARGET_S for r in results)
    write_result("octree_color", {"tmc13_r06": TMC13_R06, "speed_target_s": SPEED_TARGET_S,
                                  "meets_rate_target": ok, "meets_speed_target": fast, "frames": results})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

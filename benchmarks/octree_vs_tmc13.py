"""Octree geometry against MPEG TMC13 v23 on ../shared/data (numbers from its README).

    python benchmarks/octree_vs_tmc13.py [--parts lossless,lossy,sequence,cold] [--repeat 2]
                                         # writes benchmarks/results/octree_vs_tmc13.json

* lossless: every shared frame, geometry only: stream bits per input point (container included) and
  geometry-component bpp against TMC13 x 0.90; exact multiset check; encode/decode wall and CPU
  seconds with a warm Numba cache (best of --repeat, codec time, PLY I/O excluded).
* lossy: soldier 0536 and basketball 1 at TMC13's r01..r06 positionQuantizationScale values, D1
  PSNR (pc_error conventions, peak 1023, imcodec.metrics) and the pchip BD-rate against TMC13.
* sequence: soldier 0536-0538 and basketball 1-2 (geometry) as one stream each, all-intra and with
  inter-coded geometry: P-frame bpp against intra and TMC13's inter mode; random access.
* fresh: ``imcodec encode/decode`` in a fresh process per run (codec seconds from --json, and wall).
* cold: encode + decode of one frame in a fresh process with an empty Numba cache, with the AOT
  library and with IMCODEC_JIT=1 (compile time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASKETBALL, ROOT, SOLDIER, require_data, write_result  # noqa: E402

from imcodec.codecs import get_codec  # noqa: E402
from imcodec.io.bitstream import StreamWriter, parse_stream, read_frame  # noqa: E402
from imcodec.io.ply import read_ply, write_ply  # noqa: E402
from imcodec.types import PointCloud  # noqa: E402

TMC13_LOSSLESS = {"soldier_q08_0536.ply": 0.7677, "soldier_q08_0537.ply": 0.7702, "soldier_q08_0538.ply": 0.7724,
                  "basketball_player_00000001_vox10.ply": 0.5487,
                  "basketball_player_00000002_vox10.ply": 0.5514}
TMC13_TIMES = {"soldier_q08_0536.ply": (0.58, 0.34), "soldier_q08_0537.ply": (0.57, 0.25),
               "soldier_q08_0538.ply": (0.53, 0.35), "basketball_player_00000001_vox10.ply": (1.16, 0.39),
               "basketball_player_00000002_vox10.ply": (0.65, 0.27)}
SCALES = {"r01": 1 / 8, "r02": 1 / 4, "r03": 1 / 2, "r04": 3 / 4, "r05": 7 / 8, "r06": 15 / 16}
TMC13_LOSSY = {  # rate -> (bpip, D1) for soldier 0536 and basketball 1
    "soldier_q08_0536.ply": [(0.0231, 52.90), (0.0735, 57.91), (0.2251, 63.56), (0.4929, 67.45),
                             (0.6338, 69.80), (0.7124, 70.38)],
    "basketball_player_00000001_vox10.ply": [(0.0186, 52.78), (0.0554, 58.43), (0.1665, 63.21),
                                             (0.3644, 67.97), (0.4609, 69.68), (0.5070, 70.38)],
}
TARGET_RATIO, BD_TARGET, SPEED_TARGET_S, COLD_TARGET_S = 0.90, -10.0, 1.5, 30.0


def _code(cloud: PointCloud, options: dict) -> tuple[bytes, PointCloud, float, float]:
    """Encode one frame into a stream in memory: (stream, recon, wall s, cpu s)."""
    codec = get_codec("octree")
    config = codec.make_config(options)
    w0, c0 = time.perf_counter(), time.process_time()
    code = codec.encode_frame(cloud, config, {})
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    writer = StreamWriter(codec.codec_id, codec.stream_params(config))
    writer.add_frame(0, len(code.recon), code.components)
    return writer.finish(bit_depth=10, scale=config.scale), code.recon, wall, cpu


def _decode(stream: bytes) -> tuple[PointCloud, float, float]:
    codec = get_codec("octree")
    header, entries = parse_stream(stream)
    w0, c0 = time.perf_counter(), time.process_time()
    cloud = codec.decode_frame(read_frame(stream, entries[0]), header, {})
    return cloud, time.perf_counter() - w0, time.process_time() - c0


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def lossless(repeat: int) -> list[dict]:
    rows = []
    for path in SOLDIER + BASKETBALL:
        cloud = read_ply(path)
        geom = PointCloud(points=cloud.points)
        best = None
        for _ in range(repeat):
            stream, recon, ew, ec = _code(geom, {"lossless": True})
            out, dw, dc = _decode(stream)
            t = (ew, ec, dw, dc)
            best = t if best is None else tuple(min(a, b) for a, b in zip(best, t))
        exact = bool(np.array_equal(_sorted_rows(out.points), _sorted_rows(cloud.points)))
        header, entries = parse_stream(stream)
        gbytes = len(read_frame(stream, entries[0])["geometry"])
        n = len(cloud)
        ref = TMC13_LOSSLESS[path.name]
        row = {"frame": path.name, "points": n, "stream_bytes": len(stream), "bpp": 8 * len(stream) / n,
               "geometry_bpp": 8 * gbytes / n, "tmc13_bpp": ref, "target_bpp": round(TARGET_RATIO * ref, 4),
               "ratio_vs_tmc13": 8 * len(stream) / n / ref, "exact": exact,
               "encode_wall_s": best[0], "encode_cpu_s": best[1], "decode_wall_s": best[2],
               "decode_cpu_s": best[3], "tmc13_encode_s": TMC13_TIMES[path.name][0],
               "tmc13_decode_s": TMC13_TIMES[path.name][1]}
        row["meets_rate_target"] = row["bpp"] <= row["target_bpp"]
        print(f"{path.name:40s} {row['bpp']:.4f} bpp (geometry {row['geometry_bpp']:.4f}) vs TMC13 {ref:.4f} "
              f"-> {row['ratio_vs_tmc13'] - 1:+.1%}  exact={exact}  enc {best[0]:.2f} s ({best[1]:.2f} cpu)  "
              f"dec {best[2]:.2f} s ({best[3]:.2f} cpu)", flush=True)
        rows.append(row)
    return rows


def lossy() -> list[dict]:
    from imcodec.metrics.bdrate import bd_rate
    from imcodec.metrics.psnr import compute_metrics

    results = []
    for path in (SOLDIER[0], BASKETBALL[0]):
        cloud = PointCloud(points=read_ply(path).points)
        normals_path = ROOT.parent / "shared" / "data" / "reference" / (
            "soldier0536_normals.ply" if "soldier" in path.name else "basketball1_normals.ply")
        normals = read_ply(normals_path).normals if normals_path.is_file() else None
        pts = []
        for rate, scale in SCALES.items():
            stream, recon, ew, _ = _code(cloud, {"scale": scale})
            out, dw, _ = _decode(stream)
            assert np.array_equal(out.points, recon.points)
            m = compute_metrics(cloud, out, peak=1023.0, normals_a=normals)
            bpp = 8 * len(stream) / len(cloud)
            pts.append({"rate": rate, "scale": scale, "points_out": len(out), "bpp": bpp, "d1_psnr": m["d1_psnr"],
                        "d2_psnr": m["d2_psnr"], "encode_s": ew, "decode_s": dw})
            print(f"{path.name:40s} {rate} scale {scale:.4f}: {bpp:.4f} bpp  D1 {m['d1_psnr']:.2f} dB  "
                  f"D2 {m['d2_psnr']:.2f} dB  ({len(out)} points)", flush=True)
        ref = TMC13_LOSSY[path.name]
        bd = bd_rate([r for r, _ in ref], [q for _, q in ref], [p["bpp"] for p in pts], [p["d1_psnr"] for p in pts])
        print(f"{path.name}: D1 BD-rate vs TMC13 r01..r06 = {bd:+.2f}%", flush=True)
        results.append({"frame": path.name, "points": pts, "tmc13": ref, "bd_rate_d1_percent": bd,
                        "meets_target": bd <= BD_TARGET})
    return results


TMC13_INTER_P_BPP = {"soldier": 0.614, "basketball": 0.53}  # P-frames with TMC13's inter prediction (README)


def sequence() -> dict:
    """Each shared sequence (geometry only) as one stream all-intra (--gof 1) and with inter-coded
    geometry (default --gof 8): P-frame bits per point against intra and against TMC13's inter mode;
    random access to the last frame (decoded through its group) checked against the input."""
    from imcodec import api

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames in (("soldier", SOLDIER), ("basketball", BASKETBALL)):
            folder = Path(tmp) / name
            folder.mkdir()
            for i, f in enumerate(frames):
                write_ply(PointCloud(points=read_ply(f).points), folder / f"{name}_{i:04d}.ply")
            row: dict = {"frames": [f.name for f in frames]}
            for label, gof in (("intra", 1), ("inter", 8)):
                stream = Path(tmp) / f"{name}_{label}.imc"
                enc = api.encode(folder, stream, options={"lossless": True, "gof": gof})
                t = time.perf_counter()
                dec = api.decode(stream, Path(tmp) / f"{name}_{label}_dec/")
                seconds = time.perf_counter() - t
                bpp = [8 * r["components"]["geometry"] / r["points"] for r in enc["per_frame"]]
                row[label] = {"bytes": enc["bytes"], "stream_bpp": enc["bpp"], "geometry_bpp": bpp,
                              "encode_seconds": enc["encode_seconds"], "decode_seconds": dec["decode_seconds"],
                              "decode_wall_s": round(seconds, 3)}
            last = Path(tmp) / f"{name}_last.ply"
            api.decode(Path(tmp) / f"{name}_inter.imc", last, frames=str(len(frames) - 1))
            row["random_access_exact"] = bool(np.array_equal(_sorted_rows(read_ply(last).points),
                                                             _sorted_rows(read_ply(frames[-1]).points)))
            p_inter = float(np.mean(row["inter"]["geometry_bpp"][1:]))
            p_intra = float(np.mean(row["intra"]["geometry_bpp"][1:]))
            row["p_frames"] = {"intra_bpp": p_intra, "inter_bpp": p_inter,
                               "inter_vs_intra_percent": 100 * (p_inter / p_intra - 1),
                               "tmc13_inter_bpp": TMC13_INTER_P_BPP[name],
                               "vs_tmc13_inter_percent": 100 * (p_inter / TMC13_INTER_P_BPP[name] - 1)}
            print(f"sequence {name}: P-frames {p_intra:.4f} bpp intra -> {p_inter:.4f} inter "
                  f"({row['p_frames']['inter_vs_intra_percent']:+.1f}%; TMC13 inter {TMC13_INTER_P_BPP[name]}), "
                  f"decode {row['inter']['decode_seconds']:.2f} s vs {row['intra']['decode_seconds']:.2f} s intra, "
                  f"random access exact {row['random_access_exact']}", flush=True)
            out[name] = row
    return out


def cold() -> dict:
    """First run in a fresh process with an empty Numba cache: with the AOT library (what a user gets
    after ``make setup``) and with ``IMCODEC_JIT=1`` (everything compiled by Numba on the spot)."""
    code = ("import time,sys; t=time.perf_counter(); from imcodec import api; "
            "api.encode(sys.argv[1], sys.argv[2]+'/c.imc', options={'lossless': True}); "
            "api.decode(sys.argv[2]+'/c.imc', sys.argv[2]+'/c.ply'); print(time.perf_counter()-t)")
    out: dict = {"target_s": COLD_TARGET_S}
    for label, extra in (("aot", {}), ("numba_jit", {"IMCODEC_JIT": "1"})):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp) / "numba"), **extra)
            if not extra:
                env.pop("IMCODEC_JIT", None)
            t = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", code, str(BASKETBALL[0]), tmp], env=env,
                                 capture_output=True, text=True, check=True)
            total = time.perf_counter() - t
        out[label] = {"first_run_encode_plus_decode_s": round(total, 2),
                      "inner_s": round(float(res.stdout.strip().split()[-1]), 2)}
    print(f"cold start (empty Numba cache, encode + decode of basketball 1): {out}", flush=True)
    return out


def fresh(repeat: int) -> list[dict]:
    """The CLI in a fresh process per run (how users and shell pipelines call it): codec seconds from
    --json and whole-command wall time, geometry only (soldier 0536) and with colour (basketball 1)."""
    from imcodec import jit

    rows = []
    cli = str(Path(sys.executable).parent / "imcodec")
    env = dict(os.environ)
    env.pop("IMCODEC_JIT", None)
    with tempfile.TemporaryDirectory() as tmp:
        geom = Path(tmp) / "basketball1_geometry.ply"
        write_ply(PointCloud(points=read_ply(BASKETBALL[0]).points), geom)
        cases = [("soldier_q08_0536.ply geometry", SOLDIER[0], ["--lossless"], 1.5),
                 ("basketball_player_00000001_vox10.ply geometry", geom, ["--lossless"], 1.5),
                 ("basketball_player_00000001_vox10.ply colour qp 22", BASKETBALL[0],
                  ["--lossless", "--attr-qp", "22"], 3.0)]
        for label, path, flags, target in cases:
            best = {}
            for _ in range(repeat):
                stream, dec = Path(tmp) / "f.imc", Path(tmp) / "f.ply"
                t = time.perf_counter()
                enc = subprocess.run([cli, "encode", "--codec", "octree", str(path),
                                      "-o", str(stream), *flags, "--json"], env=env, capture_output=True,
                                     text=True, check=True)
                ew = time.perf_counter() - t
                t = time.perf_counter()
                dd = subprocess.run([cli, "decode", str(stream), "-o", str(dec), "--json"],
                                    env=env, capture_output=True, text=True, check=True)
                dw = time.perf_counter() - t
                e, d = json.loads(enc.stdout), json.loads(dd.stdout)
                cur = {"encode_s": e["encode_seconds"], "decode_s": d["decode_seconds"], "encode_wall_s": ew,
                       "decode_wall_s": dw}
                best = cur if not best else {k: min(best[k], cur[k]) for k in cur}
            row = {"case": label, **{k: round(v, 3) for k, v in best.items()}, "target_s": target,
                   "meets_speed_target": best["encode_s"] <= target and best["decode_s"] <= target}
            print(f"fresh process, {label}: encode {row['encode_s']:.2f} s (wall {row['encode_wall_s']:.2f}), "
                  f"decode {row['decode_s']:.2f} s (wall {row['decode_wall_s']:.2f}), target {target} s", flush=True)
            rows.append(row)
    rows.append({"aot": {g: bool(v.get("library")) for g, v in jit.aot_info().items()}})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="lossless,lossy,sequence,fresh,cold")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    require_data()
    parts = set(args.parts.split(","))
    _code(PointCloud(points=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])), {"lossless": True})  # warm the cache
    result: dict = {"targets": {"lossless_ratio": TARGET_RATIO, "bd_rate_percent": BD_TARGET,
                                "speed_s": SPEED_TARGET_S, "cold_s": COLD_TARGET_S},
                    "load_average": os.getloadavg()}
    if "lossless" in parts:
        result["lossless"] = lossless(args.repeat)
    if "lossy" in parts:
        result["lossy"] = lossy()
    if "sequence" in parts:
        result["sequence"] = sequence()
    if "fresh" in parts:
        result["fresh"] = fresh(args.repeat)
    if "cold" in parts:
        result["cold"] = cold()
    write_result("octree_vs_tmc13", result)
    ok = all(r["meets_rate_target"] for r in result.get("lossless", [])) and \
        all(r["meets_target"] for r in result.get("lossy", []))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

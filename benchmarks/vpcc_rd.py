"""V-PCC intra codec on ../shared/data: rate-distortion against TMC13's octree, colour, lossless, speed.

    python benchmarks/vpcc_rd.py [--frames soldier,basketball] [--rates r1,r2,r3,r4,r5]
                                 [--no-lossless] [--threads 2]
                                 # writes benchmarks/results/vpcc_rd.json

Per frame (soldier 0536, basketball 1) and CTC rate: bytes per sub-stream, geometry bits per input point
(geometry video + occupancy + patch data + raw points, colour excluded, as the target asks) and total
bits per point, D1/D2 PSNR (pc_error conventions through imcodec.metrics, peak 1023, the reference
normals from ../shared/data/reference), Y/Cb/Cr PSNR for the coloured frame, encode/decode wall and
CPU seconds (codec time, PLY I/O excluded, warm Numba cache) and the process's peak memory. Then the
pchip D1 BD-rate against TMC13 v23's lossy octree series r01..r06 (numbers from the data README) and
the lossless setting's D1 (must be inf).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, require_data, write_result  # noqa: E402

from imcodec.codecs import get_codec  # noqa: E402
from imcodec.io.bitstream import StreamWriter, parse_stream, read_frame  # noqa: E402
from imcodec.io.ply import read_ply  # noqa: E402
from imcodec.metrics.bdrate import bd_rate  # noqa: E402
from imcodec.metrics.psnr import compute_metrics  # noqa: E402

FRAMES = {
    "soldier": ("soldier_q08_0536.ply", "reference/soldier0536_normals.ply"),
    "basketball": ("basketball_player_00000001_vox10.ply", "reference/basketball1_normals.ply"),
}
TMC13_LOSSY = {  # README: TMC13 v23 lossy octree r01..r06, (geometry bpip, D1 PSNR)
    "soldier": [(0.0231, 52.90), (0.0735, 57.91), (0.2251, 63.56), (0.4929, 67.45), (0.6338, 69.80),
                (0.7124, 70.38)],
    "basketball": [(0.0186, 52.78), (0.0554, 58.43), (0.1665, 63.21), (0.3644, 67.97), (0.4609, 69.68),
                   (0.5070, 70.38)],
}
GEOMETRY_PARTS = ("geometry_video", "occupancy", "patches", "raw_points")
BD_TARGET, ENCODE_TARGET_S, DECODE_TARGET_S, MEMORY_TARGET_GB = -50.0, 30.0, 5.0, 4.0


def run_point(cloud, normals, options: dict) -> dict:
    """Encode + decode one setting through the container; metrics of the decoded cloud."""
    codec = get_codec("vpcc")
    config = codec.make_config(options)
    w0, c0 = time.perf_counter(), time.process_time()
    code = codec.encode_frame(cloud, config, {})
    enc_wall, enc_cpu = time.perf_counter() - w0, time.process_time() - c0
    writer = StreamWriter(codec.codec_id, codec.stream_params(config))
    writer.add_frame(0, len(code.recon), code.components)
    stream = writer.finish(bit_depth=code.bit_depth)
    header, entries = parse_stream(stream)
    w0, c0 = time.perf_counter(), time.process_time()
    dec = codec.decode_frame(read_frame(stream, entries[0]), header, {})
    dec_wall, dec_cpu = time.perf_counter() - w0, time.process_time() - c0
    assert np.array_equal(dec.points, code.recon.points), "decoder differs from the encoder's recon"
    color = cloud.colors is not None
    m = compute_metrics(cloud, dec, peak=1023.0, normals_a=normals, color=color)
    sizes = {k: len(v) for k, v in code.components.items()}
    n = len(cloud)
    row = {
        "options": options, "geometry_qp": config.geometry_qp, "attribute_qp": config.attribute_qp,
        "components": sizes, "stream_bytes": len(stream),
        "geometry_bpp": 8.0 * sum(sizes[k] for k in GEOMETRY_PARTS) / n,
        "attribute_bpp": 8.0 * sizes["attribute_video"] / n, "total_bpp": 8.0 * len(stream) / n,
        "points_in": n, "points_out": len(dec),
        "d1_psnr": m["d1_psnr"], "d2_psnr": m["d2_psnr"], "d1_mse": m["d1_mse"],
        "a_to_b_d1_mse": m["a_to_b"]["d1_mse"], "b_to_a_d1_mse": m["b_to_a"]["d1_mse"],
        "encode_wall_s": round(enc_wall, 3), "encode_cpu_s": round(enc_cpu, 3),
        "decode_wall_s": round(dec_wall, 3), "decode_cpu_s": round(dec_cpu, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3),
    }
    if color:
        row.update(y_psnr=m["y_psnr"], cb_psnr=m["cb_psnr"], cr_psnr=m["cr_psnr"])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="soldier,basketball")
    ap.add_argument("--rates", default="r1,r2,r3,r4,r5")
    ap.add_argument("--no-lossless", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    require_data()
    out: dict = {"frames": {}, "targets": {"bd_rate_percent": BD_TARGET, "encode_s_r3": ENCODE_TARGET_S,
                                            "decode_s_r3": DECODE_TARGET_S, "peak_memory_gb": MEMORY_TARGET_GB}}
    get_codec("vpcc").encode_frame(read_ply(DATA / FRAMES["basketball"][0]),  # warm the Numba cache
                                   get_codec("vpcc").make_config({"rate": "r1"}), {})
    for name in args.frames.split(","):
        fname, nname = FRAMES[name]
        cloud = read_ply(DATA / fname)
        normals = read_ply(DATA / nname).normals
        rows = {}
        for rate in args.rates.split(","):
            rows[rate] = run_point(cloud, normals, {"rate": rate, "threads": args.threads})
            r = rows[rate]
            print(f"{name} {rate}: geometry {r['geometry_bpp']:.4f} bpp D1 {r['d1_psnr']:.2f} dB "
                  f"D2 {r['d2_psnr']:.2f} dB total {r['total_bpp']:.4f} bpp"
                  + (f" Y {r['y_psnr']:.2f} dB" if "y_psnr" in r else "")
                  + f" enc {r['encode_wall_s']:.1f}s dec {r['decode_wall_s']:.2f}s", flush=True)
        entry: dict = {"file": fname, "points": len(cloud), "rates": rows}
        anchor = TMC13_LOSSY[name]
        ours = [rows[r] for r in rows]
        if len(ours) >= 2:
            ra, qa = zip(*anchor)
            try:
                entry["bd_rate_d1_vs_tmc13_percent"] = bd_rate(
                    list(ra), list(qa), [r["geometry_bpp"] for r in ours], [r["d1_psnr"] for r in ours],
                    method="pchip")
            except ValueError as exc:
                entry["bd_rate_d1_vs_tmc13_percent"] = None
                entry["bd_rate_error"] = str(exc)
            print(f"{name}: D1 BD-rate vs TMC13 octree {entry['bd_rate_d1_vs_tmc13_percent']}")
        if not args.no_lossless:
            r = run_point(cloud, normals, {"lossless": True, "threads": args.threads})
            entry["lossless"] = r
            print(f"{name} lossless: D1 {r['d1_psnr']} geometry {r['geometry_bpp']:.4f} bpp "
                  f"enc {r['encode_wall_s']:.1f}s dec {r['decode_wall_s']:.2f}s", flush=True)
        out["frames"][name] = entry
    write_result("vpcc_rd", out)


if __name__ == "__main__":
    main()

"""Learned V-PCC enhancement on the held-out frames: depth denoising BD-rate, restore D1 gain, time.

Held-out frames (not used to train the shipped weights): soldier 0538 and basketball 2. Each frame
is V-PCC coded (geometry only, the codec's defaults) at CTC rates r1..r5; its sub-streams are
decoded four ways: the plain decoder, the decoder with the depth denoiser (``--denoise-depth``,
shipped weights: the look-up-table denoiser), the decoder with the peer denoiser (``--peer-denoiser``,
default the shipped CNN; columns ``*_peer``) and the plain decoder followed by artifact removal
(``imcodec restore --rate``: the rate's shipped weights, its own file for r1 and r2, else the
all-rate one, with the rate's keep count); at the restore rates also
the LUT-denoised cloud restored with the same keep rule (what ``decode --denoise-depth --restore``
does; columns ``*_denoised_restored``), and both again with the ratios ``encode --restore-hint``
would send (``hint_ratio`` and ``hint_ratio_denoised``, found against the source in ``hint_s``
together; columns ``*_hinted``). D1 PSNR is symmetric, peak 1023 (imcodec.metrics,
pc_error conventions); rate = stream bytes x 8 / input points. Decode times are wall seconds of
the V-PCC decoder (video decoding included) with 2 threads, best of ``--repeat``. At the restore rates,
``restore_first_layer_s`` times the restore network's first convolution alone over the decoded frame
(kernel map and 1 -> 8 channels): the plain decoder plus that one layer, ``decode_ratio_first_layer``,
bounds from below what any restore with this network can cost.

Targets (issue #9): D1 BD-rate with --denoise-depth vs without <= -8% over r1..r5; restore D1
gain >= +1.0 dB at r1 and r2 and >= 0 at r5; decode time with either tool <= 2x the plain decoder's.

    python benchmarks/vpcc_enhance.py                       # both frames, all rates, restore at r1 r2 r5
    python benchmarks/vpcc_enhance.py --restore-rates r1 r2 r3 r4 r5
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASKETBALL, SOLDIER, require_data, write_result  # noqa: E402

HELD_OUT = [SOLDIER[2], BASKETBALL[1]]
RATES = ("r1", "r2", "r3", "r4", "r5")
PEAK = 1023.0


def d1(ref, test) -> float:
    from imcodec.metrics.psnr import compute_metrics

    return float(compute_metrics(ref, test, PEAK)["d1_psnr"])


def timed(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def first_layer_s(model, cloud, repeat: int) -> float:
    """Seconds for the restore network's first convolution alone (3x3x3, 1 -> 8 channels, kernel map
    included) over the whole decoded frame, 2 threads, best of ``repeat``: a floor under any restore
    with this network, which runs 38 more convolutions, the last two over the candidates."""
    import numpy as np
    import torch

    from imcodec.learned.sparse import sparse_tensor

    coords = torch.from_numpy(np.unique(np.rint(cloud.points).astype(np.int64), axis=0))

    def run():
        with torch.no_grad():
            return model.stem(sparse_tensor(coords, torch.ones(len(coords), 1)))

    torch.set_num_threads(2)
    return timed(run, repeat)[0]


def run_frame(path: Path, restore_rates, repeat: int, dn_weights=None, rs_weights=None, peer=None) -> dict:
    import torch

    from imcodec.io.ply import read_ply
    from imcodec.learned.denoiser import DepthDenoiser
    from imcodec.learned.restore import best_keep_ratio, load_restorer, restore_cloud
    from imcodec.types import PointCloud
    from imcodec.vpcc.codec import decode_components
    from imcodec.vpcc.config import StreamParams, config_from_options
    from imcodec.vpcc.encoder import encode_cloud

    src = read_ply(path)
    ref = PointCloud(src.points, None)
    denoiser = DepthDenoiser(dn_weights)
    peer_dn = DepthDenoiser(peer) if peer else None
    out = {"file": path.name, "points": len(ref), "rates": {}}
    for rate in RATES:
        cfg = replace(config_from_options({"rate": rate, "threads": 2}))
        frame = encode_cloud(ref, cfg)
        sp = StreamParams.from_config(cfg)
        nbytes = sum(len(v) for v in frame.components.values()) + len(sp.pack())
        if rate == RATES[0]:  # warm-up (Numba kernels load, torch threads start), not timed
            for dn in (denoiser, peer_dn):
                decode_components(frame.components, sp, threads=2, denoiser=dn)
        t_plain, plain = timed(lambda: decode_components(frame.components, sp, threads=2), repeat)
        t_dn, den = timed(lambda: decode_components(frame.components, sp, threads=2, denoiser=denoiser), repeat)
        row = {"bytes": nbytes, "bpp": nbytes * 8 / len(ref), "d1_psnr": d1(ref, plain),
               "d1_psnr_denoised": d1(ref, den), "points_out": len(plain), "points_out_denoised": len(den),
               "decode_s": round(t_plain, 4), "decode_denoised_s": round(t_dn, 4)}
        row["decode_ratio_denoised"] = round(t_dn / t_plain, 3)
        row["d1_gain_denoised"] = row["d1_psnr_denoised"] - row["d1_psnr"]
        if peer_dn is not None:
            t_pe, pe = timed(lambda: decode_components(frame.components, sp, threads=2, denoiser=peer_dn), repeat)
            row.update({"d1_psnr_denoised_peer": d1(ref, pe), "points_out_denoised_peer": len(pe),
                        "decode_denoised_peer_s": round(t_pe, 4), "decode_ratio_denoised_peer": round(t_pe / t_plain, 3)})
        if rate in restore_rates:
            model, info = load_restorer(rate, rs_weights)
            torch.set_num_threads(2)
            t0 = time.perf_counter()
            rest = restore_cloud(model, info, plain, rate, threads=2)
            t_rs = time.perf_counter() - t0
            row.update({"d1_psnr_restored": d1(ref, rest), "points_out_restored": len(rest),
                        "restore_s": round(t_rs, 3), "keep_ratio": info["keep_ratio"],
                        "keep_exponent": info["keep_exponent"], "support": info["support"],
                        "decode_ratio_restored": round((t_plain + t_rs) / t_plain, 2)})
            t_floor = first_layer_s(model, plain, repeat)
            row.update({"restore_first_layer_s": round(t_floor, 4),
                        "decode_ratio_first_layer": round((t_plain + t_floor) / t_plain, 2)})
            row["d1_gain_restored"] = row["d1_psnr_restored"] - row["d1_psnr"]
            # the decoder's --denoise-depth --restore: restore with the rate's keep ratio on the denoised cloud
            both = restore_cloud(model, info, den, rate, threads=2)
            row.update({"d1_psnr_denoised_restored": d1(ref, both), "points_out_denoised_restored": len(both)})
            row["d1_gain_denoised_restored"] = row["d1_psnr_denoised_restored"] - row["d1_psnr"]
            # encode --restore-hint: the encoder's best ratios for this frame, plain and denoised
            t0 = time.perf_counter()
            hint = best_keep_ratio(model, plain.points, ref.points, support=info["support"])["ratio"]
            hint_dn = best_keep_ratio(model, den.points, ref.points, support=info["support"])["ratio"]
            t_hint = time.perf_counter() - t0
            hinted = restore_cloud(model, info, plain, rate, threads=2, ratio=hint)
            both_h = restore_cloud(model, info, den, rate, threads=2, ratio=hint_dn)
            row.update({"hint_ratio": hint, "hint_ratio_denoised": hint_dn, "hint_s": round(t_hint, 2),
                        "d1_gain_restored_hinted": d1(ref, hinted) - row["d1_psnr"],
                        "d1_gain_denoised_restored_hinted": d1(ref, both_h) - row["d1_psnr"]})
        out["rates"][rate] = row
        print(f"{path.name} {rate}: {row['bpp']:.4f} bpp, D1 {row['d1_psnr']:.3f} -> denoised "
              f"{row['d1_psnr_denoised']:.3f} ({row['d1_gain_denoised']:+.3f} dB), decode {t_plain:.3f} s -> "
              f"{t_dn:.3f} s" + (f", restored {row['d1_gain_restored']:+.3f} dB in {row['restore_s']:.1f} s, "
                                 f"denoised+restored {row['d1_gain_denoised_restored']:+.3f} dB"
                                 if "d1_gain_restored" in row else ""), flush=True)
    return out


def summarise(frame: dict) -> dict:
    from imcodec.metrics.bdrate import bd_psnr, bd_rate

    rows = [frame["rates"][r] for r in RATES]
    r = [x["bpp"] for x in rows]
    s = {"bd_rate_denoised_pct": bd_rate(r, [x["d1_psnr"] for x in rows], r, [x["d1_psnr_denoised"] for x in rows]),
         "bd_psnr_denoised_db": bd_psnr(r, [x["d1_psnr"] for x in rows], r, [x["d1_psnr_denoised"] for x in rows]),
         "max_decode_ratio_denoised": max(x["decode_ratio_denoised"] for x in rows)}
    if all("d1_psnr_denoised_peer" in x for x in rows):
        s["bd_rate_denoised_peer_pct"] = bd_rate(r, [x["d1_psnr"] for x in rows], r,
                                                 [x["d1_psnr_denoised_peer"] for x in rows])
        s["max_decode_ratio_denoised_peer"] = max(x["decode_ratio_denoised_peer"] for x in rows)
    gains = {k: v["d1_gain_restored"] for k, v in frame["rates"].items() if "d1_gain_restored" in v}
    if gains:
        s["restore_gain_db"] = gains
        s["denoise_restore_gain_db"] = {k: v["d1_gain_denoised_restored"] for k, v in frame["rates"].items()
                                        if "d1_gain_denoised_restored" in v}
        s["restore_gain_hinted_db"] = {k: v["d1_gain_restored_hinted"] for k, v in frame["rates"].items()
                                       if "d1_gain_restored_hinted" in v}
        s["denoise_restore_gain_hinted_db"] = {k: v["d1_gain_denoised_restored_hinted"]
                                               for k, v in frame["rates"].items()
                                               if "d1_gain_denoised_restored_hinted" in v}
        s["max_decode_ratio_restored"] = max(v["decode_ratio_restored"] for v in frame["rates"].values()
                                             if "decode_ratio_restored" in v)
        s["min_decode_ratio_first_layer"] = min(v["decode_ratio_first_layer"] for v in frame["rates"].values()
                                                if "decode_ratio_first_layer" in v)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--restore-rates", nargs="*", default=["r1", "r2", "r5"])
    ap.add_argument("--repeat", type=int, default=5, help="decode timings: best of this many runs")
    ap.add_argument("--frames", nargs="*", default=None, help="PLY files (default: the held-out frames)")
    ap.add_argument("--denoise-weights", default=None, help="default: the shipped LUT denoiser")
    ap.add_argument("--peer-denoiser", default="cnn", help="second denoiser to compare (file, 'lut' or 'cnn'; "
                                                            "'' for none); default the shipped CNN")
    ap.add_argument("--restore-weights", default=None, help="default: the shipped file")
    ap.add_argument("--name", default="vpcc_enhance", help="results file name")
    args = ap.parse_args()
    require_data()
    frames = [Path(f) for f in args.frames] if args.frames else HELD_OUT
    results = {}
    for path in frames:
        fr = run_frame(path, set(args.restore_rates), args.repeat, args.denoise_weights, args.restore_weights,
                       args.peer_denoiser)
        fr["summary"] = summarise(fr)
        print(path.name, fr["summary"], flush=True)
        results[path.stem] = fr
    targets = {"bd_rate_denoised_pct": "<= -8", "restore_gain_db_r1_r2": ">= 1.0", "restore_gain_db_r5": ">= 0",
               "decode_ratio": "<= 2"}
    write_result(args.name, {"frames": results, "targets": targets,
                                  "notes": "geometry only; decode with 2 threads",
                                  "weights": {"denoise": args.denoise_weights or "shipped (lut)",
                                              "peer_denoiser": args.peer_denoiser,
                                              "restore": args.restore_weights or "shipped"}})


if __name__ == "__main__":
    main()

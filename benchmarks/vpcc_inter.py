"""V-PCC sequences on ../shared/data: all-intra vs GOF inter coding vs GOF with 3D-motion colour hints.

    python benchmarks/vpcc_inter.py [--sequences soldier,basketball] [--rates r1,r2,r3,r4,r5]
                                    [--threads 2] [--keep-others] [--hint-refs all|predicted|t0]
                                    # writes benchmarks/results/vpcc_inter.json

Sequences: soldier 0536-0538 (geometry only), basketball 1-2 (colour) and, with
``--sequences synth_body``, 8 frames of ``imcodec synth --shape body --bits 9 --motion wave --color``
(a longer coloured sequence, where most frames are inter frames; PSNR peak 511 there, 1023 else). Per sequence, rate and setting
(``intra``: --gof 1; ``gof``: one GOF, temporally consistent packing, motion hints off; ``gof_hints``:
the same with --motion-hints on, coloured sequences only) the stream is built through the container,
every frame decoded (the decoder's output must equal the encoder's reconstruction) and measured with
imcodec.metrics (pc_error conventions, peak 1023; the reference normals where ../shared/data has them,
else estimated): bytes per sub-stream, total / geometry / attribute bits per input point, mean D1, D2
and Y/Cb/Cr PSNR over the frames, encode and decode seconds (codec time, warm Numba cache). Then the
issue #8 targets: total bits of ``gof`` vs ``intra`` at the same QPs (with the D1 / Y PSNR change)
and at equal quality (the ``gof`` curve's bits at each ``intra`` point's D1 / Y PSNR, log rate
interpolated linearly in PSNR between its rate points),
pchip BD-rates of ``gof_hints`` vs ``gof`` (Y over attribute bits, D1 over geometry bits) and the
decode-time ratio. The hints act on inter frames only, so the Y BD-rate is also given over the inter
frames alone (``y_bdrate_inter_frames_percent``: attribute bytes of frames 2..N, split per picture
from the HEVC access units, against their mean Y PSNR): on basketball, whose frame 1 is an I-frame
in both streams, the whole-sequence number mixes in that frame's identical bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASKETBALL, DATA, RESULTS, SOLDIER, require_data, write_result  # noqa: E402

from imcodec.codecs import get_codec  # noqa: E402
from imcodec.io.bitstream import StreamWriter, parse_stream, read_frame  # noqa: E402
from imcodec.io.ply import read_ply  # noqa: E402
from imcodec.metrics.bdrate import bd_rate  # noqa: E402
from imcodec.metrics.psnr import compute_metrics  # noqa: E402
from imcodec.vpcc.config import HINT_REFS  # noqa: E402

SEQUENCES = {"soldier": (SOLDIER, {0: "reference/soldier0536_normals.ply"}),
             "basketball": (BASKETBALL, {0: "reference/basketball1_normals.ply"})}
SYNTH = {"synth_body": dict(shape="body", bits=9, frames=8, motion="wave", color=True, seed=8)}


def load(name: str):
    """(clouds, normals by frame index, frame names) of a real or synthetic sequence."""
    if name in SYNTH:
        from imcodec.synth import make_sequence

        clouds = make_sequence(**SYNTH[name])
        return clouds, {}, [f"{name}_{i:04d}" for i in range(len(clouds))]
    paths, normal_files = SEQUENCES[name]
    clouds = [read_ply(p) for p in paths]
    normals = {i: read_ply(DATA / f).normals for i, f in normal_files.items()}
    return clouds, normals, [p.name for p in paths]
SETTINGS = {"intra": {"gof": 1}, "gof": {"gof": 32, "motion_hints": False},
            "gof_hints": {"gof": 32, "motion_hints": True}}
GEOMETRY_PARTS = ("geometry_video", "occupancy", "patches", "raw_points", "gof")
TARGETS = {"gof_vs_intra_total_bits_percent": -15.0, "hints_y_bdrate_percent": -10.0,
           "hints_d1_bdrate_percent": 0.0, "hints_decode_time_ratio": 1.3}


def picture_bytes(data: bytes) -> list[int]:
    """Bytes of each coded picture of an HEVC Annex-B stream, in decoding order; parameter sets and
    SEI count towards the picture that follows them."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i)
        i = data.find(b"\x00\x00\x01", i + 3)
    sizes: list[int] = []
    pending = starts[0] if starts else len(data)  # the leading zero of a 4-byte start code
    for k, st in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(data)
        nal = data[st + 3:end]
        n = end - st
        if len(nal) < 3:
            pending += n
            continue
        nal_type = (nal[0] >> 1) & 0x3F
        if nal_type < 32 and nal[2] & 0x80:  # a VCL NAL unit that starts a picture
            sizes.append(pending + n)
            pending = 0
        elif nal_type < 32 and sizes:  # a further slice of the current picture
            sizes[-1] += n
        else:
            pending += n
    if pending and sizes:
        sizes[-1] += pending
    return sizes


def attribute_bytes_per_frame(codes) -> list[int]:
    """Attribute-video bytes of each frame: the pictures of every frame's attribute sub-stream, in
    order, shared out equally among the frames (each frame codes the same number of texture layers)."""
    pics = [b for code in codes for b in picture_bytes(code.components.get("attribute_video", b""))]
    if not pics or len(pics) % len(codes):
        raise RuntimeError(f"{len(pics)} attribute pictures for {len(codes)} frames")
    per = len(pics) // len(codes)
    out = [sum(pics[k * per:(k + 1) * per]) for k in range(len(codes))]
    total = sum(len(code.components.get("attribute_video", b"")) for code in codes)
    assert sum(out) == total, (sum(out), total)
    return out


def run_setting(clouds, normals, options: dict, peak: float = 1023.0) -> dict:
    codec = get_codec("vpcc")
    config = codec.make_config(options)
    t0 = time.perf_counter()
    if config.gof > 1:
        codes = codec.encode_group(clouds, config, {})
    else:
        codes = [codec.encode_frame(c, config, {}) for c in clouds]
    enc = time.perf_counter() - t0
    writer = StreamWriter(codec.codec_id, codec.stream_params(config))
    for i, code in enumerate(codes):
        writer.add_frame(i, len(code.recon), code.components, code.needs_previous)
    stream = writer.finish(bit_depth=max(c.bit_depth for c in codes))
    header, entries = parse_stream(stream)
    state: dict = {}
    t0 = time.perf_counter()
    decoded = [codec.decode_frame(read_frame(stream, e), header, state) for e in entries]
    dec = time.perf_counter() - t0
    sizes: dict = {}
    for code, d in zip(codes, decoded):
        assert np.array_equal(d.points, code.recon.points), "decoder differs from the encoder's recon"
        for k, v in code.components.items():
            sizes[k] = sizes.get(k, 0) + len(v)
    n = sum(len(c) for c in clouds)
    color = clouds[0].colors is not None
    per = [compute_metrics(c, d, peak=peak, normals_a=normals.get(i), color=color)
           for i, (c, d) in enumerate(zip(clouds, decoded))]
    row = {"options": options, "geometry_qp": config.geometry_qp, "attribute_qp": config.attribute_qp,
           "components": sizes, "stream_bytes": len(stream),
           "total_bpp": 8.0 * len(stream) / n,
           "geometry_bpp": 8.0 * sum(sizes.get(k, 0) for k in GEOMETRY_PARTS) / n,
           "attribute_bpp": 8.0 * sizes.get("attribute_video", 0) / n,
           "d1_psnr": float(np.mean([m["d1_psnr"] for m in per])),
           "d2_psnr": float(np.mean([m["d2_psnr"] for m in per])),
           "encode_s": round(enc, 3), "decode_s": round(dec, 3)}
    if color:
        for key in ("y_psnr", "cb_psnr", "cr_psnr"):
            row[key] = float(np.mean([m[key] for m in per]))
        row["y_psnr_per_frame"] = [float(m["y_psnr"]) for m in per]
        row["attribute_bytes_per_frame"] = attribute_bytes_per_frame(codes)
        inter = slice(1, None)
        row["inter_attribute_bpp"] = (8.0 * sum(row["attribute_bytes_per_frame"][inter])
                                      / sum(len(c) for c in clouds[inter])) if len(clouds) > 1 else None
        row["inter_y_psnr"] = float(np.mean(row["y_psnr_per_frame"][inter])) if len(clouds) > 1 else None
    return row


def _bd(rows_a: dict, rows_b: dict, rate: str, metric: str):
    ra = [rows_a[r][rate] for r in rows_a]
    qa = [rows_a[r][metric] for r in rows_a]
    rb = [rows_b[r][rate] for r in rows_b]
    qb = [rows_b[r][metric] for r in rows_b]
    try:
        return bd_rate(ra, qa, rb, qb, method="pchip")
    except Exception as exc:  # noqa: BLE001 - report, do not abort the run
        return f"n/a ({exc})"


def _bits_at_equal(rows: dict, point: dict, metric: str) -> float:
    """Bits of the ``rows`` curve at ``point``'s quality, in percent against ``point``'s bits: log rate
    interpolated linearly in PSNR between the curve's neighbouring rate points (the end segments'
    slope beyond them)."""
    pts = sorted((r[metric], np.log(r["stream_bytes"])) for r in rows.values())
    q = np.array([p[0] for p in pts])
    lr = np.array([p[1] for p in pts])
    k = int(np.clip(np.searchsorted(q, point[metric]), 1, len(q) - 1))
    t = (point[metric] - q[k - 1]) / max(q[k] - q[k - 1], 1e-9)
    return float(100.0 * (np.exp(lr[k - 1] + t * (lr[k] - lr[k - 1])) / point["stream_bytes"] - 1.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", default="soldier,basketball")
    ap.add_argument("--rates", default="r1,r2,r3,r4,r5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hint-refs", default="all", choices=HINT_REFS,
                    help="references of the gof_hints runs (other than all: writes vpcc_inter_hint_refs_X.json)")
    ap.add_argument("--keep-others", action="store_true",
                    help="keep the entries of sequences not run now from the existing results file")
    args = ap.parse_args()
    require_data()
    out: dict = {"rates": args.rates.split(","), "targets": TARGETS, "sequences": {}}
    result_name = "vpcc_inter" if args.hint_refs == "all" else f"vpcc_inter_hint_refs_{args.hint_refs}"
    out["hint_refs"] = args.hint_refs
    old = RESULTS / f"{result_name}.json"
    if args.keep_others and old.is_file():
        prev = json.loads(old.read_text())
        for name, entry in prev.get("sequences", {}).items():
            entry.setdefault("measured", prev.get("date"))
            out["sequences"][name] = entry
    for name in args.sequences.split(","):
        clouds, normals, names = load(name)
        settings = [s for s in SETTINGS if s != "gof_hints" or clouds[0].colors is not None]
        rows: dict = {s: {} for s in settings}
        for rate in args.rates.split(","):
            for s in settings:
                peak = float((1 << SYNTH[name]["bits"]) - 1) if name in SYNTH else 1023.0
                extra = {"hint_refs": args.hint_refs} if s == "gof_hints" else {}
                r = run_setting(clouds, normals, {**SETTINGS[s], **extra, "rate": rate, "threads": args.threads},
                                peak)
                rows[s][rate] = r
                print(f"{name} {rate} {s}: total {r['total_bpp']:.4f} bpp geometry {r['geometry_bpp']:.4f} "
                      f"attribute {r['attribute_bpp']:.4f} D1 {r['d1_psnr']:.2f} dB"
                      + (f" Y {r['y_psnr']:.2f} dB" if "y_psnr" in r else "")
                      + f" enc {r['encode_s']:.1f}s dec {r['decode_s']:.2f}s", flush=True)
        entry: dict = {"frames": names, "points": [len(c) for c in clouds], "rows": rows,
                       "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
        cmp = {}
        for rate in rows["gof"]:
            a, b = rows["intra"][rate], rows["gof"][rate]
            cmp[rate] = {"total_bits_percent": 100.0 * (b["stream_bytes"] / a["stream_bytes"] - 1.0),
                         "d1_change_db": b["d1_psnr"] - a["d1_psnr"],
                         "y_change_db": (b["y_psnr"] - a["y_psnr"]) if "y_psnr" in a else None}
        for metric, key in (("d1_psnr", "bits_at_equal_d1_percent"), ("y_psnr", "bits_at_equal_y_percent")):
            if metric in rows["intra"][next(iter(rows["intra"]))]:
                for rate in cmp:
                    cmp[rate][key] = _bits_at_equal(rows["gof"], rows["intra"][rate], metric)
        entry["gof_vs_intra"] = cmp
        entry["gof_vs_intra_bdrate_d1_total_percent"] = _bd(rows["intra"], rows["gof"], "total_bpp", "d1_psnr")
        if "gof_hints" in rows:
            entry["hints_vs_gof"] = {
                "y_bdrate_attribute_percent": _bd(rows["gof"], rows["gof_hints"], "attribute_bpp", "y_psnr"),
                "y_bdrate_total_percent": _bd(rows["gof"], rows["gof_hints"], "total_bpp", "y_psnr"),
                "y_bdrate_inter_frames_percent": _bd(rows["gof"], rows["gof_hints"], "inter_attribute_bpp",
                                                     "inter_y_psnr"),
                "d1_bdrate_geometry_percent": _bd(rows["gof"], rows["gof_hints"], "geometry_bpp", "d1_psnr"),
                "decode_time_ratio": float(sum(r["decode_s"] for r in rows["gof_hints"].values())
                                           / sum(r["decode_s"] for r in rows["gof"].values())),
            }
            entry["gof_hints_vs_intra_bdrate_y_total_percent"] = _bd(rows["intra"], rows["gof_hints"],
                                                                     "total_bpp", "y_psnr")
        print(name, {k: v for k, v in entry.items() if k not in ("rows",)}, flush=True)
        out["sequences"][name] = entry
    write_result(result_name, out)


if __name__ == "__main__":
    main()

"""Ways to use the 3D-motion colour prediction of V-PCC inter frames, on basketball frame 2.

    python benchmarks/vpcc_hint_designs.py [--rates r1,r2,r3,r4,r5]
                                           # writes benchmarks/results/vpcc_hint_designs.json

An experiment behind issue #8's targets, not a shipped mode. Basketball 1-2 is coded as one GOF at
each rate, once with motion hints off and once on; the colour pictures of frame 2 are taken from
inside the encoder (its functions wrapped, nothing changed) and compared in the image domain, on the
pixels the decoder reads (Y PSNR of T0 against the uncompressed atlas):

- ``gof``: hints off, frame 2 a P-frame of the GOF's colour video (bytes split per picture);
  ``frame1``: frame 1's colour (its I-frame and T1), the same bytes in every design;
- ``reference``: the shipped design (``MODE_REF_LAYERS``): four synthesised reference pictures that
  both sides code with x265 (the decoder has to code them again): the predicted T0 and T1, then frame
  1's decoded T0 and T1;
- ``reference_predictions_only``: only the predicted T0 and T1 as references;
- ``reference_t0_only``: the design before both, one synthesised reference, the predicted T0;
- ``residual``: frame 2 minus its layer's prediction (+128, 0 outside the read pixels) coded as its
  own x265 video at the same QP, added back after decoding. Its decoder skips the re-encode but
  still has to compute the prediction;
- ``block_mc_reference`` / ``block_mc_residual``: the same two designs with a cheap prediction: 16x16
  blocks of frame 1's decoded colour picture moved by block motion vectors (:func:`imcodec.vpcc.motion.block_hints`,
  the median MV of the block's matches) derived from one near-layer pixel in 16 (every 4th row and
  column) matched to frame 1's decoded points; blocks without a vector keep MV 0. ``block_mc_s`` is the
  time of that prediction (matching, vectors, block copies).

Reports bytes and Y PSNR per rate and the pchip BD-rates of every design against ``gof``: over frame
2 alone (``*_y_bdrate_vs_gof_percent``) and over the sequence, frame 1 included
(``*_y_bdrate_sequence_percent``; bytes summed, Y PSNR averaged over the two frames).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASKETBALL, require_data, write_result  # noqa: E402
from vpcc_inter import picture_bytes  # noqa: E402

import imcodec.vpcc.inter as inter  # noqa: E402
from imcodec.codecs import get_codec  # noqa: E402
from imcodec.io.ply import read_ply  # noqa: E402
from imcodec.metrics.bdrate import bd_rate  # noqa: E402
from imcodec.vpcc.padding import fill_from_previous  # noqa: E402
from imcodec.vpcc.video import VideoSpec, decode_video, encode_video  # noqa: E402


def y_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = a.astype(np.float64)[mask] - b.astype(np.float64)[mask]
    return float(10.0 * np.log10(255.0 ** 2 / np.mean(d * d)))


def capture(clouds, options: dict) -> dict:
    """Encode a GOF with the inter module's video and mask functions wrapped to record their inputs."""
    seen: dict = {"masks": []}
    orig = (inter.encode_video_after, inter.encode_video, inter._read_pixels, inter.predict_atlas,
            inter.decode_video)

    def predict(meta, cur, prev, n_tex, height, threads=None, layers=1):
        seen.update(cur=cur, prev=prev)
        seen["preds"] = orig[3](meta, cur, prev, n_tex, height, threads, layers)
        return seen["preds"]

    def dec(data, *a, **k):
        out = orig[4](data, *a, **k)
        if a and a[1] == "yuv420p" and "decoded" not in seen:
            seen["decoded"] = out
        return out

    def after(refs, frames, rspec):
        seen.update(refs=refs, frames=frames, rspec=rspec)
        seen["after"] = orig[0](refs, frames, rspec)
        return seen["after"]

    def enc(frames, spec):
        data = orig[1](frames, spec)
        if spec.pix_fmt.startswith("yuv") and len(frames) > 2:  # the GOF's colour video (hints off)
            seen["gof"] = (frames, spec, data)
        return data

    def pixels(meta, dec, height):
        mask = orig[2](meta, dec, height)
        seen["masks"].append(mask)
        return mask

    (inter.encode_video_after, inter.encode_video, inter._read_pixels, inter.predict_atlas,
     inter.decode_video) = after, enc, pixels, predict, dec
    try:
        codec = get_codec("vpcc")
        cfg = codec.make_config(options)
        codec.encode_group(clouds, cfg, {})
    finally:
        (inter.encode_video_after, inter.encode_video, inter._read_pixels, inter.predict_atlas,
         inter.decode_video) = orig
    seen["cfg"] = cfg
    return seen


def block_mc(seen: dict, step: int = 4, block: int = 16) -> tuple[tuple[np.ndarray, ...], float]:
    """(prediction planes, seconds): frame 1's decoded colour picture moved block by block by MVs
    derived from every ``step``-th row and column of frame 2's near-layer pixels."""
    import time

    from imcodec.vpcc.motion import DecodedFrame, block_hints, correspond

    cur, prev = seen["cur"], seen["prev"]
    ref = seen["decoded"][0]  # frame 1's decoded T0 (Y, U, V)
    t0 = time.perf_counter()
    sel = np.flatnonzero((cur.slot == 0) & (cur.ys % step == 0) & (cur.xs % step == 0))
    sub = DecodedFrame(cur.points[sel], None, cur.ys[sel], cur.xs[sel], cur.slot[sel], cur.plane[sel],
                       cur.width, cur.height)
    idx, dist = correspond(sub, prev, workers=2)
    hints = block_hints(sub, prev, idx, dist, block)
    planes = []
    for i, plane in enumerate(ref):
        s = 1 if i == 0 else 2
        b = block // s
        out = plane.copy()  # MV 0 where no block vector
        h, w = plane.shape
        for x, y, dx, dy, _, _ in hints:
            x, y = int(x) // s, int(y) // s
            if y >= h or x >= w:
                continue
            sy = int(np.clip(y + int(dy) // s, 0, h - b))
            sx = int(np.clip(x + int(dx) // s, 0, w - b))
            hh, ww = min(b, h - y), min(b, w - x)
            out[y:y + hh, x:x + ww] = plane[sy:sy + hh, sx:sx + ww]
        planes.append(out)
    return tuple(planes), time.perf_counter() - t0


def residual(frames, preds, mask, cfg) -> tuple[int, float]:
    """Bytes and Y PSNR of coding ``frames`` minus their layer's prediction (``preds``: T0's, or T0's
    and T1's) as their own video at the colour QP."""
    chroma = mask.reshape(mask.shape[0] // 2, 2, mask.shape[1] // 2, 2).any(axis=(1, 3))
    res = []
    for k, f in enumerate(frames):
        pred = preds[min(k, len(preds) - 1)]
        res.append(tuple(np.where(mask if i == 0 else chroma,
                                  np.clip(a.astype(np.int32) - p.astype(np.int32) + 128, 0, 255), 128).astype(np.uint8)
                         for i, (a, p) in enumerate(zip(f, pred))))
    spec = VideoSpec(codec="hevc", pix_fmt="yuv420p", qp=cfg.attribute_qp, intra=False, preset=cfg.preset, threads=2)
    data = encode_video(res, spec)
    h, w = frames[0][0].shape
    dec = decode_video(data, "hevc", "yuv420p", w, h, len(res), 2)
    y = np.clip(dec[0][0].astype(np.int32) - 128 + preds[0][0].astype(np.int32), 0, 255)
    return len(data), y_psnr(y, frames[0][0], mask)


DESIGNS = ("reference", "reference_predictions_only", "reference_t0_only", "residual", "block_mc_reference",
           "block_mc_residual")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="r1,r2,r3,r4,r5")
    args = ap.parse_args()
    require_data()
    clouds = [read_ply(p) for p in BASKETBALL]
    rows: dict = {}
    for rate in args.rates.split(","):
        off = capture(clouds, {"gof": 32, "motion_hints": False, "rate": rate, "threads": 2})
        frames, _, data = off["gof"]
        n_tex = len(frames) // 2
        h, w = frames[0][0].shape
        out = decode_video(data, "hevc", "yuv420p", w, h, len(frames), 2)
        sizes = picture_bytes(data)
        first = (sum(sizes[:n_tex]), y_psnr(out[0][0], frames[0][0], off["masks"][0]))
        gof = (sum(sizes[n_tex:]), y_psnr(out[n_tex][0], frames[n_tex][0], off["masks"][1]))
        on = capture(clouds, {"gof": 32, "motion_hints": True, "rate": rate, "threads": 2})
        mask, preds, cur, rspec = on["masks"][1], on["preds"], on["frames"], on["rspec"]

        def coded(refs, frames_=cur):
            data_ = inter.encode_video_after(refs, frames_, rspec)
            out_ = inter.decode_video_after(refs, data_, rspec, w, h, len(frames_))
            return len(data_), y_psnr(out_[0][0], frames_[0][0], mask)

        outr = inter.decode_video_after(on["refs"], on["after"], rspec, w, h, len(cur))
        ref = (len(on["after"]), y_psnr(outr[0][0], cur[0][0], mask))
        # T0's prediction only (the design before MODE_REF_LAYERS): T1's unread blocks repeat it too
        t0_frames = [cur[0]] + [fill_from_previous(preds[0], f, mask) for f in cur[1:]]
        ref_t0 = coded(preds[:1], t0_frames)
        preds_only = coded(list(preds))
        resid = residual(cur, preds, mask, on["cfg"])
        mc, mc_s = block_mc(on)
        mc_frames = [fill_from_previous(mc, f, mask) for f in cur]
        mc_ref = coded([mc], mc_frames)
        mc_res = residual(mc_frames, [mc], mask, on["cfg"])
        rows[rate] = {"frame1": first, "gof": gof, "reference": ref, "reference_predictions_only": preds_only,
                      "reference_t0_only": ref_t0, "residual": resid, "block_mc_reference": mc_ref,
                      "block_mc_residual": mc_res, "block_mc_s": round(mc_s, 3),
                      "prediction_y_psnr": y_psnr(preds[0][0], cur[0][0], mask),
                      "block_mc_prediction_y_psnr": y_psnr(mc[0], cur[0][0], mask)}
        print(f"{rate}: gof P-frame {gof[0]} B Y {gof[1]:.3f} | reference {ref[0]} B Y {ref[1]:.3f} | "
              f"predictions only {preds_only[0]} B Y {preds_only[1]:.3f} | T0 only {ref_t0[0]} B Y {ref_t0[1]:.3f} | "
              f"residual {resid[0]} B Y {resid[1]:.3f} | block MC ({mc_s:.3f} s; prediction "
              f"{rows[rate]['block_mc_prediction_y_psnr']:.2f} dB vs {rows[rate]['prediction_y_psnr']:.2f}): "
              f"reference {mc_ref[0]} B Y {mc_ref[1]:.3f}, residual {mc_res[0]} B Y {mc_res[1]:.3f}", flush=True)
    result = {"sequence": "basketball 1-2, frame 2 colour", "rows": rows}
    if len(rows) >= 4:
        r = list(rows.values())
        for k in DESIGNS:
            result[f"{k}_y_bdrate_vs_gof_percent"] = bd_rate(
                [x["gof"][0] for x in r], [x["gof"][1] for x in r],
                [x[k][0] for x in r], [x[k][1] for x in r], method="pchip")
            # the whole sequence: frame 1's colour (the same I-frame in every design) plus frame 2's
            result[f"{k}_y_bdrate_sequence_percent"] = bd_rate(
                [x["frame1"][0] + x["gof"][0] for x in r], [(x["frame1"][1] + x["gof"][1]) / 2 for x in r],
                [x["frame1"][0] + x[k][0] for x in r], [(x["frame1"][1] + x[k][1]) / 2 for x in r],
                method="pchip")
        print({k: round(v, 2) for k, v in result.items() if k.endswith("percent")})
    write_result("vpcc_hint_designs", result)


if __name__ == "__main__":
    main()

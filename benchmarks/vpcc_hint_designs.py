"""Two ways to use the 3D-motion colour prediction of V-PCC inter frames, on basketball frame 2.

    python benchmarks/vpcc_hint_designs.py [--rates r1,r2,r3,r4,r5]
                                           # writes benchmarks/results/vpcc_hint_designs.json

An experiment behind issue #8's decode-time target, not a shipped mode. Basketball 1-2 is coded as one
GOF at each rate, once with motion hints off and once on; the colour pictures of frame 2 are taken from
inside the encoder (its functions wrapped, nothing changed) and compared in the image domain, on the
pixels the decoder reads (Y PSNR against the uncompressed atlas):

- ``gof``: hints off, frame 2 a P-frame of the GOF's colour video (bytes split per picture);
- ``reference``: the shipped design, the prediction as a synthesised reference picture that both
  sides code with x265 (the decoder has to code it again: about 0.31 s per frame);
- ``residual``: frame 2 minus the prediction (+128, 0 outside the read pixels) coded as its own
  x265 video at the same QP, added back to the prediction after decoding. Its decoder skips the
  re-encode but still has to compute the prediction.
- ``block_mc_reference`` / ``block_mc_residual``: the same two designs with a cheap prediction: 16x16
  blocks of frame 1's decoded colour picture moved by block motion vectors (:func:`imcodec.vpcc.motion.block_hints`,
  the median MV of the block's matches) derived from one near-layer pixel in 16 (every 4th row and
  column) matched to frame 1's decoded points; blocks without a vector keep MV 0. ``block_mc_s`` is the
  time of that prediction (matching, vectors, block copies).

Reports bytes and Y PSNR per rate and the pchip BD-rates of ``reference`` and ``residual`` against
``gof``.
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
from imcodec.vpcc.video import VideoSpec, decode_video, encode_video  # noqa: E402


def y_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = a.astype(np.float64)[mask] - b.astype(np.float64)[mask]
    return float(10.0 * np.log10(255.0 ** 2 / np.mean(d * d)))


def capture(clouds, options: dict) -> dict:
    """Encode a GOF with the inter module's video and mask functions wrapped to record their inputs."""
    seen: dict = {"masks": []}
    orig = (inter.encode_video_after, inter.encode_video, inter._read_pixels, inter.predict_atlas,
            inter.decode_video)

    def predict(meta, cur, prev, n_tex, height, threads=None):
        seen.update(cur=cur, prev=prev)
        return orig[3](meta, cur, prev, n_tex, height, threads)

    def dec(data, *a, **k):
        out = orig[4](data, *a, **k)
        if a and a[1] == "yuv420p" and "decoded" not in seen:
            seen["decoded"] = out
        return out

    def after(pred, frames, rspec):
        seen.update(pred=pred, frames=frames, rspec=rspec)
        seen["after"] = orig[0](pred, frames, rspec)
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


def residual(frames, pred, mask, cfg) -> tuple[int, float]:
    """Bytes and Y PSNR of coding ``frames`` minus ``pred`` as their own video at the colour QP."""
    chroma = mask.reshape(mask.shape[0] // 2, 2, mask.shape[1] // 2, 2).any(axis=(1, 3))
    res = []
    for f in frames:
        res.append(tuple(np.where(mask if i == 0 else chroma,
                                  np.clip(a.astype(np.int32) - p.astype(np.int32) + 128, 0, 255), 128).astype(np.uint8)
                         for i, (a, p) in enumerate(zip(f, pred))))
    spec = VideoSpec(codec="hevc", pix_fmt="yuv420p", qp=cfg.attribute_qp, intra=False, preset=cfg.preset, threads=2)
    data = encode_video(res, spec)
    h, w = frames[0][0].shape
    dec = decode_video(data, "hevc", "yuv420p", w, h, len(res), 2)
    y = np.clip(dec[0][0].astype(np.int32) - 128 + pred[0].astype(np.int32), 0, 255)
    return len(data), y_psnr(y, frames[0][0], mask)


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
        gof = (sum(picture_bytes(data)[n_tex:]), y_psnr(out[n_tex][0], frames[n_tex][0], off["masks"][1]))
        on = capture(clouds, {"gof": 32, "motion_hints": True, "rate": rate, "threads": 2})
        mask = on["masks"][1]
        outr = inter.decode_video_after(on["pred"], on["after"], on["rspec"], w, h, len(on["frames"]))
        ref = (len(on["after"]), y_psnr(outr[0][0], on["frames"][0][0], mask))
        resid = residual(on["frames"], on["pred"], mask, on["cfg"])
        mc, mc_s = block_mc(on)
        mc_data = inter.encode_video_after(mc, on["frames"], on["rspec"])
        mc_out = inter.decode_video_after(mc, mc_data, on["rspec"], w, h, len(on["frames"]))
        mc_ref = (len(mc_data), y_psnr(mc_out[0][0], on["frames"][0][0], mask))
        mc_res = residual(on["frames"], mc, mask, on["cfg"])
        rows[rate] = {"gof": gof, "reference": ref, "residual": resid, "block_mc_reference": mc_ref,
                      "block_mc_residual": mc_res, "block_mc_s": round(mc_s, 3),
                      "prediction_y_psnr": y_psnr(on["pred"][0], on["frames"][0][0], mask),
                      "block_mc_prediction_y_psnr": y_psnr(mc[0], on["frames"][0][0], mask)}
        print(f"{rate}: gof P-frame {gof[0]} B Y {gof[1]:.3f} | reference {ref[0]} B Y {ref[1]:.3f} | "
              f"residual {resid[0]} B Y {resid[1]:.3f} | block MC ({mc_s:.3f} s; prediction "
              f"{rows[rate]['block_mc_prediction_y_psnr']:.2f} dB vs {rows[rate]['prediction_y_psnr']:.2f}): "
              f"reference {mc_ref[0]} B Y {mc_ref[1]:.3f}, residual {mc_res[0]} B Y {mc_res[1]:.3f}", flush=True)
    result = {"sequence": "basketball 1-2, frame 2 colour", "rows": rows}
    if len(rows) >= 4:
        for k in ("reference", "residual", "block_mc_reference", "block_mc_residual"):
            result[f"{k}_y_bdrate_vs_gof_percent"] = bd_rate(
                [r["gof"][0] for r in rows.values()], [r["gof"][1] for r in rows.values()],
                [r[k][0] for r in rows.values()], [r[k][1] for r in rows.values()], method="pchip")
        print({k: v for k, v in result.items() if k.endswith("percent")})
    write_result("vpcc_hint_designs", result)


if __name__ == "__main__":
    main()

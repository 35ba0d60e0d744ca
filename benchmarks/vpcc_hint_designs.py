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
    orig = (inter.encode_video_after, inter.encode_video, inter._read_pixels)

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

    inter.encode_video_after, inter.encode_video, inter._read_pixels = after, enc, pixels
    try:
        codec = get_codec("vpcc")
        cfg = codec.make_config(options)
        codec.encode_group(clouds, cfg, {})
    finally:
        inter.encode_video_after, inter.encode_video, inter._read_pixels = orig
    seen["cfg"] = cfg
    return seen


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
        rows[rate] = {"gof": gof, "reference": ref, "residual": resid}
        print(f"{rate}: gof P-frame {gof[0]} B Y {gof[1]:.3f} | reference {ref[0]} B Y {ref[1]:.3f} | "
              f"residual {resid[0]} B Y {resid[1]:.3f}", flush=True)
    result = {"sequence": "basketball 1-2, frame 2 colour", "rows": rows}
    if len(rows) >= 4:
        for k in ("reference", "residual"):
            result[f"{k}_y_bdrate_vs_gof_percent"] = bd_rate(
                [r["gof"][0] for r in rows.values()], [r["gof"][1] for r in rows.values()],
                [r[k][0] for r in rows.values()], [r[k][1] for r in rows.values()], method="pchip")
        print({k: v for k, v in result.items() if k.endswith("percent")})
    write_result("vpcc_hint_designs", result)


if __name__ == "__main__":
    main()

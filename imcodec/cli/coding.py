"""Commands that code: encode, decode, motion."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from imcodec.cli._app import FramesCount, FramesStart, JsonOpt, _print_json, _print_table, _with_progress, app

# ---------------------------------------------------------------------------------- encode/decode

class RateOpt(str, Enum):
    r1 = "r1"
    r2 = "r2"
    r3 = "r3"
    r4 = "r4"
    r5 = "r5"


class OnOff(str, Enum):
    on = "on"
    off = "off"


class HintRefs(str, Enum):
    all = "all"
    predicted = "predicted"
    t0 = "t0"


@app.command()
def encode(
    src: Annotated[str, typer.Argument(help="Input PLY, or a sequence (directory, glob, %04d pattern); all frames go into one stream.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .imc stream.")],
    codec: Annotated[str, typer.Option("--codec", help="Codec: octree or vpcc.")] = "octree",
    lossless: Annotated[bool, typer.Option("--lossless", help="Lossless geometry (octree: exact integer positions, duplicates kept; the default).")] = False,
    scale: Annotated[Optional[float], typer.Option("--scale", help="Octree: positionQuantizationScale for lossy geometry (e.g. 0.5).")] = None,
    attr_qp: Annotated[Optional[int], typer.Option("--attr-qp", help="Octree: colour QP 4..51 (step 2^((QP-4)/6)).")] = None,
    lossless_color: Annotated[bool, typer.Option("--lossless-color", help="Octree: lossless colour.")] = False,
    bits: Annotated[Optional[int], typer.Option("--bits", help="Octree: declared input bit depth (coordinates must be < 2^bits).")] = None,
    rate: Annotated[Optional[RateOpt], typer.Option("--rate", help="V-PCC: CTC rate point.")] = None,
    geometry_qp: Annotated[Optional[int], typer.Option("--geometry-qp", help="V-PCC: geometry video QP.")] = None,
    attribute_qp: Annotated[Optional[int], typer.Option("--attribute-qp", help="V-PCC: attribute video QP.")] = None,
    keep_intermediate: Annotated[Optional[Path], typer.Option("--keep-intermediate", help="V-PCC: keep the intermediate images/videos in this directory.")] = None,
    gof: Annotated[Optional[int], typer.Option("--gof", help="Frames per group, 1 = all intra (V-PCC default 32; octree default 8: later frames' geometry coded against the previous frame).")] = None,
    motion_hints: Annotated[Optional[OnOff], typer.Option("--motion-hints", help="V-PCC: code colour against the 3D motion-compensated prediction (default on).")] = None,
    hint_refs: Annotated[Optional[HintRefs], typer.Option("--hint-refs", help="V-PCC with motion hints: the references of a later frame's colour video: all (default: predicted T0/T1 and the previous frame's T0/T1; fewest bits), predicted (T0/T1) or t0 (fastest decoding).")] = None,
    restore_hint: Annotated[bool, typer.Option("--restore-hint", help="V-PCC: send each frame's best keep ratios for decode --restore, plain and after --denoise-depth (4 bytes; runs the restore network twice at the encoder, 45-60 s per 800k-point frame).")] = False,
    restore_weights: Annotated[Optional[Path], typer.Option("--restore-weights", help="Artifact-removal weights for --restore-hint (default: the shipped ones).")] = None,
    start: FramesStart = None,
    count: FramesCount = None,
    json_out: JsonOpt = False,
) -> None:
    """Encode a point cloud or a whole sequence into one .imc stream."""
    from imcodec import api

    options = {"lossless": lossless or None, "scale": scale, "attr_qp": attr_qp,
               "lossless_color": lossless_color or None, "bit_depth": bits,
               "rate": rate.value if rate is not None else None, "geometry_qp": geometry_qp,
               "attribute_qp": attribute_qp, "keep_intermediate": keep_intermediate, "gof": gof,
               "motion_hints": motion_hints.value if motion_hints is not None else None,
               "hint_refs": hint_refs.value if hint_refs is not None else None}
    result = _with_progress("encoding frames", lambda update:
        api.encode(src, output, codec=codec, options=options, start=start, count=count, progress=update,
                   restore_hint=restore_hint, restore_weights=restore_weights))
    if json_out:
        _print_json(result)
        return
    _print_table(f"encoded {result['frames']} frame(s) -> {output}",
                 [(k, v) for k, v in result.items() if not isinstance(v, (list, dict))]
                 + [(f"bytes {k}", v) for k, v in result["components"].items()])


@app.command()
def decode(
    stream: Annotated[Path, typer.Argument(help="Input .imc stream.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output PLY (one frame) or directory (several frames).")],
    frames: Annotated[Optional[str], typer.Option("--frames", help="Frame numbers A:B (A <= n < B), A: , :B or A.")] = None,
    denoise_depth: Annotated[bool, typer.Option("--denoise-depth", help="V-PCC: filter the decoded depth images with the learned denoiser.")] = False,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Depth-denoiser weights: a file, or the shipped 'lut' (default) or 'cnn'.")] = None,
    restore: Annotated[bool, typer.Option("--restore", help="Run learned geometry artifact removal on each decoded frame.")] = False,
    restore_weights: Annotated[Optional[Path], typer.Option("--restore-weights", help="Artifact-removal weights (default: the shipped ones).")] = None,
    restore_rate: Annotated[Optional[str], typer.Option("--restore-rate", help="Rate (r1..r5) whose shipped model (r1, r2: their own; else the all-rate one), keep count and support weights --restore uses; default: the V-PCC stream's own (from its geometry QP), else the all-rate ones.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Decode an .imc stream to PLY (a directory of PLYs for several frames)."""
    from imcodec import api

    result = _with_progress("decoding frames", lambda update:
        api.decode(stream, output, frames=frames, progress=update, denoise_depth=denoise_depth,
                   weights=weights, restore=restore, restore_weights=restore_weights, restore_rate=restore_rate))
    if json_out:
        _print_json(result)
        return
    _print_table(f"decoded {stream}", [(k, v) for k, v in result.items() if not isinstance(v, (list, dict))])


@app.command()
def motion(
    src: Annotated[str, typer.Argument(help="Input sequence (directory, glob, %04d pattern), at least two frames.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for hints_NNNN.csv / .png.")],
    rate: Annotated[Optional[RateOpt], typer.Option("--rate", help="V-PCC rate point whose decoded geometry the hints come from.")] = None,
    gof: Annotated[Optional[int], typer.Option("--gof", help="V-PCC group-of-frames size.")] = None,
    block: Annotated[int, typer.Option("--block", help="Block size of the hints, pixels.")] = 16,
    start: FramesStart = None,
    count: FramesCount = None,
    json_out: JsonOpt = False,
) -> None:
    """Write per-frame 3D-motion hints (block, MV, confidence) of a V-PCC-coded sequence and PNGs of the MV field."""
    from imcodec import api

    options = {"rate": rate.value if rate is not None else None, "gof": gof}
    result = _with_progress("coding frames", lambda update:
        api.motion(src, out, options=options, block=block, start=start, count=count, progress=update))
    if json_out:
        _print_json(result)
        return
    _print_table(f"motion hints -> {out}", [(f"frame {r['frame']}", f"{r['blocks']} blocks, mean confidence "
                                            f"{r['mean_confidence'] if r['mean_confidence'] is None else round(r['mean_confidence'], 3)}")
                                           for r in result["frames"]])

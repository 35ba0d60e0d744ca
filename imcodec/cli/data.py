"""Commands on point clouds and measurements: info, convert, metrics, bdrate, synth, render."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from imcodec.cli._app import (
    BdMethodOpt,
    FramesCount,
    FramesStart,
    JsonOpt,
    MotionOpt,
    PlyFormatOpt,
    ShapeOpt,
    _emit,
    _info,
    _print_json,
    _print_table,
    app,
)

@app.command()
def info(
    file: Annotated[str, typer.Argument(help="A PLY file (or a sequence: directory, glob, %04d pattern) or an .imc stream.")],
    start: FramesStart = None,
    count: FramesCount = None,
    json_out: JsonOpt = False,
) -> None:
    """Describe a point cloud (points, bounding box, bit depth, attributes, duplicates) or a stream."""
    from imcodec import api

    result = api.info(file, start=start, count=count)
    if json_out:
        _print_json(result)
        return
    if "frames" in result and isinstance(result["frames"], list) and result.get("kind") == "sequence":
        for fr in result["frames"]:
            _print_table(str(fr["path"]), list(fr.items()))
    else:
        # scalars and plain lists in one table; dicts left out; each dict of a list (a stream's frames) in its own
        rows = [(k, v) for k, v in result.items() if not isinstance(v, dict)
                and not (isinstance(v, list) and any(isinstance(x, dict) for x in v))]
        _print_table(str(file), rows)
        for k, v in result.items():
            for i, item in enumerate(v if isinstance(v, list) else []):
                if isinstance(item, dict):
                    _print_table(f"{k}[{i}]", list(item.items()))


@app.command()
def convert(
    src: Annotated[str, typer.Argument(help="Input PLY, or a sequence (directory, glob, %04d pattern).")],
    dst: Annotated[Path, typer.Argument(help="Output PLY, or an output directory for a sequence.")],
    fmt: Annotated[Optional[PlyFormatOpt], typer.Option("--format", "-f", help="Body encoding of the output [default: binary].")] = None,
    ascii_: Annotated[bool, typer.Option("--ascii", help="Shorthand for --format ascii.")] = False,
    point_type: Annotated[Optional[str], typer.Option("--point-type", help="On-disk type of x/y/z (float32, float64, int32, uint16, ...); default: as read.")] = None,
    round_: Annotated[bool, typer.Option("--round", help="With an integer --point-type: round non-integer coordinates to the nearest integer (refused otherwise).")] = False,
    start: FramesStart = None,
    count: FramesCount = None,
) -> None:
    """Re-encode PLY files (ascii <-> binary, coordinate type), keeping every vertex property."""
    from imcodec import api

    from imcodec.errors import UsageError

    if ascii_ and fmt not in (None, PlyFormatOpt.ascii):
        raise UsageError(f"--ascii and --format {fmt.value} exclude each other")
    body = "ascii" if ascii_ else (fmt or PlyFormatOpt.binary).value
    written = api.convert(src, dst, fmt=body, point_type=point_type, round_coords=round_,
                          start=start, count=count)
    for p in written:
        _info(f"wrote {p}")


@app.command()
def metrics(
    a: Annotated[Path, typer.Argument(help="Reference (original) cloud A.")],
    b: Annotated[Path, typer.Argument(help="Test (decoded) cloud B.")],
    peak: Annotated[Optional[float], typer.Option("--peak", help="PSNR peak (e.g. 1023 for 10-bit).")] = None,
    bits: Annotated[Optional[int], typer.Option("--bits", help="Bit depth; peak = 2^bits - 1.")] = None,
    normals: Annotated[Optional[Path], typer.Option("--normals", help="PLY with nx/ny/nz of A (as pc_error -n).")] = None,
    color: Annotated[bool, typer.Option("--color", help="Also compute Y/Cb/Cr PSNR (BT.709).")] = False,
    hausdorff: Annotated[bool, typer.Option("--hausdorff", help="Also compute Hausdorff distances.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """D1/D2 (and colour) PSNR between two clouds, with MPEG pc_error 0.14 conventions."""
    from imcodec import api

    result = api.metrics(a, b, peak=peak, bits=bits, normals=normals, color=color, hausdorff=hausdorff)
    for note in result.pop("notes", []):
        _info(f"note: {note}")
    if json_out:
        _print_json(result)
        return
    rows = [(k, v) for k, v in result.items() if not isinstance(v, (dict, list))]
    _print_table(f"{a.name} vs {b.name} (symmetric)", rows)
    for key in ("a_to_b", "b_to_a"):
        _print_table(key.replace("_", " "), [(k, v) for k, v in result[key].items() if not isinstance(v, (dict, list))])


@app.command()
def bdrate(
    anchor: Annotated[Path, typer.Argument(help="Anchor RD table (CSV or JSON).")],
    test: Annotated[Path, typer.Argument(help="Test RD table (CSV or JSON).")],
    metric: Annotated[str, typer.Option("--metric", help="Quality column.")] = "d1_psnr",
    rate: Annotated[str, typer.Option("--rate", help="Rate column.")] = "bpp",
    method: Annotated[BdMethodOpt, typer.Option("--method", help="pchip (CTC) or cubic (VCEG-M33).")] = BdMethodOpt.pchip,
    json_out: JsonOpt = False,
) -> None:
    """Bjontegaard delta rate (%) and delta PSNR (dB) of TEST against ANCHOR."""
    from imcodec import api

    result = api.bdrate(anchor, test, metric=metric, rate=rate, method=method.value)
    _emit(result, f"BD {metric} vs {rate} ({method.value})", json_out)


@app.command()
def synth(
    output: Annotated[str, typer.Option("--output", "-o", help="Output PLY, or a directory / %04d pattern for --frames > 1.")],
    shape: Annotated[ShapeOpt, typer.Option("--shape", help="Surface to voxelise.")] = ShapeOpt.sphere,
    bits: Annotated[int, typer.Option("--bits", help="Voxel grid bit depth (grid 0..2^bits-1).")] = 10,
    frames: Annotated[int, typer.Option("--frames", help="Number of frames (a moving sequence when > 1).")] = 1,
    motion: Annotated[MotionOpt, typer.Option("--motion", help="Motion of a sequence.")] = MotionOpt.rigid,
    color: Annotated[bool, typer.Option("--color", help="Add a smooth RGB texture.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (output is deterministic).")] = 0,
) -> None:
    """Write seeded, voxelised, closed synthetic surfaces (and moving sequences)."""
    from imcodec import api

    written = api.synth(output, shape=shape.value, bits=bits, frames=frames, motion=motion.value,
                        color=color, seed=seed)
    for p in written:
        _info(f"wrote {p}")


class ViewOpt(str, Enum):
    front = "front"
    back = "back"
    left = "left"
    right = "right"
    top = "top"


@app.command()
def render(
    inputs: Annotated[list[Path], typer.Argument(help="One PLY, or several to show side by side.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output PNG.")],
    view: Annotated[ViewOpt, typer.Option("--view", help="Viewing direction (y is up).")] = ViewOpt.front,
    size: Annotated[int, typer.Option("--size", help="Panel edge in pixels.")] = 1024,
    label: Annotated[Optional[list[str]], typer.Option("--label", help="Panel label, once per input (default: file names when several).")] = None,
    point_size: Annotated[Optional[int], typer.Option("--point-size", help="Splat edge in pixels (default: the point spacing).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Render point clouds to a PNG: orthographic z-buffered splats; several inputs side by side with labels."""
    from imcodec import api

    result = api.render(inputs, output, view=view.value, size=size, labels=label, point_size=point_size)
    if json_out:
        _print_json(result)
        return
    _info(f"wrote {result['output']} ({result['width']}x{result['height']}, {result['seconds']} s)")


# ------------------------------------------------------------------------------------- entry point

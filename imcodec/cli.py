"""The ``imcodec`` command line: Typer commands that parse flags, call :mod:`imcodec.api`, print.

Only this module turns :class:`imcodec.errors.ImcodecError` into exit codes (1 bad data, 2 bad usage)
and one-line messages; ``--debug`` shows the traceback instead. Heavy libraries are imported inside
the commands so that ``imcodec --help`` stays fast.
"""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from imcodec import __version__

app = typer.Typer(
    name="imcodec",
    help="Point cloud compression: octree and video-based codecs, learned tools, pc_error-grade metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state = {"quiet": False, "debug": False}


class PlyFormatOpt(str, Enum):
    binary = "binary"
    binary_big_endian = "binary_big_endian"
    ascii = "ascii"


class ShapeOpt(str, Enum):
    sphere = "sphere"
    torus = "torus"
    box = "box"
    body = "body"


class MotionOpt(str, Enum):
    rigid = "rigid"
    wave = "wave"


class BdMethodOpt(str, Enum):
    pchip = "pchip"
    cubic = "cubic"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imcodec {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """imcodec: point cloud compression toolkit."""
    _state["quiet"] = quiet
    _state["debug"] = debug


# ----------------------------------------------------------------------------------------- output

def _jsonable(obj: Any) -> Any:
    """Floats that JSON cannot hold become strings: inf -> "inf", nan -> null."""
    if isinstance(obj, float):
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        if math.isnan(obj):
            return None
        return obj
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(_jsonable(obj), indent=2))


def _info(msg: str) -> None:
    """A progress/info line on stderr, silenced by --quiet."""
    if not _state["quiet"]:
        typer.echo(msg, err=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.6g}" if abs(v) < 1e-3 or abs(v) >= 1e6 else f"{v:.4f}"
    return str(v)


def _print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, _fmt(v))
    Console().print(table)


# --------------------------------------------------------------------------------------- commands

FramesStart = Annotated[Optional[int], typer.Option("--start", help="First frame number of a sequence.")]
FramesCount = Annotated[Optional[int], typer.Option("--count", help="Number of frames of a sequence.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


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
        _print_table(str(file), [(k, v) for k, v in result.items() if not isinstance(v, (list, dict))])
        for k, v in result.items():
            if isinstance(v, list):
                for i, item in enumerate(v):
                    if isinstance(item, dict):
                        _print_table(f"{k}[{i}]", list(item.items()))


@app.command()
def convert(
    src: Annotated[str, typer.Argument(help="Input PLY, or a sequence (directory, glob, %04d pattern).")],
    dst: Annotated[Path, typer.Argument(help="Output PLY, or an output directory for a sequence.")],
    fmt: Annotated[PlyFormatOpt, typer.Option("--format", "-f", help="Body encoding of the output.")] = PlyFormatOpt.binary,
    ascii_: Annotated[bool, typer.Option("--ascii", help="Shorthand for --format ascii.")] = False,
    point_type: Annotated[Optional[str], typer.Option("--point-type", help="On-disk type of x/y/z (float32, float64, int32, uint16, ...); default: as read.")] = None,
    start: FramesStart = None,
    count: FramesCount = None,
) -> None:
    """Re-encode PLY files (ascii <-> binary, coordinate type), keeping every vertex property."""
    from imcodec import api

    written = api.convert(src, dst, fmt="ascii" if ascii_ else fmt.value, point_type=point_type,
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
    if json_out:
        _print_json(result)
        return
    _print_table(f"BD {metric} vs {rate} ({method.value})", list(result.items()))


@app.command()
def synth(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output PLY, or a directory / %04d pattern for --frames > 1.")],
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
               "motion_hints": motion_hints.value if motion_hints is not None else None}
    bar, update = _progress_bar("encoding frames")
    try:
        if bar is not None:
            bar.start()
        result = api.encode(src, output, codec=codec, options=options, start=start, count=count, progress=update)
    finally:
        if bar is not None:
            bar.stop()
    if json_out:
        _print_json(result)
        return
    _print_table(f"encoded {result['frames']} frame(s) -> {output}",
                 [(k, v) for k, v in result.items() if not isinstance(v, (list, dict))]
                 + [(f"bytes {k}", v) for k, v in result["components"].items()])


@app.command()
def decode(
    stream: Annotated[Path, typer.Argument(help="Input .imc stream.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output PLY (one frame) or directory (several frames).")],
    frames: Annotated[Optional[str], typer.Option("--frames", help="Frame numbers A:B (A <= n < B), A: , :B or A.")] = None,
    denoise_depth: Annotated[bool, typer.Option("--denoise-depth", help="V-PCC: filter the decoded depth images with the learned denoiser.")] = False,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Depth-denoiser weights (default: the shipped ones).")] = None,
    restore: Annotated[bool, typer.Option("--restore", help="Run learned geometry artifact removal on each decoded frame.")] = False,
    restore_weights: Annotated[Optional[Path], typer.Option("--restore-weights", help="Artifact-removal weights (default: the shipped ones).")] = None,
    restore_rate: Annotated[Optional[str], typer.Option("--restore-rate", help="Rate (r1..r5) the stream was coded at, for --restore.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Decode an .imc stream to PLY (a directory of PLYs for several frames)."""
    from imcodec import api

    bar, update = _progress_bar("decoding frames")
    try:
        if bar is not None:
            bar.start()
        result = api.decode(stream, output, frames=frames, progress=update, denoise_depth=denoise_depth,
                            weights=weights, restore=restore, restore_weights=restore_weights,
                            restore_rate=restore_rate)
    finally:
        if bar is not None:
            bar.stop()
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
    bar, update = _progress_bar("coding frames")
    try:
        if bar is not None:
            bar.start()
        result = api.motion(src, out, options=options, block=block, start=start, count=count, progress=update)
    finally:
        if bar is not None:
            bar.stop()
    if json_out:
        _print_json(result)
        return
    _print_table(f"motion hints -> {out}", [(f"frame {r['frame']}", f"{r['blocks']} blocks, mean confidence "
                                            f"{r['mean_confidence'] if r['mean_confidence'] is None else round(r['mean_confidence'], 3)}")
                                           for r in result["frames"]])


# ------------------------------------------------------------------------------------- upsampling

class EngineOpt(str, Enum):
    torch = "torch"
    minkowski = "minkowski"


def _progress_bar(description: str):
    """A rich progress bar on stderr (None under --quiet): returns (progress, update(done, total))."""
    if _state["quiet"]:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[note]}"), console=Console(stderr=True), transient=True)
    task = bar.add_task(description, total=None, note="")

    def update(done: int, total: int, note: str = "") -> None:
        bar.update(task, completed=done, total=total, note=note)

    return bar, update


@app.command()
def upsample(
    src: Annotated[Path, typer.Argument(help="Input voxelised PLY (integer coordinates).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output PLY.")],
    factor: Annotated[int, typer.Option("--factor", help="Upsampling factor: 2, 4 or 8.")] = 4,
    engine: Annotated[EngineOpt, typer.Option("--engine", help="Sparse-convolution engine.")] = EngineOpt.torch,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Weights file (default: the shipped ones).")] = None,
    chunk: Annotated[int, typer.Option("--chunk", help="Chunk edge in voxels (multiple of 8).")] = 256,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for PyTorch.")] = 2,
    views: Annotated[int, typer.Option("--views", help="Average over 1-4 rotated copies (slower, slightly better).")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Upsample a voxelised cloud with the PU-Dense-style network (factor x points)."""
    from imcodec import api

    bar, update = _progress_bar("upsampling chunks")
    try:
        if bar is not None:
            bar.start()
        result = api.upsample(src, output, factor=factor, engine=engine.value, device=device, weights=weights,
                              chunk=chunk, threads=threads, views=views, progress=update)
    finally:
        if bar is not None:
            bar.stop()
    if json_out:
        _print_json(result)
        return
    _print_table(f"upsample x{factor}", list(result.items()))


train_app = typer.Typer(help="Train the learned tools.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("upsample")
def train_upsample(
    data: Annotated[Optional[list[str]], typer.Option("--data", help="Training clouds: PLY, directory, glob or %04d pattern (repeatable).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Weights file to write.")] = Path("upsample.pt"),
    factor: Annotated[int, typer.Option("--factor", help="Upsampling factor: 2, 4 or 8.")] = 4,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs.")] = 8,
    steps: Annotated[int, typer.Option("--steps-per-epoch", help="Optimiser steps per epoch.")] = 200,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Crops per step.")] = 4,
    crop: Annotated[int, typer.Option("--crop", help="Crop edge in voxels.")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (Adam, cosine decay).")] = 2e-3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    no_synth: Annotated[bool, typer.Option("--no-synth", help="Do not add the synthetic shapes of imcodec synth.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    checkpoint_dir: Annotated[Optional[Path], typer.Option("--checkpoint-dir", help="Write last.pt here after each epoch.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint-dir/last.pt.")] = False,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for PyTorch.")] = 2,
    json_out: JsonOpt = False,
) -> None:
    """Train the upsampling network on crops of real and synthetic clouds; write a weights file."""
    import shlex

    from imcodec import api

    bar, update = _progress_bar(f"training x{factor}")

    def on_step(ev: dict) -> None:
        if "epoch_done" in ev:
            h = ev["epoch_done"]
            _info(f"epoch {h['epoch']}: train loss {h['train_loss']:.4f}, val loss {h['val_loss']:.4f}, "
                  f"top-k precision {h['val_precision']:.3f}, {h['seconds']:.0f} s")
        elif update is not None:
            update(ev["step"], ev["total"], f"epoch {ev['epoch']} loss {ev['loss']:.4f}")

    command = "imcodec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        if bar is not None:
            bar.start()
        result = api.train_upsample(data or [], output, factor=factor, epochs=epochs, steps_per_epoch=steps,
                                    batch_size=batch_size, crop=crop, lr=lr, seed=seed, device=device,
                                    synth_shapes=() if no_synth else ("sphere", "torus", "box", "body"),
                                    checkpoint_dir=checkpoint_dir, resume=resume, threads=threads,
                                    command=command, on_step=on_step)
    finally:
        if bar is not None:
            bar.stop()
    if json_out:
        _print_json(result)
        return
    _print_table(f"train upsample x{factor}", list(result.items()))


def _run_enhance_training(title: str, call) -> dict:
    """Run a V-PCC enhancement training call with a progress bar for pair making and for steps."""
    bar, update = _progress_bar(title)

    def on_pairs(done: int, total: int, note: str) -> None:
        if update is not None:
            update(done, total, f"coding {note}")

    def on_step(ev: dict) -> None:
        if "epoch_done" in ev:
            h = ev["epoch_done"]
            vals = ", ".join(f"{k} {v:.4f}" for k, v in h.items() if k.startswith("val_"))
            _info(f"epoch {h['epoch']}: train loss {h['train_loss']:.4f}, {vals}, {h['seconds']:.0f} s")
        elif "tune" in ev:
            if update is not None:
                update(*ev["tune"])
        elif update is not None:
            update(ev["step"], ev["total"], f"epoch {ev['epoch']} loss {ev['loss']:.4f}")

    try:
        if bar is not None:
            bar.start()
        return call(on_pairs, on_step)
    finally:
        if bar is not None:
            bar.stop()


EnhanceData = Annotated[Optional[list[str]], typer.Option("--data", help="Training frames: PLY, directory, glob or %04d pattern (repeatable); never the held-out frames.")]
EnhanceCache = Annotated[Optional[Path], typer.Option("--cache-dir", help="Keep the coded training pairs here (made once).")]


@train_app.command("denoise-depth")
def train_denoise_depth(
    data: EnhanceData = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Weights file to write.")] = Path("denoise_depth.pt"),
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs (first half near network, second half far).")] = 8,
    steps: Annotated[int, typer.Option("--steps-per-epoch", help="Optimiser steps per epoch.")] = 500,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Crops per step.")] = 8,
    crop: Annotated[int, typer.Option("--crop", help="Crop edge in pixels.")] = 96,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (Adam, cosine decay).")] = 1e-2,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    no_synth: Annotated[bool, typer.Option("--no-synth", help="Do not add synthetic shapes.")] = False,
    cache_dir: EnhanceCache = None,
    checkpoint_dir: Annotated[Optional[Path], typer.Option("--checkpoint-dir", help="Write last.pt here after each epoch.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint-dir/last.pt.")] = False,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for PyTorch.")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Train the V-PCC depth denoiser (near, then far network) on frames coded at r1..r5."""
    import shlex

    from imcodec import api

    command = "imcodec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = _run_enhance_training("training depth denoiser", lambda on_pairs, on_step: api.train_denoise_depth(
        data or [], output, epochs=epochs, steps_per_epoch=steps, batch_size=batch_size, crop=crop, lr=lr,
        seed=seed, synth_shapes=() if no_synth else ("body", "torus"), cache_dir=cache_dir,
        checkpoint_dir=checkpoint_dir, resume=resume, threads=threads, command=command,
        on_pairs=on_pairs, on_step=on_step))
    if json_out:
        _print_json(result)
        return
    _print_table("train denoise-depth", list(result.items()))


@train_app.command("restore")
def train_restore(
    data: EnhanceData = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Weights file to write.")] = Path("restore.pt"),
    rate: Annotated[Optional[list[str]], typer.Option("--rate", help="Rates to train on (repeatable; default r1..r5; one rate makes a per-rate model).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs.")] = 5,
    steps: Annotated[int, typer.Option("--steps-per-epoch", help="Optimiser steps per epoch.")] = 120,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Crops per step.")] = 3,
    crop: Annotated[int, typer.Option("--crop", help="Crop edge in voxels.")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (Adam, cosine decay).")] = 2e-3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    no_synth: Annotated[bool, typer.Option("--no-synth", help="Do not add synthetic shapes.")] = False,
    cache_dir: EnhanceCache = None,
    checkpoint_dir: Annotated[Optional[Path], typer.Option("--checkpoint-dir", help="Write last.pt here after each epoch.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint-dir/last.pt.")] = False,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for PyTorch.")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Train the sparse-conv artifact-removal network on frames V-PCC coded at r1..r5."""
    import shlex

    from imcodec import api

    command = "imcodec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rates = tuple(rate) if rate else ("r1", "r2", "r3", "r4", "r5")
    result = _run_enhance_training("training restore", lambda on_pairs, on_step: api.train_restore(
        data or [], output, epochs=epochs, steps_per_epoch=steps, batch_size=batch_size, crop=crop, lr=lr,
        seed=seed, synth_shapes=() if no_synth else ("body", "torus"), rates=rates, cache_dir=cache_dir,
        checkpoint_dir=checkpoint_dir, resume=resume, threads=threads, command=command,
        on_pairs=on_pairs, on_step=on_step))
    if json_out:
        _print_json(result)
        return
    _print_table("train restore", list(result.items()))


@app.command()
def restore(
    src: Annotated[Path, typer.Argument(help="Decoded voxelised PLY (e.g. V-PCC output).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output PLY.")],
    rate: Annotated[Optional[str], typer.Option("--rate", help="Rate the cloud was coded at (r1..r5); default: a model for all rates.")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Weights file (default: the shipped ones).")] = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for PyTorch.")] = 2,
    json_out: JsonOpt = False,
) -> None:
    """Learned geometry artifact removal on a decoded cloud (sparse-conv voxel classification)."""
    from imcodec import api

    bar, update = _progress_bar("restoring chunks")
    try:
        if bar is not None:
            bar.start()
        result = api.restore(src, output, rate=rate, weights=weights, threads=threads, progress=update)
    finally:
        if bar is not None:
            bar.stop()
    if json_out:
        _print_json(result)
        return
    _print_table("restore", list(result.items()))


# ------------------------------------------------------------------------------- batch evaluation

bench_app = typer.Typer(help="Batch evaluation: dataset runs, BD-rate reports and plots, a regression gate.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("run")
def bench_run(
    config: Annotated[Path, typer.Argument(help="Benchmark config (TOML): sequences, codecs and rate points.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results CSV (default: \\[bench] out of the config, else CONFIG.csv here).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", help="Local worker processes (default: \\[bench] workers, else 1).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://HOST:8786.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Encode, decode and measure every frame x codec x rate point; rows already in the CSV are skipped."""
    from imcodec import api

    bar, update = _progress_bar("bench tasks")
    try:
        if bar is not None:
            bar.start()
        result = api.bench_run(config, out=out, workers=workers, scheduler=scheduler, progress=update)
    finally:
        if bar is not None:
            bar.stop()
    if json_out:
        _print_json(result)
    else:
        _print_table(f"bench run -> {result['output']}",
                     [(k, v) for k, v in result.items() if not isinstance(v, (list, dict))])
    failed = result["failed"]
    if failed:
        first = failed[0]
        typer.echo(f"imcodec: error: {len(failed)} of {result['tasks']} tasks failed (first: {first['sequence']} "
                   f"frame {first['frame']} {first['codec']} {first['rate']}: {_error_line(first['error'])}); "
                   "rerun to retry them", err=True)
        raise typer.Exit(1)


@bench_app.command("report")
def bench_report(
    results: Annotated[Path, typer.Argument(help="Results CSV of bench run.")],
    anchor: Annotated[str, typer.Option("--anchor", help="Anchor codec label.")],
    test: Annotated[str, typer.Option("--test", help="Test codec label.")],
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Folder for the RD plots (default: RESULTS_plots/).")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the RD plots.")] = False,
    method: Annotated[BdMethodOpt, typer.Option("--method", help="pchip (CTC) or cubic (VCEG-M33).")] = BdMethodOpt.pchip,
    json_out: JsonOpt = False,
) -> None:
    """BD-rate of TEST against ANCHOR per sequence and on average (D1/D2/Y/Cb/Cr vs geometry, attribute, total rate)."""
    from imcodec import api

    result = api.bench_report(results, anchor, test, plots=plots, method=method.value, make_plots=not no_plots)
    if json_out:
        _print_json(result)
        return
    from rich.console import Console
    from rich.table import Table

    seqs = list(result["sequences"])
    table = Table(title=f"BD-rate (%) of {test} against {anchor} ({method.value}); negative = fewer bits")
    table.add_column("metric / rate", style="bold")
    for s in seqs:
        table.add_column(s, justify="right")
    table.add_column("average", justify="right", style="bold")

    def cell(v: dict) -> str:
        return "n/a" if v["bd_rate"] is None else f"{v['bd_rate']:+.2f}"

    for pair in result["pairs"]:
        table.add_row(pair, *[cell(result["sequences"][s][pair]) for s in seqs], cell(result["average"][pair]))
    Console().print(table)
    for p in result.get("plots", []):
        _info(f"wrote {p}")


@bench_app.command("check")
def bench_check(
    results: Annotated[Path, typer.Argument(help="Results CSV of bench run.")],
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline JSON (written by --write-baseline).")],
    max_bdrate: Annotated[float, typer.Option("--max-bdrate", help="Largest tolerated BD-rate increase, percent.")] = 1.0,
    max_psnr_drop: Annotated[float, typer.Option("--max-psnr-drop", help="Largest tolerated PSNR drop (dB) where BD-rate cannot be computed.")] = 0.05,
    write_baseline: Annotated[bool, typer.Option("--write-baseline", help="Record RESULTS as the baseline instead of checking.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Regression gate: exit 1 naming the sequences/metrics whose BD-rate against the baseline exceeds the tolerance."""
    from imcodec import api

    result = api.bench_check(results, baseline, max_bdrate=max_bdrate, write_baseline=write_baseline,
                             max_psnr_drop=max_psnr_drop)
    if json_out:
        _print_json(result)
    elif write_baseline:
        _info(f"wrote baseline {baseline} ({result['curves']} curves)")
    else:
        for r in result["regressions"]:
            typer.echo(f"REGRESSION {r['sequence']} {r['codec']} {r['pair']}: {r['reason']}")
        if result["passed"]:
            typer.echo(f"bench check passed: no BD-rate regression above {max_bdrate:g}%")
    if not result["passed"]:
        names = sorted({f"{r['sequence']}/{r['codec']}" for r in result["regressions"]})
        typer.echo(f"imcodec: error: bench check failed: {len(result['regressions'])} regression(s) in "
                   f"{', '.join(names)}", err=True)
        raise typer.Exit(1)


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

def _error_line(msg: str) -> str:
    return " ".join(str(msg).split()) or "error"


def _click_exceptions():
    """The module holding ClickException for the installed Typer (recent Typer vendors click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older Typer uses the click package
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: run the app, map errors to one line and an exit code."""
    from imcodec.errors import ImcodecError

    cx = _click_exceptions()

    args = sys.argv[1:] if argv is None else list(argv)
    _state["debug"] = "--debug" in args[: next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))]
    try:
        rv = app(args=args, prog_name="imcodec", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        typer.echo("imcodec: aborted", err=True)
        code = 130
    except cx.ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None:
            typer.echo(exc.ctx.get_help())
            return 0
        if _state["debug"]:
            raise
        typer.echo(f"imcodec: error: {_error_line(exc.format_message())}", err=True)
        code = exc.exit_code
    except ImcodecError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"imcodec: error: {_error_line(str(exc))}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        typer.echo("imcodec: interrupted", err=True)
        code = 130
    except MemoryError:
        if _state["debug"]:
            raise
        typer.echo("imcodec: error: out of memory", err=True)
        code = 1
    except Exception as exc:  # noqa: BLE001 - last resort: one line, no traceback
        if _state["debug"]:
            raise
        typer.echo(f"imcodec: internal error: {type(exc).__name__}: {_error_line(str(exc))} "
                   "(rerun with --debug for the traceback)", err=True)
        code = 1
    return code


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

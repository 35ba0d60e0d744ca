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
    for note in result.get("notes", []):
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

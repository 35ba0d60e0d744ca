"""The Typer app, global options, shared option types and output helpers of the ``imcodec`` commands."""

from __future__ import annotations

import json
import math
import os
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


def _error_line(msg: str) -> str:
    """A message on one line (whitespace runs folded)."""
    return " ".join(str(msg).split()) or "error"


def _print_json(obj: Any) -> None:
    """One JSON object on stdout (on stderr when the command's output file is stdout itself)."""
    typer.echo(json.dumps(_jsonable(obj), indent=2), err=bool(_state.get("stdout_taken")))


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
    Console(stderr=bool(_state.get("stdout_taken"))).print(table)


# --------------------------------------------------------------------------------------- commands

FramesStart = Annotated[Optional[int], typer.Option("--start", help="First frame number of a sequence.")]
FramesCount = Annotated[Optional[int], typer.Option("--count", help="Number of frames of a sequence.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]



def _progress_bar(description: str):
    """A rich progress bar on stderr (None under --quiet, or when stderr is not a terminal: a log
    file or pipe gets no bar and no stray blank line before an error): returns (progress,
    update(done, total))."""
    if _state["quiet"]:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return None, None
    bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[note]}"), console=console, transient=True)
    task = bar.add_task(description, total=None, note="")

    def update(done: int, total: int, note: str = "") -> None:
        bar.update(task, completed=done, total=total, note=note)

    return bar, update


def _with_progress(description: str, call):
    """``call(update)`` with a progress bar on stderr (update is None under --quiet)."""
    bar, update = _progress_bar(description)
    try:
        if bar is not None:
            bar.start()
        return call(update)
    finally:
        if bar is not None:
            bar.stop()


def _emit(result: dict, title: str, json_out: bool) -> None:
    """Print a command's result: one JSON object with --json, else a two-column table."""
    if json_out:
        _print_json(result)
        return
    _print_table(title, list(result.items()))


OUTPUT_FLAGS = ("-o", "--output", "--out")


def stdout_is_output(args: list[str]) -> bool:
    """Whether an output option in ``args`` names the file or pipe stdout writes to (``-o /dev/stdout``,
    or the file stdout is redirected to): the command's summary then goes to stderr."""
    values = [b for a, b in zip(args, args[1:]) if a in OUTPUT_FLAGS]
    values += [a.split("=", 1)[1] for a in args if a.split("=", 1)[0] in OUTPUT_FLAGS[1:] and "=" in a]
    for value in values:
        try:
            if os.path.samestat(os.stat(value), os.fstat(1)):
                return True
        except (OSError, ValueError):
            continue
    return False

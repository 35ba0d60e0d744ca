"""The ``imcodec`` command line: Typer commands that parse flags, call :mod:`imcodec.api`, print.

Commands live in :mod:`imcodec.cli.data` (info, convert, metrics, bdrate, synth, render),
:mod:`imcodec.cli.coding` (encode, decode, motion), :mod:`imcodec.cli.learned` (upsample, restore,
train) and :mod:`imcodec.cli.bench`; :mod:`imcodec.cli._app` holds the app and shared helpers.
Only this package turns :class:`imcodec.errors.ImcodecError` into exit codes (1 bad data, 2 bad
usage) and one-line messages; ``--debug`` shows the traceback instead. Heavy libraries are imported
inside the commands so that ``imcodec --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from imcodec.cli import bench, coding, data, learned  # noqa: F401 - importing registers the commands
from imcodec.cli._app import _error_line, _state, app, stdout_is_output

__all__ = ["app", "main", "run"]


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
    _state["stdout_taken"] = stdout_is_output(args)
    try:
        rv = app(args=args, prog_name="imcodec", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
        if code == 130:  # Typer turns Ctrl-C into Exit(130), which click returns without a word
            typer.echo("imcodec: interrupted", err=True)
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
    except ImportError as exc:  # an optional dependency that is missing or broken
        if _state["debug"]:
            raise
        missing = getattr(exc, "name", None) or "a module"
        hint = {"torch": " (install PyTorch first: pip install torch==2.13.0, then pip install 'imcodec[learned]')"}
        typer.echo(f"imcodec: error: this command needs {missing}, which cannot be imported"
                   f"{hint.get(str(missing).split('.')[0], '')}: {_error_line(str(exc))}", err=True)
        code = 1
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

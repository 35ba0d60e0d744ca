"""The ``bench`` sub-commands: dataset runs, BD-rate reports and plots, a regression gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from imcodec.cli._app import BdMethodOpt, JsonOpt, _error_line, _info, _print_json, _print_table, _with_progress, app

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

    result = _with_progress("bench tasks", lambda update:
        api.bench_run(config, out=out, workers=workers, scheduler=scheduler, progress=update))
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
    test: Annotated[str, typer.Option("--test", help="Test codec label (not the anchor).")],
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Folder for the RD plots (default: RESULTS_plots/).")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the RD plots (not with --plots).")] = False,
    method: Annotated[BdMethodOpt, typer.Option("--method", help="pchip (CTC) or cubic (VCEG-M33).")] = BdMethodOpt.pchip,
    json_out: JsonOpt = False,
) -> None:
    """BD-rate of TEST against ANCHOR per sequence and on average (D1/D2/Y/Cb/Cr vs geometry, attribute, total rate)."""
    from imcodec import api
    from imcodec.errors import UsageError

    if plots is not None and no_plots:
        raise UsageError(f"--plots {plots} and --no-plots contradict each other; give one")
    if anchor == test:
        raise UsageError(f"--anchor and --test name the same codec {anchor!r}; compare two different codecs")
    result = api.bench_report(results, anchor, test, plots=plots, method=method.value, make_plots=not no_plots)
    if json_out:
        _print_json(result)
        return
    from rich.console import Console
    from rich.table import Table

    seqs = list(result["sequences"])
    table = Table(title=f"BD-rate (%) of {test} against {anchor} ({method.value}); negative = fewer bits")
    table.add_column("metric / rate", style="bold", no_wrap=True)
    for s in seqs:
        table.add_column(s, justify="right", no_wrap=True)
    table.add_column("average", justify="right", style="bold", no_wrap=True)

    def cell(v: dict) -> str:
        return "n/a" if v["bd_rate"] is None else f"{v['bd_rate']:+.2f}"

    for pair in result["pairs"]:
        table.add_row(pair, *[cell(result["sequences"][s][pair]) for s in seqs], cell(result["average"][pair]))
    console = Console()
    if not console.is_terminal:
        # a log file or pipe (CI): the whole table, never squeezed to 80 columns and truncated
        width = Console(width=1 << 20).measure(table).maximum
        console = Console(width=max(80, width))
    console.print(table)
    for p in result.get("plots", []):
        _info(f"wrote {p}")


@bench_app.command("check")
def bench_check(
    results: Annotated[Path, typer.Argument(help="Results CSV of bench run.")],
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline JSON (written by --write-baseline).")],
    max_bdrate: Annotated[Optional[float], typer.Option("--max-bdrate", help="Largest tolerated BD-rate increase, percent (finite, >= 0) \\[default: 1].", show_default=False)] = None,
    max_psnr_drop: Annotated[Optional[float], typer.Option("--max-psnr-drop", help="Largest tolerated PSNR drop (dB; finite, >= 0) where BD-rate cannot be computed \\[default: 0.05].", show_default=False)] = None,
    write_baseline: Annotated[bool, typer.Option("--write-baseline", help="Record RESULTS as the baseline instead of checking (takes no tolerance; an existing baseline needs --force).")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --write-baseline: replace an existing baseline file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Regression gate: exit 1 naming the sequences/metrics whose BD-rate against the baseline exceeds the tolerance,
    or whose rate points or frames are missing from the results."""
    from imcodec import api
    from imcodec.bench.gate import baseline_path_check, check_tolerances
    from imcodec.errors import UsageError

    baseline_path_check(results, baseline)
    if write_baseline:
        given = [f for f, v in (("--max-bdrate", max_bdrate), ("--max-psnr-drop", max_psnr_drop)) if v is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply with "
                             "--write-baseline (it records the results, it checks nothing)")
    max_bdrate = 1.0 if max_bdrate is None else max_bdrate
    max_psnr_drop = 0.05 if max_psnr_drop is None else max_psnr_drop
    check_tolerances(max_bdrate, max_psnr_drop)
    result = api.bench_check(results, baseline, max_bdrate=max_bdrate, write_baseline=write_baseline,
                             max_psnr_drop=max_psnr_drop, force=force)
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

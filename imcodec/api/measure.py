"""Measurement and data: metrics, BD-rate, synthetic clouds, batch evaluation, rendering."""

from __future__ import annotations

import os

from pathlib import Path
from typing import Any

import numpy as np

from imcodec.api._base import PathLike
from imcodec.api.coding import cloud_info
from imcodec.errors import InputError, UsageError
from imcodec.io.ply import read_ply, write_ply


# ---------------------------------------------------------------------------------------- metrics

def resolve_peak(peak: float | None, bits: int | None, default: float | None = None) -> float:
    """PSNR peak from --peak or --bits (peak = 2^bits - 1); exactly one may be given."""
    if peak is not None and bits is not None:
        raise UsageError("give either --peak or --bits, not both")
    if bits is not None:
        if not 1 <= bits <= 30:
            raise UsageError(f"--bits must be in 1..30, got {bits}")
        return float((1 << bits) - 1)
    if peak is not None:
        if not (peak > 0 and np.isfinite(peak)):
            raise UsageError(f"--peak must be a positive number, got {peak}")
        return float(peak)
    if default is None:
        raise UsageError("a PSNR peak is needed: give --peak (e.g. 1023) or --bits (e.g. 10)")
    return float(default)


def metrics(a: PathLike, b: PathLike, peak: float | None = None, bits: int | None = None,
            normals: PathLike | None = None, color: bool = False, hausdorff: bool = False) -> dict[str, Any]:
    """D1/D2/colour PSNR of B against A with pc_error conventions (see imcodec.metrics.psnr).

    Without --peak/--bits the peak is 2^bit_depth - 1 of A's bounding box (and a note says so).
    """
    from imcodec.metrics.psnr import compute_metrics

    cloud_a, cloud_b = read_ply(a), read_ply(b)
    notes = []
    if peak is None and bits is None:
        depth = cloud_info(cloud_a).get("bit_depth") or 10
        peak_v = float((1 << depth) - 1)
        notes.append(f"no --peak/--bits given: using peak {peak_v:g} from A's {depth}-bit extent")
    else:
        peak_v = resolve_peak(peak, bits)
    normals_a = None
    if normals is not None:
        ncloud = read_ply(normals)
        if ncloud.normals is None:
            raise InputError(f"{normals}: PLY has no nx/ny/nz properties")
        if len(ncloud) != len(cloud_a):
            raise InputError(f"{normals}: has {len(ncloud)} points, A has {len(cloud_a)}")
        from imcodec.metrics.normals import align_normals  # matched to A by position, as pc_error does

        normals_a = align_normals(cloud_a.points, ncloud.points, ncloud.normals, str(normals))
    elif cloud_a.normals is not None:
        normals_a = cloud_a.normals
    if color and (cloud_a.colors is None or cloud_b.colors is None):
        which = str(a) if cloud_a.colors is None else str(b)
        raise InputError(f"{which}: --color needs red/green/blue properties in both clouds")
    result = compute_metrics(cloud_a, cloud_b, peak=peak_v, normals_a=normals_a, color=color,
                             hausdorff=hausdorff)
    result["notes"] = notes + result.get("notes", [])
    return result


# ---------------------------------------------------------------------------------------- bd-rate

def bdrate(anchor: PathLike, test: PathLike, metric: str = "d1_psnr", rate: str = "bpp",
           method: str = "pchip") -> dict[str, Any]:
    """BD-rate (%) and BD-PSNR (dB) of the test RD table against the anchor's (CSV or JSON files)."""
    from imcodec.io.tables import read_rd_table
    from imcodec.metrics.bdrate import bd_psnr, bd_rate

    ta, tt = read_rd_table(anchor), read_rd_table(test)
    ra, qa = _columns(ta, anchor, rate, metric)
    rt, qt = _columns(tt, test, rate, metric)
    try:
        bdr, bdp = bd_rate(ra, qa, rt, qt, method=method), bd_psnr(ra, qa, rt, qt, method=method)
    except InputError as exc:  # say which file the curve came from
        raise InputError(f"{anchor} (anchor) vs {test} (test), {metric} over {rate}: {exc}") from None
    return {
        "metric": metric,
        "rate": rate,
        "method": method,
        "bd_rate_percent": bdr,
        "bd_psnr_db": bdp,
        "anchor_points": len(ra),
        "test_points": len(rt),
    }


def _columns(table: dict[str, list], path: PathLike, rate: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    for col in (rate, metric):
        if col not in table:
            raise InputError(f"{path}: no column {col!r} (columns: {', '.join(table) or 'none'})")
    try:
        r = np.asarray(table[rate], dtype=np.float64)
        q = np.asarray([np.inf if str(v).strip().lower() == "inf" else v for v in table[metric]], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: non-numeric value in column {rate!r} or {metric!r}") from None
    return r, q


# ------------------------------------------------------------------------------------------ synth

def synth(output: PathLike, shape: str = "sphere", bits: int = 10, frames: int = 1, motion: str = "rigid",
          color: bool = False, seed: int = 0) -> list[Path]:
    """Write synthetic voxelised surfaces: one PLY, or ``frames`` PLYs into a directory or %d pattern.

    Frames are generated and written one at a time (t = 0, 1, ...), so long sequences need little memory.
    """
    import re

    from imcodec.io.files import ensure_dir
    from imcodec.synth import make_cloud

    if frames < 1:
        raise UsageError(f"--frames must be at least 1, got {frames}")
    out = str(output)
    if "%" in out:
        if out.count("%") != 1 or len(re.findall(r"%0?\d*d", out)) != 1:
            raise UsageError(f"{out!r}: an output pattern needs exactly one %d-style field such as %04d")
        paths = [Path(out % i) for i in range(frames)]
        if str(paths[0].parent):
            ensure_dir(paths[0].parent)
    elif frames == 1 and not Path(out).is_dir() and not out.endswith(("/", os.sep)):
        paths = [Path(out)]
    else:
        paths = [Path(out) / f"{shape}_{i:04d}.ply" for i in range(frames)]
        folder = Path(out)
        if folder.is_dir():
            # frames of an earlier, longer run would join this sequence when the folder is read back
            ours = {p.name for p in paths}
            stale = sorted(p.name for p in folder.glob(f"{shape}_*.ply") if p.name not in ours)
            if stale:
                raise UsageError(f"{folder}: holds other {shape} frames ({', '.join(stale[:3])}"
                                 f"{', ...' if len(stale) > 3 else ''}) that would mix with this sequence; "
                                 f"use an empty folder")
        ensure_dir(folder)
    for i, p in enumerate(paths):
        write_ply(make_cloud(shape, bits, color=color, seed=seed, t=float(i), motion=motion), p)
    return paths



# ------------------------------------------------------------------------------ batch evaluation

def bench_run(config: PathLike, out: PathLike | None = None, workers: int | None = None,
              scheduler: str | None = None, progress=None) -> dict[str, Any]:
    """Run a benchmark TOML config (see :mod:`imcodec.bench.config`): every sequence frame x codec x
    rate point is encoded, decoded and measured into one row of the results CSV ``out``.

    Local processes (``workers``) or a Dask scheduler (``scheduler="tcp://HOST:8786"``); rows already
    in ``out`` are skipped. ``progress(done, total, note)`` is called as tasks finish. Returns a
    summary (tasks, skipped, ran, failed, rows, seconds, ...).
    """
    from imcodec.bench.runner import run

    return run(config, out=out, workers=workers, scheduler=scheduler, progress=progress)


def bench_report(results: PathLike, anchor: str, test: str, plots: PathLike | None = None,
                 method: str = "pchip", make_plots: bool = True) -> dict[str, Any]:
    """BD-rate tables (per sequence and average) of codec ``test`` against ``anchor`` from a results
    CSV, and RD plots (PNG per sequence and metric) in ``plots`` (default: RESULTS_plots/)."""
    from imcodec.bench.report import bd_table, plot_curves, read_results

    rows = read_results(results)
    table = bd_table(rows, anchor, test, method)
    if make_plots:
        folder = Path(plots) if plots is not None else Path(results).with_name(Path(results).stem + "_plots")
        if folder.resolve() == Path(results).resolve():
            raise UsageError(f"--plots {folder}: is the results table itself")
        table["plots"] = [str(p) for p in plot_curves(rows, folder)]
    return table


def bench_check(results: PathLike, baseline: PathLike, max_bdrate: float = 1.0, write_baseline: bool = False,
                max_psnr_drop: float = 0.05, method: str = "pchip", force: bool = False) -> dict[str, Any]:
    """Regression gate: BD-rate of the results' RD curves against a baseline file (``passed`` False
    and ``regressions`` naming sequence, codec and metric beyond ``max_bdrate`` percent), or, with
    ``write_baseline``, record the results as the baseline (UsageError when the baseline exists,
    unless ``force``)."""
    from imcodec.bench import gate
    from imcodec.bench.report import read_results

    gate.baseline_path_check(Path(results), Path(baseline))
    if write_baseline and Path(baseline).exists() and not force:
        raise UsageError(f"--baseline {baseline}: already exists; pass --force to replace it with these results")
    if force and not write_baseline:
        raise UsageError("--force applies only with --write-baseline")
    rows = read_results(results)
    if write_baseline:
        base = gate.write_baseline(baseline, rows, source=str(results))
        n = sum(len(per) for per in base["curves"].values())
        return {"baseline": str(baseline), "written": True, "curves": n, "passed": True, "regressions": []}
    return gate.check(rows, gate.read_baseline(baseline), max_bdrate=max_bdrate, max_psnr_drop=max_psnr_drop,
                      method=method)


def render(inputs: list[PathLike], output: PathLike, view: str = "front", size: int = 1024,
           labels: list[str] | None = None, point_size: int | None = None) -> dict[str, Any]:
    """Render one PLY (or several side by side, labelled, same projection and scale) to a PNG."""
    import time

    from imcodec.io.images import write_png
    from imcodec.render import compose, render_clouds

    if not inputs:
        raise UsageError("render needs at least one PLY file")
    if labels is not None and len(labels) != len(inputs):
        raise UsageError(f"--label given {len(labels)} times for {len(inputs)} inputs")
    out = Path(output)
    for p in inputs:
        if out.resolve() == Path(p).resolve():
            raise UsageError(f"{out}: output would overwrite an input")
    t0 = time.perf_counter()
    clouds = [read_ply(p, allow_empty=True) for p in inputs]
    panels = render_clouds(clouds, view=view, size=size, point_size=point_size)
    if labels is None and len(inputs) > 1:
        labels = [Path(p).name for p in inputs]
    image = compose(panels, labels)
    write_png(out, image)
    return {"output": str(out), "inputs": [str(p) for p in inputs], "points": [len(c) for c in clouds],
            "view": view, "width": int(image.shape[1]), "height": int(image.shape[0]),
            "seconds": round(time.perf_counter() - t0, 3)}

"""The library API: the one place that joins io, codecs and metrics.

Every CLI command is a thin wrapper over one function here, so scripts and notebooks get the same
behaviour. Functions return plain dicts/lists that are JSON-friendly (floats may be inf).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from imcodec.errors import InputError, UsageError
from imcodec.io.ply import read_ply, write_ply
from imcodec.io.sequence import resolve_frames
from imcodec.types import PlyFormat, PointCloud

PathLike = str | os.PathLike


# ------------------------------------------------------------------------------------------- info

def cloud_info(cloud: PointCloud) -> dict[str, Any]:
    """Points, bounding box, inferred bit depth, attributes and duplicate count of a cloud."""
    pts = cloud.points
    n = len(cloud)
    out: dict[str, Any] = {"points": n}
    if n:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        out["bbox_min"] = lo.tolist()
        out["bbox_max"] = hi.tolist()
        integer = bool(np.all(pts == np.rint(pts)))
        out["integer_coordinates"] = integer
        if integer and lo.min() >= 0:
            out["bit_depth"] = int(max(1, int(hi.max()).bit_length()))
        else:
            out["bit_depth"] = None
        out["duplicates"] = count_duplicates(pts)
    else:
        out.update(bbox_min=None, bbox_max=None, integer_coordinates=None, bit_depth=None, duplicates=0)
    attrs = []
    if cloud.colors is not None:
        attrs.append(f"rgb ({cloud.colors.dtype.name})")
    if cloud.normals is not None:
        attrs.append("normals")
    attrs += [f"{k} ({v.dtype.name})" for k, v in cloud.extra.items()]
    out["attributes"] = attrs
    out["coordinate_type"] = cloud.point_dtype
    return out


def count_duplicates(points: np.ndarray) -> int:
    """Number of points that repeat an earlier point exactly: N - number of distinct positions."""
    if len(points) == 0:
        return 0
    uniq = np.unique(np.ascontiguousarray(points, dtype=np.float64).view(np.dtype((np.void, 24))))
    return int(len(points) - len(uniq))


def info(path: PathLike, start: int | None = None, count: int | None = None) -> dict[str, Any]:
    """Describe a PLY file, a PLY sequence, or an .imc stream."""
    text = str(path)
    p = Path(text)
    if p.is_file() and _is_stream(p):
        from imcodec.io.bitstream import read_stream_bytes, stream_info

        return stream_info(read_stream_bytes(p))
    frames = resolve_frames(text, start, count)
    if len(frames) == 1 and start is None and count is None and p.is_file():
        result = cloud_info(read_ply(frames[0].path, allow_empty=True))
        result["path"] = str(frames[0].path)
        return result
    items = []
    for fr in frames:
        d = {"frame": fr.index, "path": str(fr.path)}
        d.update(cloud_info(read_ply(fr.path, allow_empty=True)))
        items.append(d)
    return {"kind": "sequence", "count": len(items), "frames": items}


def _is_stream(path: Path) -> bool:
    from imcodec.io.bitstream import MAGIC

    with open(path, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


# ---------------------------------------------------------------------------------------- convert

def convert(src: PathLike, dst: PathLike, fmt: str = "binary", point_type: str | None = None,
            start: int | None = None, count: int | None = None) -> list[Path]:
    """Re-encode one PLY (dst a file) or a sequence (dst a directory); returns the written paths."""
    try:
        ply_fmt = PlyFormat(fmt)
    except ValueError:
        raise UsageError(f"unknown PLY format {fmt!r}; expected binary, binary_big_endian or ascii") from None
    if point_type is not None:
        allowed = {"float32", "float64", "int8", "int16", "int32", "uint8", "uint16", "uint32"}
        if point_type not in allowed:
            raise UsageError(f"--point-type {point_type!r} is not one of {sorted(allowed)}")
    frames = resolve_frames(src, start, count)
    dst = Path(dst)
    single = len(frames) == 1 and not dst.is_dir() and not str(dst).endswith(os.sep)
    if not single:
        from imcodec.io.files import ensure_dir

        ensure_dir(dst)
    written = []
    for fr in frames:
        out = dst if single else dst / fr.path.name
        if out.resolve() == fr.path.resolve():
            raise UsageError(f"{out}: output would overwrite its input")
        write_ply(read_ply(fr.path, allow_empty=True), out, ply_fmt, point_type)
        written.append(out)
    return written


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
        normals_a = ncloud.normals
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
    """Write synthetic voxelised surfaces: one PLY, or ``frames`` PLYs into a directory or %d pattern."""
    from imcodec.synth import make_sequence

    if frames < 1:
        raise UsageError(f"--frames must be at least 1, got {frames}")
    clouds = make_sequence(shape=shape, bits=bits, frames=frames, motion=motion, color=color, seed=seed)
    out = str(output)
    if frames == 1 and "%" not in out and not Path(out).is_dir():
        write_ply(clouds[0], out)
        return [Path(out)]
    if "%" in out:
        paths = [Path(out % i) for i in range(frames)]
    else:
        from imcodec.io.files import ensure_dir

        ensure_dir(out)
        paths = [Path(out) / f"{shape}_{i:04d}.ply" for i in range(frames)]
    for cloud, p in zip(clouds, paths):
        write_ply(cloud, p)
    return paths

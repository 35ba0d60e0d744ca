"""Files and streams: info, encode, decode (with the decoder-side enhancers), convert, motion hints."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from imcodec.api._base import PathLike, stream_errors
from imcodec.api.learned import _enhancers, restore_hinter
from imcodec.errors import InputError, UsageError
from imcodec.io.ply import read_ply, write_ply
from imcodec.io.sequence import resolve_frames
from imcodec.types import PlyFormat, PointCloud


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

        if start is not None or count is not None:
            raise UsageError(f"{p}: --start/--count select frames of a PLY sequence; a stream's info lists all "
                             f"its frames")
        data = read_stream_bytes(p)
        with stream_errors(p):
            return stream_info(data)
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


# ---------------------------------------------------------------------------------- encode/decode

def encode(src: PathLike, output: PathLike, codec: str = "octree", options: dict[str, Any] | None = None,
           start: int | None = None, count: int | None = None, progress=None, restore_hint: bool = False,
           restore_weights: PathLike | None = None) -> dict[str, Any]:
    """Encode a PLY or a sequence (directory, glob, %04d pattern) into one .imc stream.

    ``options`` go to the codec's ``make_config`` (e.g. ``lossless``, ``scale``, ``attr_qp``; None
    values mean "not given"; options the codec lacks raise UsageError). A codec with ``encode_group``
    (V-PCC) codes groups of ``config.gof`` frames; then every frame is first checked for colour and
    bit depth agreement (InputError naming the file before any coding). ``progress(done, total)`` is
    called after each frame. Returns bytes, points, bpp (bits per input point), components (bytes per
    component over all frames), frames, encode_seconds (codec time, files excluded) and per-frame rows.

    ``restore_hint`` (V-PCC): each frame also carries the artifact-removal keep ratios that maximise
    its D1, for the plain and the depth-denoised decode (``restore_weights`` or the shipped network
    for the stream's rate; :func:`imcodec.api.learned.restore_hinter`); adds hint_seconds.
    """
    import time

    from imcodec.codecs import get_codec
    from imcodec.io.bitstream import FLAG_COLORS, StreamWriter
    from imcodec.io.files import write_bytes_atomic

    codec_obj = get_codec(codec)
    config = codec_obj.make_config(dict(options or {}))
    frames = resolve_frames(src, start, count)
    out = Path(output)
    if any(out.resolve() == fr.path.resolve() for fr in frames):
        raise UsageError(f"{out}: output would overwrite an input frame")
    if restore_weights is not None and not restore_hint:
        raise UsageError("--restore-weights at encode selects the network for --restore-hint; it needs --restore-hint")
    hinter = restore_hinter(codec_obj, config, restore_weights) if restore_hint else None
    writer = StreamWriter(codec_obj.codec_id, codec_obj.stream_params(config))
    state: dict = {}
    hint_seconds = 0.0
    rows, totals = [], {}
    points = depth = 0
    colors: bool | None = None
    seconds = 0.0
    gof = int(getattr(config, "gof", 1) or 1) if hasattr(codec_obj, "encode_group") else 1
    if gof > 1 and len(frames) > 1:
        _check_frames(frames)  # colour / bit depth mismatches fail before any coding
    done = 0
    for g in range(0, len(frames), gof):
        group = frames[g:g + gof]
        clouds = [read_ply(fr.path) for fr in group]
        t0 = time.perf_counter()
        if gof > 1:
            codes = codec_obj.encode_group(clouds, config, state)
        else:
            codes = [codec_obj.encode_frame(clouds[0], config, state)]
        seconds += time.perf_counter() - t0
        for fr, cloud, code in zip(group, clouds, codes):
            has_colors = code.recon.colors is not None
            if colors is not None and has_colors != colors:
                raise InputError(f"{fr.path}: frames of one stream must all have colour or all lack it")
            colors = has_colors
            components = code.components
            if hinter is not None:
                t0 = time.perf_counter()
                components = {**components, **hinter(cloud, code, has_colors)}
                hint_seconds += time.perf_counter() - t0
            sizes = writer.add_frame(fr.index, len(code.recon), components, code.needs_previous)
            for k, v in sizes.items():
                totals[k] = totals.get(k, 0) + v
            points += len(cloud)
            depth = max(depth, code.bit_depth)
            rows.append({"frame": fr.index, "path": str(fr.path), "points": len(cloud),
                         "bytes": sum(sizes.values()), "components": sizes})
            done += 1
            if progress is not None:
                progress(done, len(frames))
    declared = getattr(config, "bit_depth", None)
    data = writer.finish(bit_depth=declared or depth, origin=getattr(config, "origin", (0.0, 0.0, 0.0)),
                         scale=getattr(config, "scale", 1.0), flags=FLAG_COLORS if colors else 0)
    write_bytes_atomic(out, data)
    result = {"output": str(out), "codec": codec_obj.name, "bytes": len(data), "points": points,
              "bpp": 8.0 * len(data) / points if points else None, "components": totals,
              "frames": len(frames), "encode_seconds": round(seconds, 4), "per_frame": rows}
    if hinter is not None:
        result["hint_seconds"] = round(hint_seconds, 3)
    return result


def _check_frames(frames) -> None:
    """InputError naming the frame when frames differ in colour presence or bit depth (bits of the
    largest coordinate), read before any coding starts."""
    first = None
    for fr in frames:
        info = cloud_info(read_ply(fr.path, allow_empty=True))
        cur = ("rgb" in " ".join(info["attributes"]), info.get("bit_depth"))
        if first is None:
            first = (fr, cur)
            continue
        ref_fr, ref = first
        if cur[0] != ref[0]:
            raise InputError(f"{fr.path}: {'has' if cur[0] else 'lacks'} colour while {ref_fr.path} "
                             f"{'has' if ref[0] else 'lacks'} it; frames of a sequence must agree")
        if cur[1] is not None and ref[1] is not None and cur[1] != ref[1]:
            raise InputError(f"{fr.path}: {cur[1]}-bit coordinates while {ref_fr.path} has {ref[1]}-bit "
                             f"ones; frames of a sequence must share one bit depth")


def parse_frame_range(spec: str | None) -> tuple[int | None, int | None]:
    """``"A:B"`` (frame numbers A <= n < B; either side may be empty) or ``"A"`` -> (A, B)."""
    if spec is None:
        return None, None
    text = str(spec).strip()
    try:
        if ":" not in text:
            a = int(text)
            if a < 0:
                raise UsageError(f"--frames {spec!r}: frame numbers are not negative")
            return a, a + 1
        lo, hi = text.split(":", 1)
        a, b = (int(lo) if lo.strip() else None), (int(hi) if hi.strip() else None)
    except ValueError:
        raise UsageError(f"--frames {spec!r}: expected A:B, A: , :B or A (frame numbers)") from None
    if (a is not None and a < 0) or (b is not None and b < 0):
        raise UsageError(f"--frames {spec!r}: frame numbers are not negative")
    return a, b


def decode(stream: PathLike, output: PathLike, frames: str | None = None, progress=None,
           denoise_depth: bool = False, weights: PathLike | None = None, restore: bool = False,
           restore_weights: PathLike | None = None, restore_rate: str | None = None) -> dict[str, Any]:
    """Decode an .imc stream: one selected frame to a PLY file, several to a directory of PLYs.

    ``frames`` selects frame numbers (``"10:20"`` = 10..19, see :func:`parse_frame_range`); frames
    that need their predecessor are decoded from the nearest preceding independent frame. Returns
    points, frames, decode_seconds (codec time, files excluded) and the written paths.
    ``denoise_depth`` (V-PCC streams only) filters the decoded depth images with the learned denoiser
    (``weights`` or the shipped file); ``restore`` runs learned artifact removal on each decoded frame
    (see :func:`restore`).
    """
    from imcodec.io.bitstream import read_stream_bytes

    data = read_stream_bytes(stream)
    with stream_errors(stream):
        return _decode_data(data, stream, output, frames, progress, denoise_depth, weights, restore,
                            restore_weights, restore_rate)


def _decode_data(data: bytes, stream: PathLike, output: PathLike, frames, progress, denoise_depth, weights,
                 restore, restore_weights, restore_rate) -> dict[str, Any]:
    import time

    from imcodec.codecs import codec_by_id
    from imcodec.io.bitstream import parse_stream, read_frame
    from imcodec.io.files import staged_outputs

    header, entries = parse_stream(data)
    codec_obj = codec_by_id(header.codec_id)
    lo, hi = parse_frame_range(frames)
    wanted = [i for i, e in enumerate(entries)
              if (lo is None or e.number >= lo) and (hi is None or e.number < hi)]
    if not wanted:
        have = f"{entries[0].number}..{entries[-1].number}" if entries else "none"
        raise UsageError(f"--frames {frames!r} selects no frame of {stream} (frames {have})")
    first = wanted[0]
    while first > 0 and entries[first].needs_previous:
        first -= 1
    out = Path(output)
    as_file = len(wanted) == 1 and not out.is_dir() and not str(output).endswith(("/", os.sep))
    if as_file and Path(stream).is_file() and out.resolve() == Path(stream).resolve():
        raise UsageError(f"{out}: output would overwrite its input")
    stem = Path(stream).stem
    state: dict = {}
    post = _enhancers(stream, header, state, denoise_depth, weights, restore, restore_weights, restore_rate)
    written, points, seconds = [], 0, 0.0
    keep = set(wanted)
    # frames decoded only as references for later ones need just what the codec's prediction reads
    ref_parts = getattr(codec_obj, "reference_components", None)
    # several frames go to a staging directory first: a failure leaves none of them behind
    with contextlib.nullcontext(out) if as_file else staged_outputs(out) as stage:
        for i in range(first, wanted[-1] + 1):
            t0 = time.perf_counter()
            components = read_frame(data, entries[i])
            if i not in keep and ref_parts is not None:
                components = {k: v for k, v in components.items() if k in ref_parts}
            cloud = codec_obj.decode_frame(components, header, state)
            seconds += time.perf_counter() - t0
            if i not in keep:
                continue
            if len(cloud) != entries[i].points and not denoise_depth:  # denoised depths change the count
                from imcodec.errors import BitstreamError

                raise BitstreamError(f"frame {entries[i].number} decodes to {len(cloud)} points, the index "
                                     f"says {entries[i].points}")
            if post is not None:
                t0 = time.perf_counter()
                cloud = post(cloud, components)
                seconds += time.perf_counter() - t0
            name = f"{stem}_{entries[i].number:04d}.ply"
            write_ply(cloud, stage if as_file else stage / name)
            written.append(str(out if as_file else out / name))
            points += len(cloud)
            if progress is not None:
                progress(len(written), len(wanted))
    return {"output": str(out), "points": points, "frames": len(written), "decode_seconds": round(seconds, 4),
            "written": written}


# ---------------------------------------------------------------------------------------- convert

def convert(src: PathLike, dst: PathLike, fmt: str = "binary", point_type: str | None = None,
            start: int | None = None, count: int | None = None, round_coords: bool = False) -> list[Path]:
    """Re-encode one PLY (dst a file) or a sequence (dst a directory); returns the written paths.

    An integer ``point_type`` refuses non-integer coordinates (InputError quoting the first one)
    unless ``round_coords``, which rounds them to the nearest integer."""
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
        cloud = read_ply(fr.path, allow_empty=True)
        if point_type is not None and point_type.startswith(("int", "uint")) and not round_coords:
            frac = np.flatnonzero(np.any(cloud.points != np.rint(cloud.points), axis=1))
            if len(frac):
                i = int(frac[0])
                raise InputError(f"{fr.path}: point {i} {tuple(float(v) for v in cloud.points[i])} is not on the "
                                 f"integer grid ({len(frac)} such points); --point-type {point_type} would round "
                                 f"them: pass --round to do that")
        write_ply(cloud, out, ply_fmt, point_type)
        written.append(out)
    return written



# ----------------------------------------------------------------------------------------- motion

def motion(src: PathLike, out_dir: PathLike, options: dict[str, Any] | None = None, block: int = 16,
           start: int | None = None, count: int | None = None, progress=None) -> dict[str, Any]:
    """3D-motion hints of a sequence coded with V-PCC (``options`` as for ``encode --codec vpcc``).

    Every frame after the first gets ``hints_NNNN.csv`` (format: :mod:`imcodec.io.hints`) and
    ``hints_NNNN.png`` (the MV field over its atlas) in ``out_dir``; the hints are derived from the
    decoded geometry and colour exactly as the decoder derives them. Returns the written files and
    per-frame block counts and mean confidence.
    """
    from imcodec.codecs import get_codec
    from imcodec.io.files import ensure_dir
    from imcodec.io.hints import write_hints
    from imcodec.io.images import write_png
    from imcodec.vpcc.inter import encode_group
    from imcodec.vpcc.motion import hint_image

    if not 1 <= int(block) <= 256:
        raise UsageError(f"--block must be in 1..256, got {block}")
    codec_obj = get_codec("vpcc")
    config = codec_obj.make_config(dict(options or {}))
    frames = resolve_frames(src, start, count)
    if len(frames) < 2:
        raise UsageError(f"{src}: motion hints need at least two frames, got {len(frames)}")
    _check_frames(frames)
    out = Path(out_dir)
    if out.is_dir():
        # hint files of an earlier run over other frames would read as part of this one
        ours = {f"hints_{fr.index:04d}.{ext}" for fr in frames[1:] for ext in ("csv", "png")}
        stale = sorted(p.name for p in out.glob("hints_*.*") if p.name not in ours)
        if stale:
            raise UsageError(f"{out}: holds hint files of other frames ({', '.join(stale[:3])}"
                             f"{', ...' if len(stale) > 3 else ''}); use an empty folder")
    out = ensure_dir(out)
    state: dict = {"export_hints": True, "hint_block": int(block)}
    rows, written, done = [], [], 0
    for g in range(0, len(frames), config.gof):
        group = frames[g:g + config.gof]
        encode_group([read_ply(fr.path) for fr in group], config, state)
        for seq_index, hints, width, height in state.pop("hints", []):
            fr, prev = frames[seq_index], frames[seq_index - 1]
            csv = out / f"hints_{fr.index:04d}.csv"
            png = out / f"hints_{fr.index:04d}.png"
            write_hints(csv, hints, fr.index, prev.index, width, height, int(block))
            write_png(png, hint_image(hints, width, height, int(block)))
            written += [str(csv), str(png)]
            rows.append({"frame": fr.index, "previous": prev.index, "blocks": int(len(hints)),
                         "mean_confidence": float(hints[:, 4].mean()) if len(hints) else None})
        done += len(group)
        if progress is not None:
            progress(done, len(frames))
    return {"output": str(out), "frames": rows, "written": written}

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


# ---------------------------------------------------------------------------------- encode/decode

def encode(src: PathLike, output: PathLike, codec: str = "octree", options: dict[str, Any] | None = None,
           start: int | None = None, count: int | None = None, progress=None) -> dict[str, Any]:
    """Encode a PLY or a sequence (directory, glob, %04d pattern) into one .imc stream.

    ``options`` go to the codec's ``make_config`` (e.g. ``lossless``, ``scale``, ``attr_qp``; None
    values mean "not given"; options the codec lacks raise UsageError). A codec with ``encode_group``
    (V-PCC) codes groups of ``config.gof`` frames; then every frame is first checked for colour and
    bit depth agreement (InputError naming the file before any coding). ``progress(done, total)`` is
    called after each frame. Returns bytes, points, bpp (bits per input point), components (bytes per
    component over all frames), frames, encode_seconds (codec time, files excluded) and per-frame rows.
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
    writer = StreamWriter(codec_obj.codec_id, codec_obj.stream_params(config))
    state: dict = {}
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
            sizes = writer.add_frame(fr.index, len(code.recon), code.components, code.needs_previous)
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
    return {"output": str(out), "codec": codec_obj.name, "bytes": len(data), "points": points,
            "bpp": 8.0 * len(data) / points if points else None, "components": totals,
            "frames": len(frames), "encode_seconds": round(seconds, 4), "per_frame": rows}


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
            return a, a + 1
        lo, hi = text.split(":", 1)
        return (int(lo) if lo.strip() else None), (int(hi) if hi.strip() else None)
    except ValueError:
        raise UsageError(f"--frames {spec!r}: expected A:B, A: , :B or A (frame numbers)") from None


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
    import time

    from imcodec.codecs import codec_by_id
    from imcodec.io.bitstream import parse_stream, read_frame, read_stream_bytes
    from imcodec.io.files import ensure_dir

    data = read_stream_bytes(stream)
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
    if not as_file:
        ensure_dir(out)
    stem = Path(stream).stem
    state: dict = {}
    post = _enhancers(stream, header, state, denoise_depth, weights, restore, restore_weights, restore_rate)
    written, points, seconds = [], 0, 0.0
    keep = set(wanted)
    for i in range(first, wanted[-1] + 1):
        t0 = time.perf_counter()
        cloud = codec_obj.decode_frame(read_frame(data, entries[i]), header, state)
        seconds += time.perf_counter() - t0
        if i not in keep:
            continue
        if len(cloud) != entries[i].points and not denoise_depth:  # denoised depths change the count
            from imcodec.errors import BitstreamError

            raise BitstreamError(f"frame {entries[i].number} decodes to {len(cloud)} points, the index "
                                 f"says {entries[i].points}")
        if post is not None:
            t0 = time.perf_counter()
            cloud = post(cloud)
            seconds += time.perf_counter() - t0
        path = out if as_file else out / f"{stem}_{entries[i].number:04d}.ply"
        write_ply(cloud, path)
        written.append(str(path))
        points += len(cloud)
        if progress is not None:
            progress(len(written), len(wanted))
    return {"output": str(out), "points": points, "frames": len(written), "decode_seconds": round(seconds, 4),
            "written": written}


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
    elif frames == 1 and not Path(out).is_dir():
        paths = [Path(out)]
    else:
        ensure_dir(out)
        paths = [Path(out) / f"{shape}_{i:04d}.ply" for i in range(frames)]
    for i, p in enumerate(paths):
        write_ply(make_cloud(shape, bits, color=color, seed=seed, t=float(i), motion=motion), p)
    return paths


# ------------------------------------------------------------------------------------ upsampling

def upsample(src: PathLike, dst: PathLike, factor: int = 4, engine: str = "torch", device: str = "cpu",
             weights: PathLike | None = None, chunk: int = 256, margin: int = 16, threads: int | None = None,
             views: int = 1, progress=None) -> dict[str, Any]:
    """Upsample a voxelised cloud ``factor`` times with the PU-Dense-style network; write ``dst``.

    The output holds the factor x N most probable voxels (fewer only when there are fewer candidates);
    colours, if any, are copied from the nearest input point. ``progress(done, total)`` is called
    after each spatial chunk. ``views`` > 1 averages over rotated copies (test-time augmentation).
    """
    import time

    import torch

    from imcodec.learned.sparse import get_backend, resolve_device
    from imcodec.learned.upsample import nearest_colors, upsample_points
    from imcodec.learned.zoo import load_upsampler

    if factor not in (2, 4, 8):
        raise UsageError(f"--factor must be 2, 4 or 8, got {factor}")
    if not 1 <= views <= 4:
        raise UsageError(f"--views must be 1..4, got {views}")
    if chunk < 32 or chunk % 8:
        raise UsageError(f"--chunk must be a multiple of 8 and at least 32, got {chunk}")
    dev = resolve_device(device)
    get_backend(engine)  # UsageError with install hint when unavailable
    if threads:
        torch.set_num_threads(threads)
    cloud = read_ply(src)
    model, info = load_upsampler(factor, weights, dev)
    t0 = time.perf_counter()
    pts = upsample_points(model, cloud.points, factor, chunk=chunk, margin=margin, backend=engine,
                          device=dev, progress=progress, views=views)
    seconds = time.perf_counter() - t0
    colors = None
    if cloud.colors is not None:
        colors = nearest_colors(cloud.points, cloud.colors, pts.astype(np.float64))
    write_ply(PointCloud(points=pts.astype(np.float64), colors=colors, point_dtype=cloud.point_dtype), dst)
    return {"input": str(src), "output": str(dst), "factor": factor, "input_points": len(cloud),
            "output_points": int(len(pts)), "engine": engine, "device": str(dev),
            "views": views, "weights": info["weights"], "seconds": round(seconds, 3)}


def train_upsample(data: list[str], output: PathLike, factor: int = 4, epochs: int = 8,
                   steps_per_epoch: int = 200, batch_size: int = 4, crop: int = 64, lr: float = 2e-3,
                   seed: int = 0, device: str = "cpu", synth_shapes: tuple[str, ...] = ("sphere", "torus", "box", "body"),
                   checkpoint_dir: PathLike | None = None, resume: bool = False, threads: int | None = None,
                   command: str | None = None, on_step=None) -> dict[str, Any]:
    """Train the upsampling network and write a weights file (see imcodec.learned.train)."""
    import torch

    from imcodec.learned.train import TrainConfig, train_upsampler
    from imcodec.learned.zoo import save_weights

    out = Path(output)
    if out.is_dir():
        raise UsageError(f"{out}: is a directory, expected a weights file name")
    cfg = TrainConfig(factor=factor, data=tuple(str(d) for d in data), synth=tuple(synth_shapes),
                      epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, crop=crop,
                      lr=lr, seed=seed)
    model, summary = train_upsampler(cfg, device=device, checkpoint_dir=checkpoint_dir, resume=resume,
                                     on_step=on_step, threads=threads)
    meta = {"command": command, "data": summary["pool"], "train_config": summary["train_config"],
            "history": summary["history"], "seconds": summary["seconds"],
            "parameters": summary["parameters"], "torch": str(torch.__version__)}
    save_weights(out, model, meta)
    last = summary["history"][-1] if summary["history"] else {}
    return {"weights": str(out), "factor": factor, "epochs": epochs, "steps": epochs * steps_per_epoch,
            "parameters": summary["parameters"], "seconds": summary["seconds"], **last}


# -------------------------------------------------------------------------- V-PCC enhancement

def train_denoise_depth(data: list[str], output: PathLike, epochs: int = 8, steps_per_epoch: int = 500,
                        batch_size: int = 8, crop: int = 96, lr: float = 1e-2, seed: int = 0,
                        synth_shapes: tuple[str, ...] = ("body", "torus"), rates: tuple[str, ...] = ("r1", "r2", "r3", "r4", "r5"),
                        cache_dir: PathLike | None = None, checkpoint_dir: PathLike | None = None,
                        resume: bool = False, threads: int | None = 1, command: str | None = None,
                        on_pairs=None, on_step=None) -> dict[str, Any]:
    """Train the dual-path depth denoiser on frames V-PCC coded at ``rates``; write a weights file
    (see imcodec.learned.train_denoise). Pairs are cached in ``cache_dir`` when given."""
    import torch

    from imcodec.io.files import write_bytes_atomic
    from imcodec.learned.depth_denoise import weights_bytes
    from imcodec.learned.enhance_data import load_pairs, training_clouds
    from imcodec.learned.train_denoise import DenoiseTrainConfig, train_denoiser

    out = Path(output)
    if out.is_dir():
        raise UsageError(f"{out}: is a directory, expected a weights file name")
    _check_rates(rates)
    clouds = training_clouds(list(data), tuple(synth_shapes), seed)
    pairs = load_pairs(clouds, tuple(rates), cache_dir, threads=2, progress=on_pairs)
    cfg = DenoiseTrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, crop=crop,
                             lr=lr, seed=seed)
    model, summary = train_denoiser(cfg, pairs, checkpoint_dir, resume, on_step, threads)
    meta = {"command": command, "data": [name for name, _ in clouds], "rates": list(rates),
            "train_config": summary["train_config"], "history": summary["history"],
            "seconds": summary["seconds"], "parameters": summary["parameters"], "torch": str(torch.__version__)}
    write_bytes_atomic(out, weights_bytes(model, meta))
    last = summary["history"][-1] if summary["history"] else {}
    return {"weights": str(out), "pairs": len(pairs), "parameters": summary["parameters"],
            "seconds": summary["seconds"], **{k: v for k, v in last.items() if k.startswith("val_")}}


def train_restore(data: list[str], output: PathLike, epochs: int = 6, steps_per_epoch: int = 150,
                  batch_size: int = 4, crop: int = 64, lr: float = 2e-3, seed: int = 0,
                  synth_shapes: tuple[str, ...] = ("body", "torus"), rates: tuple[str, ...] = ("r1", "r2", "r3", "r4", "r5"),
                  cache_dir: PathLike | None = None, checkpoint_dir: PathLike | None = None,
                  resume: bool = False, threads: int | None = 1, command: str | None = None,
                  on_pairs=None, on_step=None) -> dict[str, Any]:
    """Train the artifact-removal network on frames V-PCC coded at ``rates`` (one rate: a model for
    that rate, several: rate "all"); write a weights file (see imcodec.learned.train_restore)."""
    import torch

    from imcodec.io.files import write_bytes_atomic
    from imcodec.learned.enhance_data import load_pairs, training_clouds
    from imcodec.learned.restore import weights_bytes
    from imcodec.learned.train_restore import RestoreTrainConfig, train_restorer

    out = Path(output)
    if out.is_dir():
        raise UsageError(f"{out}: is a directory, expected a weights file name")
    _check_rates(rates)
    clouds = training_clouds(list(data), tuple(synth_shapes), seed)
    pairs = load_pairs(clouds, tuple(rates), cache_dir, threads=2, progress=on_pairs)
    cfg = RestoreTrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, crop=crop,
                             lr=lr, seed=seed)
    model, summary = train_restorer(cfg, pairs, checkpoint_dir, resume, on_step, threads)
    meta = {"command": command, "data": [name for name, _ in clouds], "rates": list(rates),
            "train_config": summary["train_config"], "history": summary["history"],
            "seconds": summary["seconds"], "parameters": summary["parameters"], "torch": str(torch.__version__),
            "count_ratio": summary["count_ratio"], "tuning": summary["tuning"]}
    rate = rates[0] if len(rates) == 1 else "all"
    write_bytes_atomic(out, weights_bytes(model, rate, summary["keep_ratio"], meta))
    last = summary["history"][-1] if summary["history"] else {}
    return {"weights": str(out), "rate": rate, "pairs": len(pairs), "parameters": summary["parameters"],
            "seconds": summary["seconds"], "keep_ratio": summary["keep_ratio"].get(rate),
            **{k: v for k, v in last.items() if k.startswith("val_")}}


def restore(src: PathLike, dst: PathLike, rate: str | None = None, weights: PathLike | None = None,
            threads: int | None = 2, progress=None) -> dict[str, Any]:
    """Learned artifact removal on a decoded (voxelised) cloud; writes ``dst``
    (see imcodec.learned.restore). ``rate`` picks the keep ratio (and a per-rate model if shipped)."""
    import time

    from imcodec.learned.restore import load_restorer, restore_cloud

    model, info = load_restorer(rate, weights)
    cloud = read_ply(src)
    t0 = time.perf_counter()
    out = restore_cloud(model, info, cloud, rate, threads=threads, progress=progress)
    seconds = time.perf_counter() - t0
    write_ply(out, dst)
    return {"input": str(src), "output": str(dst), "input_points": len(cloud), "output_points": len(out),
            "rate": rate or "any", "keep_ratio": round(info["keep_ratio"], 5), "weights": info["weights"],
            "seconds": round(seconds, 3)}


def _enhancers(stream, header, state: dict, denoise_depth: bool, weights, restore: bool, restore_weights,
               restore_rate):
    """Set up the decoder-side learned tools of :func:`decode`: puts the depth denoiser into the codec
    state (V-PCC only, UsageError otherwise); returns the per-frame restore step or None."""
    from imcodec.codecs import codec_name_for_id

    if weights is not None and not denoise_depth:
        raise UsageError("--weights selects the depth denoiser's weights; it needs --denoise-depth")
    if (restore_weights is not None or restore_rate is not None) and not restore:
        raise UsageError("--restore-weights / --restore-rate need --restore")
    if denoise_depth:
        name = codec_name_for_id(header.codec_id)
        if not name.startswith("vpcc"):
            raise UsageError(f"--denoise-depth filters V-PCC depth video; {stream} was coded with the "
                             f"{name!r} codec")
        from imcodec.learned.depth_denoise import DepthDenoiser

        state["depth_denoiser"] = DepthDenoiser(weights)
    if not restore:
        return None
    from imcodec.learned.restore import load_restorer, restore_cloud

    model, info = load_restorer(restore_rate, restore_weights)
    return lambda cloud: restore_cloud(model, info, cloud, restore_rate)


def _check_rates(rates) -> None:
    bad = [r for r in rates if r not in ("r1", "r2", "r3", "r4", "r5")]
    if bad or not rates:
        raise UsageError(f"rates must be among r1..r5, got {', '.join(map(str, rates)) or 'none'}")


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
                max_psnr_drop: float = 0.05, method: str = "pchip") -> dict[str, Any]:
    """Regression gate: BD-rate of the results' RD curves against a baseline file (``passed`` False
    and ``regressions`` naming sequence, codec and metric beyond ``max_bdrate`` percent), or, with
    ``write_baseline``, record the results as the baseline."""
    from imcodec.bench import gate
    from imcodec.bench.report import read_results

    gate.baseline_path_check(Path(results), Path(baseline))
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
    out = ensure_dir(Path(out_dir))
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

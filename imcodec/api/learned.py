"""The learned tools: upsampling, V-PCC depth denoising and artifact removal, their training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imcodec.api._base import PathLike, check_not_input, check_threads
from imcodec.errors import UsageError
from imcodec.io.ply import read_ply, write_ply
from imcodec.types import PointCloud


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
    check_threads(threads)
    check_not_input(src, dst)
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

    out = _training_output(output, lr=lr, threads=threads, resume=resume, checkpoint_dir=checkpoint_dir)
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

def train_denoise_lut(data: list[str], output: PathLike, synth_shapes: tuple[str, ...] = (),
                      rates: tuple[str, ...] = ("r1", "r2", "r3", "r4", "r5"), min_count: int = 5, seed: int = 0,
                      cache_dir: PathLike | None = None, command: str | None = None, on_pairs=None,
                      on_step=None) -> dict[str, Any]:
    """Fit the look-up-table depth denoiser (imcodec.learned.depth_lut) on frames V-PCC coded at
    ``rates``, one table set per rate's geometry QP; write a weights file. Deterministic (``seed``
    only picks the synthetic shapes)."""
    import time

    from imcodec.io.files import write_bytes_atomic
    from imcodec.learned.depth_lut import fit_lut, weights_bytes
    from imcodec.learned.enhance_data import load_pairs, training_clouds
    from imcodec.vpcc.config import CTC_RATES

    out = _training_output(output)
    _check_rates(rates)
    if min_count < 1:
        raise UsageError(f"--min-count must be >= 1, got {min_count}")
    clouds = training_clouds(list(data), tuple(synth_shapes), seed)
    pairs = load_pairs(clouds, tuple(rates), cache_dir, threads=2, progress=on_pairs)
    t0 = time.perf_counter()
    tune = (lambda done, total, note: on_step({"tune": (done, total, note)})) if on_step is not None else None
    model, summary = fit_lut(pairs, {r: CTC_RATES[r][0] for r in rates}, min_count, tune)
    seconds = time.perf_counter() - t0
    meta = {"command": command, "data": [name for name, _ in clouds], "rates": list(rates),
            "min_count": min_count, "seconds": seconds, **summary}
    write_bytes_atomic(out, weights_bytes(model, meta))
    return {"weights": str(out), "pairs": len(pairs), "qps": summary["qps"], "seconds": round(seconds, 1),
            "train_mse": summary["train_mse"]}


def train_denoise_depth(data: list[str], output: PathLike, epochs: int = 8, steps_per_epoch: int = 500,
                        batch_size: int = 8, crop: int = 96, lr: float = 1e-2, channels: int | None = None,
                        init: PathLike | None = None, seed: int = 0, synth_shapes: tuple[str, ...] = ("body", "torus"), rates: tuple[str, ...] = ("r1", "r2", "r3", "r4", "r5"),
                        cache_dir: PathLike | None = None, checkpoint_dir: PathLike | None = None,
                        resume: bool = False, threads: int | None = 1, command: str | None = None,
                        on_pairs=None, on_step=None) -> dict[str, Any]:
    """Train the dual-path depth denoiser on frames V-PCC coded at ``rates``; write a weights file
    (see imcodec.learned.train_denoise). Pairs are cached in ``cache_dir`` when given. ``init``: a
    denoiser weights file to start from (fine-tuning; ``channels`` defaults to its width, else 16)."""
    import torch

    from imcodec.io.files import write_bytes_atomic
    from imcodec.learned.depth_denoise import weights_bytes
    from imcodec.learned.enhance_data import load_pairs, training_clouds
    from imcodec.learned.train_denoise import DenoiseTrainConfig, train_denoiser

    out = _training_output(output, lr=lr, threads=threads, resume=resume, checkpoint_dir=checkpoint_dir)
    _check_rates(rates)
    if init is not None:
        from imcodec.learned.denoiser import load_denoiser

        from imcodec.learned.depth_lut import LutDenoiser

        init_model = load_denoiser(init)[0]
        if isinstance(init_model, LutDenoiser):
            raise UsageError(f"--init {init}: not CNN denoiser weights (a look-up-table denoiser cannot be "
                             f"fine-tuned; fit a new one with --arch lut)")
        width = init_model.config.channels
        if channels is not None and channels != width:
            raise UsageError(f"--channels {channels} differs from the {width} channels of --init {init}")
        channels = width
    clouds = training_clouds(list(data), tuple(synth_shapes), seed)
    pairs = load_pairs(clouds, tuple(rates), cache_dir, threads=2, progress=on_pairs)
    cfg = DenoiseTrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, crop=crop,
                             lr=lr, seed=seed, channels=16 if channels is None else channels,
                             init=None if init is None else str(init))
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
                  on_pairs=None, on_step=None, init: PathLike | None = None) -> dict[str, Any]:
    """Train the artifact-removal network on frames V-PCC coded at ``rates`` (one rate: a model for
    that rate, several: rate "all"); write a weights file (see imcodec.learned.train_restore).
    ``init``: restore weights to start from (fine-tuning); checked before any pair is made."""
    import torch

    from imcodec.io.files import write_bytes_atomic
    from imcodec.learned.enhance_data import load_pairs, training_clouds
    from imcodec.learned.restore import weights_bytes
    from imcodec.learned.train_restore import RestoreTrainConfig, train_restorer

    out = _training_output(output, lr=lr, threads=threads, resume=resume, checkpoint_dir=checkpoint_dir)
    _check_rates(rates)
    if epochs == 0 and init is None:
        raise UsageError("--epochs 0 re-tunes the keep ratios of existing weights: give them with --init")
    if epochs == 0 and (resume or checkpoint_dir is not None):
        raise UsageError("--epochs 0 (re-tune only) trains nothing: --resume and --checkpoint-dir do not apply")
    if init is not None:
        from imcodec.learned.restore import load_restorer

        start = load_restorer(None, init)  # a missing or wrong file fails now, not after the pairs are coded
    clouds = training_clouds(list(data), tuple(synth_shapes), seed)
    pairs = load_pairs(clouds, tuple(rates), cache_dir, threads=2, progress=on_pairs)
    if epochs == 0:
        return _retune_restore(start, pairs, out, clouds, rates, threads, command, on_step)
    cfg = RestoreTrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, crop=crop,
                             lr=lr, seed=seed, init=None if init is None else str(init))
    model, summary = train_restorer(cfg, pairs, checkpoint_dir, resume, on_step, threads)
    meta = {"command": command, "data": [name for name, _ in clouds], "rates": list(rates),
            "train_config": summary["train_config"], "history": summary["history"],
            "seconds": summary["seconds"], "parameters": summary["parameters"], "torch": str(torch.__version__),
            "count_ratio": summary["count_ratio"], "tuning": summary["tuning"]}
    rate = rates[0] if len(rates) == 1 else "all"
    write_bytes_atomic(out, weights_bytes(model, rate, summary["keep_ratio"], meta, summary["support"],
                                          summary["keep_exponent"]))
    last = summary["history"][-1] if summary["history"] else {}
    return {"weights": str(out), "rate": rate, "pairs": len(pairs), "parameters": summary["parameters"],
            "seconds": summary["seconds"], "keep_ratio": summary["keep_ratio"].get(rate),
            **{k: v for k, v in last.items() if k.startswith("val_")}}


def _retune_restore(start, pairs, out, clouds, rates, threads, command, on_step) -> dict[str, Any]:
    """``train restore --epochs 0``: the ``--init`` weights unchanged, their keep ratios, keep exponents
    and support weights tuned again on ``pairs`` (the tuned rates replaced; "all" only when several rates are
    tuned). The meta keeps the training record and adds a "retune" entry."""
    import time

    import torch

    from imcodec.io.files import write_bytes_atomic
    from imcodec.learned.restore import weights_bytes
    from imcodec.learned.train_restore import tune_keep_ratios

    model, info = start
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    tuned = tune_keep_ratios(model, pairs, progress=(lambda d, t, note: on_step({"tune": (d, t, note)}))
                             if on_step is not None else None)
    meta = dict(info["meta"])
    keep = dict(meta.pop("keep_ratio", {}))
    support = {r: tuple(v) for r, v in meta.pop("support", {}).items()}
    # rates not tuned again keep their counts: exponent 1 where the file predates the exponent
    exponent = {r: 1.0 for r in keep} | dict(meta.pop("keep_exponent", {}))
    tuned_rates = [r for r in tuned["keep_ratio"] if r != "all" or len(rates) > 1]
    keep.update({r: tuned["keep_ratio"][r] for r in tuned_rates})
    support.update({r: tuned["support"][r] for r in tuned_rates})
    exponent.update({r: tuned["keep_exponent"][r] for r in tuned_rates})
    meta["retune"] = {"command": command, "data": [name for name, _ in clouds], "rates": list(rates),
                      "seconds": round(time.perf_counter() - t0, 1), "tuning": tuned,
                      "keep_ratio_before": info["meta"].get("keep_ratio"),
                      "support_before": info["meta"].get("support"),
                      "keep_exponent_before": info["meta"].get("keep_exponent")}
    write_bytes_atomic(out, weights_bytes(model, info["rate"], keep, meta, support, exponent))
    rate = rates[0] if len(rates) == 1 else "all"
    return {"weights": str(out), "rate": info["rate"], "pairs": len(pairs), "retuned": True,
            "keep_ratio": keep.get(rate), "keep_exponent": exponent.get(rate), "support": support.get(rate),
            "seconds": meta["retune"]["seconds"]}


def restore(src: PathLike, dst: PathLike, rate: str | None = None, weights: PathLike | None = None,
            threads: int | None = 2, progress=None, points: int | None = None) -> dict[str, Any]:
    """Learned artifact removal on a decoded (voxelised) cloud; writes ``dst``
    (see imcodec.learned.restore). ``rate`` picks the keep ratio (and a per-rate model if shipped);
    ``points`` keeps that many points instead (e.g. the source's count)."""
    import time

    from imcodec.learned.restore import load_restorer, restore_cloud

    if points is not None and points < 1:
        raise UsageError(f"--points must be >= 1, got {points}")
    check_threads(threads)
    check_not_input(src, dst)
    model, info = load_restorer(rate, weights)
    cloud = read_ply(src)
    t0 = time.perf_counter()
    out = restore_cloud(model, info, cloud, rate, threads=threads, progress=progress, keep=points)
    seconds = time.perf_counter() - t0
    write_ply(out, dst)
    return {"input": str(src), "output": str(dst), "input_points": len(cloud), "output_points": len(out),
            "rate": rate or "any", "keep_ratio": None if points is not None else round(info["keep_ratio"], 5),
            "keep_exponent": None if points is not None else info["keep_exponent"],
            "support": list(info["support"]), "weights": info["weights"],
            "seconds": round(seconds, 3)}


def _enhancers(stream, header, state: dict, denoise_depth: bool, weights, restore: bool, restore_weights,
               restore_rate):
    """Set up the decoder-side learned tools of :func:`decode`: puts the depth denoiser into the codec
    state (V-PCC only, UsageError otherwise); returns the per-frame restore step
    ``post(cloud, components) -> cloud`` or None.

    Restore keeps the frame's hinted keep ratio for its path, plain or denoised (``encode
    --restore-hint``), else the weights' one, x the decoded voxels. (With
    the first restore weights, which were tuned to drop points, the denoised cloud was cut to the
    source's voxel count instead, the V-PCC component ``source_points``; with the retrained weights,
    on the training frames at r1, r2 and r5, the ratio gained +1.28 dB on average against +0.93 dB
    for the source count.)"""
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
        from imcodec.learned.denoiser import DepthDenoiser

        state["depth_denoiser"] = DepthDenoiser(weights)
    if not restore:
        return None
    from imcodec.learned.restore import hinted_ratio, load_restorer, restore_cloud

    if restore_rate is None:
        restore_rate = stream_rate(header)
    model, info = load_restorer(restore_rate, restore_weights)

    def post(cloud, components):
        ratio = hinted_ratio(components, denoised=denoise_depth)
        return restore_cloud(model, info, cloud, restore_rate, ratio=ratio)

    return post


def restore_hinter(codec_obj, config, restore_weights=None):
    """``hint(source, code, has_colors) -> {"restore_ratio": bytes}`` for ``encode --restore-hint``
    (V-PCC only; call it for every frame in stream order): the keep ratios that maximise the frame's
    D1 after artifact removal of the encoder's reconstruction and of the frame decoded with the
    shipped depth denoiser (:func:`imcodec.learned.restore.best_keep_ratio`), with
    ``restore_weights`` or the shipped network for the configured rate. Checks run before any
    coding."""
    if not codec_obj.name.startswith("vpcc"):
        raise UsageError(f"--restore-hint is for V-PCC streams; the {codec_obj.name!r} codec has no restore step")
    if getattr(config, "geometry_codec", "hevc") != "hevc":
        raise UsageError("--restore-hint needs lossy geometry; a lossless stream has no artifacts to remove")
    from types import SimpleNamespace

    from imcodec.learned.denoiser import DepthDenoiser
    from imcodec.learned.restore import RATIO_COMPONENT, best_keep_ratio, load_restorer, ratio_bytes
    from imcodec.vpcc.config import ctc_rate_of

    model, info = load_restorer(ctc_rate_of(config.geometry_qp), restore_weights)
    # the decoder with --denoise-depth, run alongside: its state follows the stream (groups of frames)
    state: dict = {"depth_denoiser": DepthDenoiser(None)}
    params = codec_obj.stream_params(config)

    def hint(source, code, has_colors):
        denoised = codec_obj.decode_frame(code.components, SimpleNamespace(params=params, has_colors=has_colors),
                                          state)
        if len(code.recon) == 0 or len(denoised) == 0:
            return {}
        plain = best_keep_ratio(model, code.recon.points, source.points, support=info["support"])["ratio"]
        after = best_keep_ratio(model, denoised.points, source.points, support=info["support"])["ratio"]
        return {RATIO_COMPONENT: ratio_bytes(plain, after)}

    return hint


def stream_rate(header) -> str | None:
    """The CTC rate (r1..r5) whose geometry QP a V-PCC stream was coded with (stream version 3 records
    it), or None: another codec, a lossless or version-2 stream, or a QP of no CTC rate."""
    from imcodec.codecs import codec_name_for_id

    if not codec_name_for_id(header.codec_id).startswith("vpcc"):
        return None
    from imcodec.vpcc.config import StreamParams, ctc_rate_of

    return ctc_rate_of(StreamParams.unpack(header.params).geometry_qp)


def _training_output(output: PathLike, lr: float | None = None, threads: int | None = None,
                     resume: bool = False, checkpoint_dir: PathLike | None = None) -> Path:
    """The weights file to write, checked with the training options before any work starts."""
    import math

    out = Path(output)
    if out.is_dir():
        raise UsageError(f"{out}: is a directory, expected a weights file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{out}: output directory {str(parent)!r} does not exist")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise UsageError(f"--lr must be a positive number, got {lr}")
    check_threads(threads)
    if resume and checkpoint_dir is None:
        raise UsageError("--resume needs --checkpoint-dir (the folder holding last.pt)")
    return out


def _check_rates(rates) -> None:
    bad = [r for r in rates if r not in ("r1", "r2", "r3", "r4", "r5")]
    if bad or not rates:
        raise UsageError(f"rates must be among r1..r5, got {', '.join(map(str, rates)) or 'none'}")

"""Commands of the learned tools: upsample, restore and the ``train`` sub-commands."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from imcodec.cli._app import JsonOpt, _emit, _info, _progress_bar, _with_progress, app

# ------------------------------------------------------------------------------------- upsampling

class DenoiseArch(str, Enum):
    lut = "lut"
    cnn = "cnn"


class EngineOpt(str, Enum):
    torch = "torch"
    minkowski = "minkowski"


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

    result = _with_progress("upsampling chunks", lambda update:
        api.upsample(src, output, factor=factor, engine=engine.value, device=device, weights=weights,
                     chunk=chunk, threads=threads, views=views, progress=update))
    _emit(result, f"upsample x{factor}", json_out)


# options shared by the train commands
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
CheckpointDirOpt = Annotated[Optional[Path], typer.Option("--checkpoint-dir", help="Write last.pt here after each epoch.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint-dir/last.pt.")]
TrainThreadsOpt = Annotated[int, typer.Option("--threads", help="CPU threads for PyTorch.")]
StepsOpt = Annotated[int, typer.Option("--steps-per-epoch", help="Optimiser steps per epoch.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Crops per step.")]
LrOpt = Annotated[float, typer.Option("--lr", help="Peak learning rate (Adam, cosine decay).")]
NoSynthOpt = Annotated[bool, typer.Option("--no-synth", help="Do not add synthetic shapes.")]


def _command_line() -> str:
    """The command as typed, recorded in the weights file."""
    import shlex

    return "imcodec " + " ".join(shlex.quote(a) for a in sys.argv[1:])


train_app = typer.Typer(help="Train the learned tools.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("upsample")
def train_upsample(
    data: Annotated[Optional[list[str]], typer.Option("--data", help="Training clouds: PLY, directory, glob or %04d pattern (repeatable).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Weights file to write.")] = Path("upsample.pt"),
    factor: Annotated[int, typer.Option("--factor", help="Upsampling factor: 2, 4 or 8.")] = 4,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs.")] = 8,
    steps: StepsOpt = 200,
    batch_size: BatchOpt = 4,
    crop: Annotated[int, typer.Option("--crop", help="Crop edge in voxels.")] = 64,
    lr: LrOpt = 2e-3,
    seed: SeedOpt = 0,
    no_synth: Annotated[bool, typer.Option("--no-synth", help="Do not add the synthetic shapes of imcodec synth.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    checkpoint_dir: CheckpointDirOpt = None,
    resume: ResumeOpt = False,
    threads: TrainThreadsOpt = 2,
    json_out: JsonOpt = False,
) -> None:
    """Train the upsampling network on crops of real and synthetic clouds; write a weights file."""
    from imcodec import api

    bar, update = _progress_bar(f"training x{factor}")

    def on_step(ev: dict) -> None:
        if "epoch_done" in ev:
            h = ev["epoch_done"]
            _info(f"epoch {h['epoch']}: train loss {h['train_loss']:.4f}, val loss {h['val_loss']:.4f}, "
                  f"top-k precision {h['val_precision']:.3f}, {h['seconds']:.0f} s")
        elif update is not None:
            update(ev["step"], ev["total"], f"epoch {ev['epoch']} loss {ev['loss']:.4f}")

    command = _command_line()
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
    _emit(result, f"train upsample x{factor}", json_out)


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
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Weights file to write (default denoise_depth.npz, with --arch cnn denoise_depth.pt).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs (first half near network, second half far).")] = 8,
    steps: StepsOpt = 500,
    batch_size: BatchOpt = 8,
    crop: Annotated[int, typer.Option("--crop", help="Crop edge in pixels.")] = 96,
    lr: LrOpt = 1e-2,
    channels: Annotated[Optional[int], typer.Option("--channels", min=1, max=64, help="Feature channels of "
                                                    "both networks (default 16, or those of --init).")] = None,
    init: Annotated[Optional[Path], typer.Option("--init", help="Denoiser weights to start from (fine-tuning).")] = None,
    arch: Annotated[DenoiseArch, typer.Option("--arch", help="lut: look-up tables (fast decoding; the shipped "
                                              "default); cnn: the dual-path CNN.")] = "lut",
    min_count: Annotated[int, typer.Option("--min-count", min=1, help="LUT: table entries seen fewer times stay 0.")] = 5,
    seed: SeedOpt = 0,
    synth: Annotated[Optional[bool], typer.Option("--synth/--no-synth", help="Add the synthetic body and torus shapes "
                                                  "(default: with --arch cnn only; their thin surfaces bias the tables).")] = None,
    cache_dir: EnhanceCache = None,
    checkpoint_dir: CheckpointDirOpt = None,
    resume: ResumeOpt = False,
    threads: TrainThreadsOpt = 1,
    json_out: JsonOpt = False,
) -> None:
    """Train the V-PCC depth denoiser on frames coded at r1..r5: fit the look-up tables (--arch lut,
    the decoder's default; --epochs, --steps, --batch-size, --crop, --lr, --channels, --init,
    --checkpoint-dir and --threads apply to the CNN only) or train the CNN (near, then far network)."""
    from imcodec import api

    command = _command_line()
    if output is None:
        output = Path("denoise_depth.npz" if DenoiseArch(arch) is DenoiseArch.lut else "denoise_depth.pt")
    if DenoiseArch(arch) is DenoiseArch.lut:
        from imcodec.errors import UsageError

        if init is not None or channels is not None:
            raise UsageError("--init and --channels are options of the CNN (--arch cnn)")
        result = _run_enhance_training("fitting depth-denoiser tables", lambda on_pairs, on_step: api.train_denoise_lut(
            data or [], output, synth_shapes=("body", "torus") if synth else (), min_count=min_count, seed=seed,
            cache_dir=cache_dir, command=command, on_pairs=on_pairs, on_step=on_step))
        _emit(result, "train denoise-depth", json_out)
        return
    result = _run_enhance_training("training depth denoiser", lambda on_pairs, on_step: api.train_denoise_depth(
        data or [], output, epochs=epochs, steps_per_epoch=steps, batch_size=batch_size, crop=crop, lr=lr,
        channels=channels, init=init, seed=seed, synth_shapes=() if synth is False else ("body", "torus"),
        cache_dir=cache_dir, checkpoint_dir=checkpoint_dir, resume=resume, threads=threads, command=command,
        on_pairs=on_pairs, on_step=on_step))
    _emit(result, "train denoise-depth", json_out)


@train_app.command("restore")
def train_restore(
    data: EnhanceData = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Weights file to write.")] = Path("restore.pt"),
    rate: Annotated[Optional[list[str]], typer.Option("--rate", help="Rates to train on (repeatable; default r1..r5; one rate makes a per-rate model).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=0, help="Epochs (0 with --init: keep the weights, tune their keep ratios, keep exponents and support weights again).")] = 5,
    steps: StepsOpt = 120,
    batch_size: BatchOpt = 3,
    crop: Annotated[int, typer.Option("--crop", help="Crop edge in voxels.")] = 64,
    lr: LrOpt = 2e-3,
    seed: SeedOpt = 0,
    no_synth: NoSynthOpt = False,
    cache_dir: EnhanceCache = None,
    checkpoint_dir: CheckpointDirOpt = None,
    resume: ResumeOpt = False,
    threads: TrainThreadsOpt = 1,
    init: Annotated[Optional[Path], typer.Option("--init", help="Restore weights to start from (fine-tuning, e.g. one rate from the all-rate model).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the sparse-conv artifact-removal network on frames V-PCC coded at r1..r5."""
    from imcodec import api

    command = _command_line()
    rates = tuple(rate) if rate else ("r1", "r2", "r3", "r4", "r5")
    result = _run_enhance_training("training restore", lambda on_pairs, on_step: api.train_restore(
        data or [], output, epochs=epochs, steps_per_epoch=steps, batch_size=batch_size, crop=crop, lr=lr,
        seed=seed, synth_shapes=() if no_synth else ("body", "torus"), rates=rates, cache_dir=cache_dir,
        checkpoint_dir=checkpoint_dir, resume=resume, threads=threads, command=command,
        on_pairs=on_pairs, on_step=on_step, init=init))
    _emit(result, "train restore", json_out)


@app.command()
def restore(
    src: Annotated[Path, typer.Argument(help="Decoded voxelised PLY (e.g. V-PCC output).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output PLY.")],
    rate: Annotated[Optional[str], typer.Option("--rate", help="Rate the cloud was coded at (r1..r5: that rate's own shipped model where there is one, r1 and r2, else the all-rate model with the rate's keep count); default: the all-rate model and count.")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Weights file (default: the shipped ones).")] = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for PyTorch.")] = 2,
    points: Annotated[Optional[int], typer.Option("--points", min=1, help="Keep this many points (e.g. the source's count) instead of the rate's keep count.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Learned geometry artifact removal on a decoded cloud (sparse-conv voxel classification)."""
    from imcodec import api

    result = _with_progress("restoring chunks", lambda update:
        api.restore(src, output, rate=rate, weights=weights, threads=threads, progress=update, points=points))
    _emit(result, "restore", json_out)


# ------------------------------------------------------------------------------- batch evaluation

"""Training of the dual-path depth denoiser on (decoded, uncompressed) depth image pairs.

Pairs come from :mod:`imcodec.learned.enhance_data` (training frames V-PCC coded at r1..r5). A
sample is a ``crop`` x ``crop`` window of one pair's canvas with at least 20% occupied pixels,
turned by a random flip/transpose (patches are packed in several orientations). Two stages, as in
the paper: first the near-field network (loss: MSE of D0 over occupied pixels), then, with it
frozen, the far-field network (MSE of D1 plus ``gap_weight`` x MSE of the D1 - D0 gap). Adam with
warm-up and cosine decay. A fixed, seeded set of validation crops reports the MSE of the *rounded*
output against the MSE of the decoded images (what the decoder would get without the tool).

Checkpoints (model, optimiser, RNG states, history) are written after every epoch to
``checkpoint_dir/last.pt``; ``resume=True`` continues from there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imcodec.errors import UsageError
from imcodec.learned.depth_denoise import DenoiserConfig, DualDenoiser, load_denoiser, near_only
from imcodec.learned.enhance_data import dihedral
from imcodec.learned.train import open_checkpoint, save_checkpoint

StepFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class DenoiseTrainConfig:
    """Everything that determines a training run (stored in checkpoints and the weights meta)."""

    epochs: int = 6  # half for the near network, half for the far one (at least one each)
    steps_per_epoch: int = 200
    batch_size: int = 8
    crop: int = 96
    lr: float = 1e-2
    gap_weight: float = 0.5
    seed: int = 0
    val_crops: int = 32
    channels: int = 16
    init: str | None = None  # weights file to start from (fine-tuning); None: zero-residual networks


def _tensor(pairs, idx, ys, xs, crop, rng) -> dict[str, torch.Tensor]:
    keys = ("dec0", "dec1", "true0", "true1", "mask", "edge")
    out = {k: [] for k in keys}
    for i, y, x in zip(idx, ys, xs):
        p = pairs[i]
        k = int(rng.integers(8))
        for name in keys:
            out[name].append(dihedral(getattr(p, name)[y:y + crop, x:x + crop].astype(np.float32), k))
    return {k: torch.from_numpy(np.stack(v))[:, None] for k, v in out.items()}


def sample_batch(rng: np.random.Generator, pairs: list, n: int, crop: int) -> dict[str, torch.Tensor]:
    """n random crops (see the module docstring) as (n, 1, crop, crop) float32 tensors."""
    idx, ys, xs = [], [], []
    while len(idx) < n:
        i = int(rng.integers(len(pairs)))
        h, w = pairs[i].mask.shape
        if h < crop or w < crop:
            raise UsageError(f"training canvas {w}x{h} of {pairs[i].name} is smaller than the crop {crop}")
        for _ in range(50):
            y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
            if pairs[i].mask[y:y + crop, x:x + crop].mean() >= 0.2:
                break
        idx.append(i)
        ys.append(y)
        xs.append(x)
    return _tensor(pairs, idx, ys, xs, crop, rng)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


@torch.no_grad()
def evaluate(model: DualDenoiser, val: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """MSE (depth units^2, occupied pixels) of the rounded output and of the decoded input, per layer."""
    model.eval()
    acc = np.zeros(5)
    for b in val:
        n0, n1 = model(b["dec0"], b["dec1"], b["mask"], b["edge"])
        n0 = n0.round().clamp(0, 255)
        n1 = n1.round().clamp(0, 255)
        m = b["mask"]
        acc += [float(((n0 - b["true0"]) ** 2 * m).sum()), float(((n1 - b["true1"]) ** 2 * m).sum()),
                float(((b["dec0"] - b["true0"]) ** 2 * m).sum()), float(((b["dec1"] - b["true1"]) ** 2 * m).sum()),
                float(m.sum())]
    model.train()
    n = max(acc[4], 1.0)
    return {"val_mse_d0": acc[0] / n, "val_mse_d1": acc[1] / n, "val_mse_d0_decoded": acc[2] / n,
            "val_mse_d1_decoded": acc[3] / n}


def _lr(base: float, step: int, total: int) -> float:
    warm = min(1.0, (step + 1) / 30)
    return base * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0))))


def train_denoiser(cfg: DenoiseTrainConfig, pairs: list, checkpoint_dir: str | Path | None = None,
                   resume: bool = False, on_step: StepFn | None = None, threads: int | None = None):
    """Train both networks; returns (model in eval mode, summary with history and timings)."""

    if cfg.epochs < 2 or cfg.steps_per_epoch < 1 or cfg.batch_size < 1 or cfg.crop < 16:
        raise UsageError("epochs must be >= 2 (near, then far network), steps and batch size >= 1, crop >= 16")
    if not pairs:
        raise UsageError("no training pairs")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    val_rng = np.random.default_rng(cfg.seed + 1_000_003)
    val = [sample_batch(val_rng, pairs, 4, cfg.crop) for _ in range(max(1, cfg.val_crops // 4))]
    if cfg.init:
        model = load_denoiser(cfg.init)[0]
        if model.config.channels != cfg.channels:
            raise UsageError(f"{cfg.init}: its networks have {model.config.channels} channels, the training "
                             f"configuration {cfg.channels}")
    else:
        model = DualDenoiser(DenoiserConfig(channels=cfg.channels))
    near_epochs = cfg.epochs // 2
    opts = [torch.optim.Adam(model.near.parameters(), lr=cfg.lr), torch.optim.Adam(model.far.parameters(), lr=cfg.lr)]
    start, history, elapsed = 0, [], 0.0
    ckpt, state = open_checkpoint(checkpoint_dir, resume, asdict(cfg))
    if state is not None:
        model.load_state_dict(state["model"])
        for o, s in zip(opts, state["optims"]):
            o.load_state_dict(s)
        start, history, elapsed = state["epoch"], state["history"], state["elapsed"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
    total = cfg.epochs * cfg.steps_per_epoch
    model.train()
    for epoch in range(start, cfg.epochs):
        far = epoch >= near_epochs
        stage_epochs = (cfg.epochs - near_epochs) if far else near_epochs
        stage_start = (epoch - near_epochs) if far else epoch
        opt = opts[1] if far else opts[0]
        t0 = time.perf_counter()
        run = 0.0
        for s in range(cfg.steps_per_epoch):
            step = epoch * cfg.steps_per_epoch + s
            for g in opt.param_groups:
                g["lr"] = _lr(cfg.lr, stage_start * cfg.steps_per_epoch + s, stage_epochs * cfg.steps_per_epoch)
            b = sample_batch(rng, pairs, cfg.batch_size, cfg.crop)
            if not far:
                n0 = near_only(model, b["dec0"], b["mask"], b["edge"])
                loss = masked_mse(n0, b["true0"], b["mask"])
            else:
                n0, n1 = model(b["dec0"], b["dec1"], b["mask"], b["edge"])
                n0 = n0.detach()
                loss = (masked_mse(n1, b["true1"], b["mask"])
                        + cfg.gap_weight * masked_mse(n1 - n0, b["true1"] - b["true0"], b["mask"]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run += float(loss.detach())
            if on_step is not None:
                on_step({"epoch": epoch + 1, "step": step + 1, "total": total, "loss": float(loss.detach()),
                         "stage": "far" if far else "near"})
        metrics = evaluate(model, val)
        elapsed += time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "stage": "far" if far else "near",
                        "train_loss": run / cfg.steps_per_epoch, "seconds": round(elapsed, 1), **metrics})
        if on_step is not None:
            on_step({"epoch": epoch + 1, "step": (epoch + 1) * cfg.steps_per_epoch, "total": total,
                     "epoch_done": history[-1]})
        if ckpt is not None:
            save_checkpoint(ckpt, {"model": model.state_dict(), "optims": [o.state_dict() for o in opts],
                                   "epoch": epoch + 1, "history": history, "elapsed": elapsed,
                                   "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                                   "train_config": asdict(cfg)})
    model.eval()
    return model, {"history": history, "seconds": round(elapsed, 1),
                   "parameters": sum(p.numel() for p in model.parameters()), "train_config": asdict(cfg)}

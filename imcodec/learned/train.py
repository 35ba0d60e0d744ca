"""Training of the upsampling network on crops of voxelised clouds.

A training sample is a ``crop``^3 block cut around a random point of a cloud (real frames given
with ``data`` and/or synthetic shapes from :mod:`imcodec.synth`), turned by a random lattice symmetry
(axis permutation and flips); its input is a random subset of round(n / factor) of its n voxels and
its target the full block. The loss is binary cross-entropy between each candidate voxel's logit and
whether the voxel is in the target (PU-Dense's occupancy loss). A fixed, seeded set of validation
crops reports the precision of the top-k selection (k = factor x input voxels) after each epoch.

Checkpoints (model, optimiser, RNG states, history) are written after every epoch to
``checkpoint_dir/last.pt``; ``resume=True`` continues from there with identical results.
"""

from __future__ import annotations

import io
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imcodec.errors import InputError, UsageError
from imcodec.learned import functional as SF
from imcodec.learned.models import UpsamplerConfig, build_model, count_parameters
from imcodec.learned.sparse import coords_isin, resolve_device, sparse_tensor

StepFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (stored in checkpoints and weights meta)."""

    factor: int = 4
    data: tuple[str, ...] = ()
    synth: tuple[str, ...] = ("sphere", "torus", "box", "body")
    synth_bits: tuple[int, ...] = (10,)
    synth_share: float = 0.3  # fraction of crops drawn from the synthetic shapes
    epochs: int = 8
    steps_per_epoch: int = 200
    batch_size: int = 4
    crop: int = 64
    lr: float = 2e-3
    seed: int = 0
    val_crops: int = 16
    channels: tuple[int, ...] = (16, 32, 48, 64)
    head_channels: int = 16
    head_convs: int = 2
    extra: dict = field(default_factory=dict)

    def model_config(self) -> UpsamplerConfig:
        return UpsamplerConfig(factor=self.factor, channels=tuple(self.channels), head_channels=self.head_channels,
                               head_convs=self.head_convs)


# ------------------------------------------------------------------------------------------- data

def load_pool(cfg: TrainConfig) -> list[tuple[str, np.ndarray]]:
    """(name, (N, 3) int64 voxels) of every training cloud: the data files, then synthetic shapes."""
    from imcodec.io.ply import read_ply
    from imcodec.io.sequence import resolve_frames

    pool = []
    for spec in cfg.data:
        for fr in resolve_frames(spec, None, None):
            pts = read_ply(fr.path).points
            if not np.all(pts == np.rint(pts)):
                raise InputError(f"{fr.path}: training needs voxelised clouds (integer coordinates)")
            pool.append((str(fr.path), np.unique(pts.astype(np.int64), axis=0)))
    if cfg.synth:
        from imcodec.synth import make_cloud

        for i, shape in enumerate(cfg.synth):
            for bits in cfg.synth_bits:
                pc = make_cloud(shape, bits=bits, seed=cfg.seed + i)
                pool.append((f"synth:{shape}:{bits}:{cfg.seed + i}", pc.points.astype(np.int64)))
    if not pool:
        raise UsageError("no training data: give --data and/or keep the synthetic shapes")
    return pool


def sample_crop(rng: np.random.Generator, pts: np.ndarray, crop: int, factor: int,
                min_points: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One (input, target) pair of (n_in, 3) / (n, 3) int64 local voxels in 0..crop-1."""
    for _ in range(20):
        centre = pts[rng.integers(len(pts))]
        lo = centre - crop // 2 + rng.integers(-(crop // 4), crop // 4 + 1, size=3)
        rel = pts - lo
        target = rel[np.all((rel >= 0) & (rel < crop), axis=1)]
        if len(target) >= min_points:
            break
    perm = rng.permutation(3)
    target = target[:, perm]
    flips = rng.random(3) < 0.5
    target = np.where(flips, crop - 1 - target, target)
    n_in = max(1, int(round(len(target) / factor)))
    inputs = target[rng.choice(len(target), n_in, replace=False)]
    return inputs, target


def sampling_weights(pool: list[tuple[str, np.ndarray]], synth_share: float) -> np.ndarray:
    """Probability of drawing each cloud: ``synth_share`` for the synthetic ones (equally), the rest
    for the data files in proportion to sqrt(points); a group that is absent gives its share away."""
    synth = np.array([name.startswith("synth:") for name, _ in pool])
    size = np.array([len(p) for _, p in pool], dtype=np.float64) ** 0.5
    w = np.zeros(len(pool))
    share = synth_share if synth.any() and (~synth).any() else (1.0 if synth.all() else 0.0)
    if synth.any():
        w[synth] = share / synth.sum()
    if (~synth).any():
        w[~synth] = (1.0 - share) * size[~synth] / size[~synth].sum()
    return w / w.sum()


def make_batch(pairs: list[tuple[np.ndarray, np.ndarray]], device: torch.device):
    """Batched sparse input (ones features) and (M, 4) int32 target coordinates."""
    def stack(arrs):
        return torch.cat([torch.cat([torch.full((len(a), 1), b, dtype=torch.int64), torch.from_numpy(a)], 1)
                          for b, a in enumerate(arrs)]).to(device=device, dtype=torch.int32)
    inputs = stack([p[0] for p in pairs])
    targets = stack([p[1] for p in pairs])
    x = sparse_tensor(inputs, torch.ones(len(inputs), 1, device=device))
    return x, targets


def occupancy_loss(model, x, targets) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """(BCE loss, logits tensor, labels (M,) float) of the candidates against the target voxels."""
    out = model(x)
    labels = coords_isin(out.coords, targets).to(out.feats.dtype)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out.feats[:, 0], labels)
    return loss, out, labels


@torch.no_grad()
def evaluate(model, val: list[tuple[np.ndarray, np.ndarray]], factor: int, device) -> dict[str, float]:
    """Mean BCE and top-k precision/recall (k = factor x inputs, per crop) on fixed crops."""
    model.eval()
    losses, hits, chosen, total = [], 0, 0, 0
    for pair in val:
        x, targets = make_batch([pair], device)
        loss, out, labels = occupancy_loss(model, x, targets)
        losses.append(float(loss))
        keep = SF.topk_mask(out.feats[:, 0], factor * len(pair[0]))
        hits += int(labels[keep].sum())
        chosen += int(keep.sum())
        total += len(pair[1])
    model.train()
    return {"val_loss": float(np.mean(losses)), "val_precision": hits / max(chosen, 1),
            "val_recall": hits / max(total, 1)}


# -------------------------------------------------------------------------------------- training

def _lr(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up over 30 steps, then cosine decay to lr / 20."""
    warm = min(1.0, (step + 1) / 30)
    return cfg.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0))))


def open_checkpoint(checkpoint_dir: str | Path | None, resume: bool, train_config: dict) -> tuple[Path | None, dict | None]:
    """(``DIR/last.pt`` or None, its saved state when resuming, else None) for a training run.

    Creates the directory; with ``resume`` the checkpoint must exist and have been made with the same
    ``train_config`` (UsageError otherwise). Shared by every ``imcodec train`` command.
    """
    from imcodec.io.files import ensure_dir, read_bytes

    ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    if ckpt is not None:
        ensure_dir(checkpoint_dir)
    if not resume:
        return ckpt, None
    if ckpt is None or not ckpt.is_file():
        raise UsageError(f"--resume: no checkpoint at {ckpt}")
    try:
        state = torch.load(io.BytesIO(read_bytes(ckpt, "checkpoint")), map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise InputError(f"{ckpt}: not a readable training checkpoint "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(state, dict) or "train_config" not in state:
        raise InputError(f"{ckpt}: not a training checkpoint (no training settings in it; a weights file?)")
    digest = state.pop("digest", None)  # checkpoints from before digests load unchecked
    if digest is not None and digest != checkpoint_digest(state):
        raise InputError(f"{ckpt}: checkpoint is damaged (its contents do not match the digest saved with them)")
    if state["train_config"] != train_config:
        raise UsageError(f"{ckpt}: checkpoint was made with other training settings; "
                         f"use the same flags or another --checkpoint-dir")
    return ckpt, state


def checkpoint_digest(obj: Any) -> str:
    """SHA-256 (hex) of a training state: nested dicts, lists and tuples of tensors, arrays and plain
    values; tensors and arrays by dtype, shape and bytes. torch's zip reader checks no CRCs, so a
    flipped byte inside a tensor would otherwise resume silently."""
    import hashlib

    from imcodec.learned.zoo import tensor_bytes

    h = hashlib.sha256()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            h.update(b"{")
            for key in sorted(x, key=repr):
                h.update(f"{key!r}:".encode())
                walk(x[key])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[" if isinstance(x, list) else b"(")
            for item in x:
                walk(item)
            h.update(b"]")
        elif torch.is_tensor(x):
            h.update(f"T{x.dtype}{tuple(x.shape)};".encode())
            h.update(tensor_bytes(x))
        elif isinstance(x, np.ndarray):
            a = np.ascontiguousarray(x)
            h.update(f"A{a.dtype.str}{a.shape};".encode())
            h.update(a.tobytes())
        else:
            h.update(f"{x!r};".encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(ckpt: Path, state: dict) -> None:
    """Write a training state to ``ckpt`` atomically (torch.save format), with its
    :func:`checkpoint_digest`, which :func:`open_checkpoint` checks."""
    from imcodec.io.files import write_bytes_atomic

    buf = io.BytesIO()
    torch.save({**state, "digest": checkpoint_digest(state)}, buf)
    write_bytes_atomic(ckpt, buf.getvalue())


def train_upsampler(cfg: TrainConfig, device: str = "cpu", checkpoint_dir: str | Path | None = None,
                    resume: bool = False, on_step: StepFn | None = None, threads: int | None = None,
                    pool: list[tuple[str, np.ndarray]] | None = None):
    """Train; returns (model in eval mode, summary dict with history and timings)."""
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    if cfg.factor not in (2, 4, 8):
        raise UsageError(f"--factor must be 2, 4 or 8, got {cfg.factor}")
    if cfg.epochs < 1 or cfg.steps_per_epoch < 1 or cfg.batch_size < 1 or cfg.crop < 16:
        raise UsageError("epochs, steps per epoch and batch size must be >= 1 and crop >= 16")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pool = pool if pool is not None else load_pool(cfg)
    weights = sampling_weights(pool, cfg.synth_share)
    val_rng = np.random.default_rng(cfg.seed + 1_000_003)
    val = [sample_crop(val_rng, pool[i % len(pool)][1], cfg.crop, cfg.factor) for i in range(cfg.val_crops)]

    model = build_model(cfg.model_config()).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start_epoch, history, elapsed = 0, [], 0.0
    ckpt, state = open_checkpoint(checkpoint_dir, resume, _cfg_dict(cfg))
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        start_epoch, history, elapsed = state["epoch"], state["history"], state["elapsed"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])

    total = cfg.epochs * cfg.steps_per_epoch
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        run_loss = 0.0
        for s in range(cfg.steps_per_epoch):
            step = epoch * cfg.steps_per_epoch + s
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step, total)
            idx = rng.choice(len(pool), size=cfg.batch_size, p=weights)
            pairs = [sample_crop(rng, pool[i][1], cfg.crop, cfg.factor) for i in idx]
            x, targets = make_batch(pairs, dev)
            loss, _, _ = occupancy_loss(model, x, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run_loss += float(loss.detach())
            if on_step is not None:
                on_step({"epoch": epoch + 1, "step": step + 1, "total": total, "loss": float(loss.detach())})
        metrics = evaluate(model, val, cfg.factor, dev)
        elapsed += time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_loss": run_loss / cfg.steps_per_epoch,
                        "seconds": round(elapsed, 1), **metrics})
        if on_step is not None:
            on_step({"epoch": epoch + 1, "step": (epoch + 1) * cfg.steps_per_epoch, "total": total,
                     "epoch_done": history[-1]})
        if ckpt is not None:
            save_checkpoint(ckpt, {
                "model": model.state_dict(), "optim": opt.state_dict(), "epoch": epoch + 1,
                "history": history, "elapsed": elapsed, "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "train_config": _cfg_dict(cfg)})
    model.eval()
    summary = {"history": history, "seconds": round(elapsed, 1), "parameters": count_parameters(model),
               "pool": [name for name, _ in pool], "train_config": _cfg_dict(cfg)}
    return model, summary


def _cfg_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

"""Learned geometry artifact removal for decoded V-PCC clouds (sparse convolutions, CPU).

After Akhtar, Li, Van der Auwera, Li, Chen, "Video-based point cloud compression artifact removal",
IEEE Trans. Multimedia 2021: a sparse-convolution network looks at the decoded cloud, proposes every
voxel within one voxel (Chebyshev) of a decoded point and classifies each as occupied or not
(binary cross-entropy against the original cloud in training). The output keeps the
k = round(ratio x N) most probable candidates, N the decoded voxels and ``ratio`` the one that
maximised the mean D1 PSNR gain on the training frames at that rate (or over all rates for the
default model; :func:`imcodec.learned.train_restore.tune_keep_ratios`), so the tool both adds
missing surface and drops misplaced points.

The best ratio varies from frame to frame (on the training frames by up to 0.07 at one rate, worth
up to 0.5 dB), and only the encoder, which has the original, can find it: ``encode --restore-hint``
runs this network on its own reconstruction and on that reconstruction after the depth denoiser,
searches the ratio that maximises D1 for each (:func:`best_keep_ratio`) and sends both in the frame
component ``restore_ratio`` (2 x 2 bytes, per mille); ``decode --restore`` uses the one for its
path when present (:func:`hinted_ratio`).

The network is the PU-Dense-style U-Net of :mod:`imcodec.learned.models` with slim channels (its
generative 3^3 transposed convolution proposes the candidates); inference runs in spatial chunks
with a context margin (:func:`imcodec.learned.upsample.score_candidates`), so memory stays bounded.

Weights files have task "restore", the architecture config and a ``rate`` field ("all" for a model
trained across r1..r5, else the one rate it was trained for); ``meta.keep_ratio`` maps rates (and
"all") to the ratio above.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imcodec.errors import InputError, UsageError
from imcodec.learned.models import ARCH, PUDenseUpsampler, UpsamplerConfig, build_model
from imcodec.types import PointCloud

TASK = "restore"
RATES = ("r1", "r2", "r3", "r4", "r5")
RATIO_COMPONENT = "restore_ratio"
RATIO_RANGE = (500, 2000)  # per mille: the ratios a stream may carry


def restore_config(channels: tuple[int, ...] = (8, 16, 24, 32), head_channels: int = 8,
                   head_convs: int = 1) -> UpsamplerConfig:
    """Network config: generative kernel 3 (candidates within one voxel)."""
    return UpsamplerConfig(factor=2, channels=channels, gen_kernel=3, head_channels=head_channels,
                           head_convs=head_convs)


def weights_bytes(model: PUDenseUpsampler, rate: str, keep_ratio: dict[str, float],
                  meta: dict[str, Any] | None = None) -> bytes:
    """The model as an imcodec weights file (task "restore"; see :mod:`imcodec.learned.zoo`)."""
    from imcodec.learned.zoo import FORMAT, FORMAT_VERSION, payload_bytes

    meta = dict(meta or {})
    meta["keep_ratio"] = {k: float(v) for k, v in keep_ratio.items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "task": TASK, "arch": ARCH, "factor": 1,
               "rate": rate, "config": model.config.to_dict(),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "meta": json.loads(json.dumps(meta, default=str))}
    return payload_bytes(payload)


def shipped_restorer(rate: str | None) -> Path:
    """The packaged weights: ``restore_<rate>.pt`` when shipped, else the all-rate ``restore.pt``."""
    from imcodec.learned.zoo import WEIGHTS_DIR

    if rate is not None and (WEIGHTS_DIR / f"restore_{rate}.pt").is_file():
        return WEIGHTS_DIR / f"restore_{rate}.pt"
    path = WEIGHTS_DIR / "restore.pt"
    if not path.is_file():
        raise InputError(f"no shipped artifact-removal weights ({path} missing); train some with "
                         f"`imcodec train restore` and pass --weights FILE")
    return path


def load_restorer(rate: str | None = None, weights: str | os.PathLike | None = None
                  ) -> tuple[PUDenseUpsampler, dict[str, Any]]:
    """(model in eval mode, info) for ``rate`` (r1..r5 or None = any) from ``weights`` or the shipped
    file. InputError for weights of another tool, architecture or rate; UsageError for a bad rate."""
    from imcodec.learned.zoo import read_weights

    if rate is not None and rate not in RATES:
        raise UsageError(f"the restore rate must be one of {', '.join(RATES)}, got {rate!r}")
    path = Path(weights) if weights is not None else shipped_restorer(rate)
    payload = read_weights(path)
    if payload["task"] != TASK:
        raise InputError(f"{path}: weights are for task {payload['task']!r}, expected {TASK!r}")
    if payload["arch"] != ARCH:
        raise InputError(f"{path}: weights are for architecture {payload['arch']!r}, expected {ARCH!r}")
    trained = payload.get("rate")
    if trained not in (*RATES, "all"):
        raise InputError(f"{path}: weights file has no valid 'rate' field (got {trained!r})")
    if rate is not None and trained not in ("all", rate):
        raise InputError(f"{path}: weights were trained for rate {trained}, not {rate}")
    ratios = payload.get("meta", {}).get("keep_ratio", {})
    key = rate if rate in ratios else ("all" if "all" in ratios else trained)
    if key not in ratios:
        raise InputError(f"{path}: weights file lacks the keep ratio for rate {rate or trained}")
    try:
        model = build_model(UpsamplerConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: weights do not fit the {ARCH} architecture ({first})") from None
    model.eval()
    return model, {"weights": str(path), "rate": trained, "keep_ratio": float(ratios[key]),
                   "config": payload["config"], "meta": payload.get("meta", {})}


def restore_points(model: PUDenseUpsampler, points: np.ndarray, keep_ratio: float, chunk: int = 128,
                   margin: int = 16, progress=None, keep: int | None = None) -> np.ndarray:
    """The k most probable voxels around the voxelised cloud ``points`` ((N, 3) integer-valued,
    duplicates merged first): (k, 3) int64, k = ``keep`` when given, else round(keep_ratio x N)."""
    from imcodec.learned import functional as SF
    from imcodec.learned.upsample import score_candidates

    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"points must be (N, 3), got {pts.shape}")
    if len(pts) and not np.all(np.isfinite(pts)):
        raise InputError("points contain non-finite coordinates")
    if len(pts) and not np.all(pts == np.rint(pts)):
        raise InputError("artifact removal needs a voxelised cloud (integer coordinates)")
    if len(pts) and np.abs(pts).max() >= (1 << 19):
        raise InputError(f"coordinates too large for the voxel grid (max |c| = {np.abs(pts).max():g}, "
                         f"at most {(1 << 19) - 1})")
    pts = np.unique(np.rint(pts).astype(np.int64), axis=0)
    if len(pts) == 0:
        return pts.reshape(0, 3)
    cand, logit = score_candidates(model, pts, chunk, margin, progress=progress)
    k = int(keep) if keep is not None else int(round(keep_ratio * len(pts)))
    if k >= len(cand):
        return cand
    keep = SF.topk_mask(torch.from_numpy(logit), k).numpy()
    return cand[keep]


def restore_cloud(model: PUDenseUpsampler, info: dict[str, Any], cloud: PointCloud, rate: str | None = None,
                  threads: int | None = 2, progress=None, keep: int | None = None,
                  ratio: float | None = None) -> PointCloud:
    """The restored cloud (colours, if any, from the nearest decoded point): the weights' keep ratio
    (or ``ratio``, e.g. the stream's hint) x the decoded voxels, or ``keep`` points when given."""
    from imcodec.learned.upsample import nearest_colors

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        pts = restore_points(model, cloud.points, info["keep_ratio"] if ratio is None else ratio,
                             progress=progress, keep=keep)
    finally:
        torch.set_num_threads(before)
    colors = None
    if cloud.colors is not None:
        colors = nearest_colors(cloud.points, cloud.colors, pts.astype(np.float64))
    return PointCloud(points=pts.astype(np.float64), colors=colors, point_dtype=cloud.point_dtype)


def ratio_bytes(*ratios: float) -> bytes:
    """The ``restore_ratio`` component: keep ratios in per mille, uint16 big-endian each; the first
    for the plain reconstruction, an optional second for the depth-denoised one."""
    out = b""
    for ratio in ratios:
        value = int(round(ratio * 1000))
        if not RATIO_RANGE[0] <= value <= RATIO_RANGE[1]:
            raise UsageError(f"keep ratio must be within {RATIO_RANGE[0] / 1000}..{RATIO_RANGE[1] / 1000}, "
                             f"got {ratio}")
        out += value.to_bytes(2, "big")
    return out


def hinted_ratio(components: dict[str, bytes], denoised: bool = False) -> float | None:
    """The keep ratio a frame carries (component ``restore_ratio``) for the plain reconstruction, or
    with ``denoised`` for the depth-denoised one; None when the frame has none. BitstreamError when the
    component is damaged."""
    from imcodec.errors import BitstreamError

    data = components.get(RATIO_COMPONENT)
    if data is None:
        return None
    if len(data) not in (2, 4):
        raise BitstreamError(f"restore ratio component has {len(data)} bytes, expected 2 or 4")
    values = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    for value in values:
        if not RATIO_RANGE[0] <= value <= RATIO_RANGE[1]:
            raise BitstreamError(f"restore ratio {value / 1000} is outside {RATIO_RANGE[0] / 1000}.."
                                 f"{RATIO_RANGE[1] / 1000}")
    if denoised:
        return values[1] / 1000 if len(values) == 2 else None
    return values[0] / 1000


def d1_scorer(original: np.ndarray):
    """``d1(points) -> float``: the symmetric D1 PSNR (peak 1023, pc_error's definition via
    :func:`imcodec.metrics.psnr.compute_metrics`) of voxels against ``original``. D1 needs no
    normals, so given ones spare the estimate D2 would make."""
    from imcodec.metrics.psnr import compute_metrics

    ref = PointCloud(np.unique(np.asarray(original), axis=0).astype(np.float64), None)
    flat = np.zeros((len(ref), 3), np.float32)
    return lambda pts: compute_metrics(ref, PointCloud(np.asarray(pts, np.float64), None), 1023.0,
                                       normals_a=flat)["d1_psnr"]


def best_keep_ratio(model: PUDenseUpsampler, decoded: np.ndarray, original: np.ndarray,
                    chunk: int = 128, margin: int = 16) -> dict[str, Any]:
    """The keep ratio (per-mille steps, 0.9..1.3) that maximises D1 PSNR of the restored ``decoded``
    voxels against ``original``: the network runs once; ratios 0.05 apart first, then 0.01 apart
    within 0.04 of the best, then 0.005 either side (19 D1 evaluations; the gain was unimodal in the
    ratio on every frame we looked at). Returns ratio, gain_db (over the decoded voxels) and
    evaluations."""
    from imcodec.learned import functional as SF
    from imcodec.learned.upsample import score_candidates

    dec = np.unique(np.rint(np.asarray(decoded)).astype(np.int64), axis=0)
    if len(dec) == 0 or len(original) == 0:
        return {"ratio": 1.0, "gain_db": 0.0, "evaluations": 0}
    d1 = d1_scorer(original)
    base = d1(dec)
    cand, logit = score_candidates(model, dec, chunk, margin)
    scores = torch.from_numpy(logit)
    seen: dict[int, float] = {}

    def gain(permille: int) -> float:
        if permille not in seen:
            k = int(round(permille / 1000 * len(dec)))
            pts = cand if k >= len(cand) else cand[SF.topk_mask(scores, k).numpy()]
            seen[permille] = d1(pts) - base
        return seen[permille]

    best = max(range(900, 1301, 50), key=gain)
    best = max((v for v in range(best - 40, best + 41, 10) if 900 <= v <= 1300), key=gain)
    best = max((v for v in (best - 5, best, best + 5) if 900 <= v <= 1300), key=gain)
    return {"ratio": best / 1000, "gain_db": float(seen[best]), "evaluations": len(seen)}

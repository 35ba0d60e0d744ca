"""Learned geometry artifact removal for decoded V-PCC clouds (sparse convolutions, CPU).

After Akhtar, Li, Van der Auwera, Li, Chen, "Video-based point cloud compression artifact removal",
IEEE Trans. Multimedia 2021: a sparse-convolution network looks at the decoded cloud, proposes every
voxel within one voxel (Chebyshev) of a decoded point and classifies each as occupied or not
(binary cross-entropy against the original cloud in training). Each candidate's logit is then
shifted by the support of its neighbours' logits, across and along the local surface normal
(:mod:`imcodec.learned.keep`), and the output keeps the k = round(ratio x N^a x E^(1-a))
best-scoring candidates, N the decoded voxels and E the network's expected count of occupied
candidates (the sum of their sigmoid probabilities; :func:`imcodec.learned.keep.keep_count`);
``ratio``, the exponent ``a`` and the two support weights are the ones that maximised the mean D1
PSNR gain on the training frames at that rate (or over all rates for the default model;
:func:`imcodec.learned.train_restore.tune_keep_ratios`), so the tool both adds missing surface and
drops misplaced points.

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
"all") to the ratio above, ``meta.keep_exponent`` to the exponent ``a`` (absent in older files:
1, the count follows N alone) and ``meta.support`` to the (tangent, normal) support weights (absent
in older files: no rescoring). A ratio sent by ``encode --restore-hint`` is always per decoded voxel
(exponent 1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imcodec.errors import InputError, UsageError
from imcodec.learned.keep import (
    D1Curve,
    d1_psnr,
    expected_count,
    keep_count,
    ranking,
    rescore,
    support_terms,
    top_k,
)
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
                  meta: dict[str, Any] | None = None,
                  support: dict[str, tuple[float, float]] | None = None,
                  exponent: dict[str, float] | None = None) -> bytes:
    """The model as an imcodec weights file (task "restore"; see :mod:`imcodec.learned.zoo`);
    ``support`` maps rates to the (tangent, normal) weights of :mod:`imcodec.learned.keep`,
    ``exponent`` to the keep-count exponent (:func:`imcodec.learned.keep.keep_count`)."""
    from imcodec.learned.zoo import FORMAT, FORMAT_VERSION, payload_bytes

    meta = dict(meta or {})
    meta["keep_ratio"] = {k: float(v) for k, v in keep_ratio.items()}
    if support:
        meta["support"] = {k: [float(v[0]), float(v[1])] for k, v in support.items()}
    if exponent:
        meta["keep_exponent"] = {k: float(v) for k, v in exponent.items()}
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
    support = payload.get("meta", {}).get("support", {}).get(key, (0.0, 0.0))
    try:
        support = (float(support[0]), float(support[1]))
    except (TypeError, ValueError, IndexError):
        raise InputError(f"{path}: weights file has a malformed support entry for rate {key}: {support!r}") from None
    exponent = payload.get("meta", {}).get("keep_exponent", {}).get(key, 1.0)
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or not 0.0 <= exponent <= 1.0:
        raise InputError(f"{path}: weights file has a malformed keep exponent for rate {key}: {exponent!r} "
                         f"(expected a number within 0..1)")
    model.eval()
    return model, {"weights": str(path), "rate": trained, "keep_ratio": float(ratios[key]),
                   "keep_exponent": float(exponent), "support": support,
                   "config": payload["config"], "meta": payload.get("meta", {})}


def restore_points(model: PUDenseUpsampler, points: np.ndarray, keep_ratio: float, chunk: int = 128,
                   margin: int = 16, progress=None, keep: int | None = None,
                   support: tuple[float, float] = (0.0, 0.0), exponent: float = 1.0) -> np.ndarray:
    """The k best-scoring voxels around the voxelised cloud ``points`` ((N, 3) integer-valued,
    duplicates merged first): (k, 3) int64, k = ``keep`` when given, else
    :func:`imcodec.learned.keep.keep_count` of N, the network's expected count, ``keep_ratio`` and
    ``exponent`` (exponent 1: round(keep_ratio x N)). Scores are the network's logits shifted by the
    neighbour support terms with ``support`` weights (:func:`imcodec.learned.keep.rescore`)."""

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
    cand, scores, expected = candidate_scores(model, pts, support, chunk, margin, progress)
    k = int(keep) if keep is not None else keep_count(len(pts), expected, keep_ratio, exponent)
    if k >= len(cand):
        return cand
    return cand[top_k(scores, k)]


def candidate_scores(model: PUDenseUpsampler, voxels: np.ndarray, support: tuple[float, float] = (0.0, 0.0),
                     chunk: int = 128, margin: int = 16, progress=None) -> tuple[np.ndarray, np.ndarray, float]:
    """(candidates (M, 3) int64, their scores (M,) float32, the network's expected count of occupied
    candidates) around unique voxels: scores are the network logits plus the ``support`` terms
    (:mod:`imcodec.learned.keep`), the count is over the plain logits."""
    from imcodec.learned.upsample import score_candidates

    cand, logit = score_candidates(model, voxels, chunk, margin, progress=progress)
    expected = expected_count(logit)
    if support[0] == 0.0 and support[1] == 0.0:
        return cand, logit, expected
    return cand, rescore(logit, support_terms(cand, logit), support), expected


def restore_cloud(model: PUDenseUpsampler, info: dict[str, Any], cloud: PointCloud, rate: str | None = None,
                  threads: int | None = 2, progress=None, keep: int | None = None,
                  ratio: float | None = None) -> PointCloud:
    """The restored cloud (colours, if any, from the nearest decoded point): the weights' keep count
    (their ratio and exponent, :func:`imcodec.learned.keep.keep_count`), or ``ratio`` (e.g. the
    stream's hint) x the decoded voxels, or ``keep`` points when given."""
    from imcodec.learned.upsample import nearest_colors

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        pts = restore_points(model, cloud.points, info["keep_ratio"] if ratio is None else ratio,
                             progress=progress, keep=keep, support=info.get("support", (0.0, 0.0)),
                             exponent=info.get("keep_exponent", 1.0) if ratio is None else 1.0)
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


HINT_RATIOS = (850, 1400)  # per mille: the range best_keep_ratio searches


def best_keep_ratio(model: PUDenseUpsampler, decoded: np.ndarray, original: np.ndarray,
                    chunk: int = 128, margin: int = 16,
                    support: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    """The keep ratio (per-mille steps, 0.85..1.4) that maximises D1 PSNR of the restored ``decoded``
    voxels against ``original``: the network runs once, and :class:`imcodec.learned.keep.D1Curve`
    gives D1 at every per-mille ratio at once. ``support`` as in :func:`restore_points`. Returns
    ratio, gain_db (over the decoded voxels) and evaluations (ratios compared)."""
    dec = np.unique(np.rint(np.asarray(decoded)).astype(np.int64), axis=0)
    if len(dec) == 0 or len(original) == 0:
        return {"ratio": 1.0, "gain_db": 0.0, "evaluations": 0}
    base = d1_psnr(dec, original)
    cand, scores, _ = candidate_scores(model, dec, support, chunk, margin)
    permille = np.arange(HINT_RATIOS[0], HINT_RATIOS[1] + 1)
    ks = np.minimum(np.rint(permille / 1000 * len(dec)).astype(np.int64), len(cand))
    ks = np.maximum(ks, 1)
    psnr = D1Curve(original, cand).psnr(ranking(scores), ks)
    best = int(np.argmax(psnr))
    return {"ratio": int(permille[best]) / 1000, "gain_db": float(psnr[best] - base), "evaluations": len(ks)}

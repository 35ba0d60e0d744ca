"""Chunked inference of the upsampling network on clouds of any size.

The voxel grid is cut into cubic chunks (``chunk`` voxels, a multiple of 8 so the network's
stride-2 levels see the same coarse cells as on the whole cloud). Each chunk runs the network on the
input voxels of the chunk plus a ``margin`` of context around it and keeps the candidate voxels that
fall inside the chunk, so every candidate is scored exactly once (chunks without input voxels but
within the generative kernel's reach of one are processed too). A chunk with more than
``max_points`` input voxels in its context is split in 8 (down to 32 voxels), which keeps memory
bounded for dense inputs. The k = factor x N most probable candidates over all chunks are returned
(all candidates when there are fewer than k: the documented exception to "exactly factor x N").
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from imcodec.errors import InputError
from imcodec.learned import functional as SF
from imcodec.learned.models import PUDenseUpsampler
from imcodec.learned.sparse import sparse_tensor

ALIGN = 8  # 2^(levels - 1) of the default network; chunk origins are multiples of it
ProgressFn = Callable[[int, int], None]


def _cells(local: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Sort points by chunk cell: (order, cell ids, unique cells (M, 3), cell -> (start, end))."""
    cell = local // size
    dims = cell.max(axis=0) + 3
    cid = ((cell[:, 0] + 1) * dims[1] + (cell[:, 1] + 1)) * dims[2] + (cell[:, 2] + 1)
    order = np.argsort(cid, kind="stable")
    sid = cid[order]
    uniq, start = np.unique(sid, return_index=True)
    end = np.append(start[1:], len(sid))
    table = {int(u): (int(s), int(e)) for u, s, e in zip(uniq, start, end)}
    cells = cell[order][start]
    return order, dims, cells, table


def _candidate_cells(local: np.ndarray, size: int, reach: int) -> np.ndarray:
    """(M, 3) chunk cells that can hold a candidate: those meeting the box p +- reach of any point."""
    corners = np.array(list(itertools.product((-reach, reach), repeat=3)), dtype=np.int64)
    c = ((local[:, None, :] + corners[None]) // size).reshape(-1, 3) + 1  # >= 0
    d = int(c.max()) + 1
    ids = np.unique((c[:, 0] * d + c[:, 1]) * d + c[:, 2])
    return np.stack([ids // (d * d), (ids // d) % d, ids % d], axis=1) - 1


def _context(local, order, dims, table, cell, size, margin):
    """Rows of ``local`` inside the cell's box grown by ``margin`` (neighbour cells when margin > 0)."""
    reach = -(-margin // size)
    parts = []
    for dx in range(-reach, reach + 1):
        for dy in range(-reach, reach + 1):
            for dz in range(-reach, reach + 1):
                c = cell + (dx, dy, dz)
                if (c < -1).any() or (c + 1 >= dims).any():
                    continue
                key = int(((c[0] + 1) * dims[1] + (c[1] + 1)) * dims[2] + (c[2] + 1))
                if key in table:
                    s, e = table[key]
                    parts.append(order[s:e])
    rows = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    lo = cell * size - margin
    hi = cell * size + size + margin
    p = local[rows]
    inside = np.all((p >= lo) & (p < hi), axis=1)
    return rows[inside]


@torch.inference_mode()
def _score_box(model: PUDenseUpsampler, pts: np.ndarray, origin: np.ndarray, lo: np.ndarray, size: int,
               backend: str, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (M, 3) int64 inside [lo, lo + size) and their logits, from input voxels ``pts``."""
    rel = torch.from_numpy(pts - origin).to(device)
    x = sparse_tensor(rel, torch.ones(len(pts), 1, device=device), backend=backend)
    out = model(x)
    c = out.coords[:, 1:].to(torch.int64)
    a = torch.from_numpy(lo - origin).to(device)
    keep = ((c >= a) & (c < a + size)).all(dim=1)
    cand = (c[keep].cpu().numpy() + origin).astype(np.int64)
    return cand, out.feats[keep, 0].float().cpu().numpy()


def score_candidates(model: PUDenseUpsampler, points: np.ndarray, chunk: int = 256, margin: int = 16,
                     max_points: int = 400_000, backend: str = "torch", device: torch.device | str = "cpu",
                     progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate voxel (M, 3) int64 with its occupancy logit (M,) float32, chunk by chunk.

    points: (N, 3) integer voxel coordinates, unique.
    """
    if chunk < 32 or chunk % ALIGN or margin < 0 or margin % ALIGN:
        raise ValueError(f"chunk must be a multiple of {ALIGN} >= 32 and margin a multiple of {ALIGN} "
                         f"(got chunk={chunk}, margin={margin})")
    device = torch.device(device)
    pts = np.ascontiguousarray(points, dtype=np.int64)
    if len(pts) == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.float32)
    reach = model.config.kernel // 2  # candidates lie within this Chebyshev distance of an input voxel
    if margin < reach:
        raise ValueError(f"margin {margin} is smaller than the generative kernel radius {reach}")
    shift = (pts.min(axis=0) - reach) // ALIGN * ALIGN  # local coordinates >= reach
    local = pts - shift
    order, dims, _, table = _cells(local, chunk)
    work = [(c * chunk, chunk, _context(local, order, dims, table, c, chunk, margin))
            for c in _candidate_cells(local, chunk, reach)]
    total, done = len(work), 0
    out_c, out_l = [], []
    while work:
        lo, size, rows = work.pop()
        if len(rows) > max_points and size >= 64:
            half = size // 2
            sub = local[rows]
            for corner in np.ndindex(2, 2, 2):
                slo = lo + np.array(corner) * half
                inside = np.all((sub >= slo - margin) & (sub < slo + half + margin), axis=1)
                near = np.all((sub >= slo - reach) & (sub < slo + half + reach), axis=1)
                if near.any():
                    work.append((slo, half, rows[inside]))
                    total += 1
            total -= 1
            continue
        if len(rows):
            origin = lo - margin
            cand, logit = _score_box(model, local[rows], origin, lo, size, backend, device)
            out_c.append(cand)
            out_l.append(logit)
        done += 1
        if progress is not None:
            progress(done, total)
    cand = np.concatenate(out_c) + shift
    return cand, np.concatenate(out_l)


def _pack(p: np.ndarray) -> np.ndarray:
    q = p + (1 << 20)
    return (q[:, 0] << 42) | (q[:, 1] << 21) | q[:, 2]


# Lattice symmetries for test-time augmentation: (axis permutation, sign per axis).
_VIEWS = [((0, 1, 2), (1, 1, 1)), ((1, 2, 0), (-1, 1, -1)), ((2, 0, 1), (1, -1, -1)), ((0, 2, 1), (-1, -1, 1))]


def _averaged_scores(model, pts, views, chunk, margin, backend, device, progress):
    """Candidates and their logits averaged over ``views`` lattice symmetries of the input."""
    total = None
    for v, (perm, sign) in enumerate(views):
        sgn = np.array(sign)
        def step(done, n, v=v):
            if progress is not None:
                progress(v * n + done, len(views) * n)
        cand, logit = score_candidates(model, pts[:, perm] * sgn, chunk, margin, backend=backend,
                                       device=device, progress=step)
        back = np.empty_like(cand)
        back[:, perm] = cand * sgn  # undo: column perm[i] of the original holds column i of the view
        order = np.argsort(_pack(back), kind="stable")
        if total is None:
            ref, total = back[order], logit[order].astype(np.float64)
        else:
            if not np.array_equal(back[order], ref):
                raise RuntimeError("test-time views proposed different candidates")
            total += logit[order]
    return ref, (total / len(views)).astype(np.float32)


def upsample_points(model: PUDenseUpsampler, points: np.ndarray, factor: int, chunk: int = 256,
                    margin: int = 16, backend: str = "torch", device: torch.device | str = "cpu",
                    progress: ProgressFn | None = None, keep_input: bool = True, views: int = 1) -> np.ndarray:
    """The k = factor x N most probable voxels around ``points`` (N, 3): (k, 3) int64.

    Input coordinates must be integers (a voxelised cloud); duplicates are merged first. With
    ``keep_input`` the input voxels (points of the cloud, hence occupied) are always among the k.
    ``views`` > 1 (up to 4) averages the logits over that many rotated/mirrored copies of the input
    (test-time augmentation: ``views`` times the work).
    """
    if not 1 <= views <= len(_VIEWS):
        raise InputError(f"views must be 1..{len(_VIEWS)}, got {views}")
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"points must be (N, 3), got {pts.shape}")
    if len(pts) and not np.all(np.isfinite(pts)):
        raise InputError("points contain non-finite coordinates")
    if len(pts) and not np.all(pts == np.rint(pts)):
        raise InputError("upsampling needs a voxelised cloud (integer coordinates); "
                         "quantise it first (e.g. round to the grid)")
    if len(pts) and np.abs(pts).max() >= (1 << 19):
        raise InputError(f"coordinates too large for the voxel grid (max |c| = {np.abs(pts).max():g}, "
                         f"at most {(1 << 19) - 1})")
    pts = np.unique(np.rint(pts).astype(np.int64), axis=0)
    if views == 1:
        cand, logit = score_candidates(model, pts, chunk, margin, backend=backend, device=device,
                                       progress=progress)
    else:
        cand, logit = _averaged_scores(model, pts, _VIEWS[:views], chunk, margin, backend, device, progress)
    k = factor * len(pts)
    if k >= len(cand):
        return cand
    if keep_input:
        logit = np.where(np.isin(_pack(cand), _pack(pts)), np.float32(np.inf), logit)
    keep = SF.topk_mask(torch.from_numpy(logit), k).numpy()
    return cand[keep]


def nearest_colors(src_points: np.ndarray, src_colors: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """Colour of the nearest source point for each destination point: (M, 3) of src_colors.dtype."""
    from scipy.spatial import cKDTree

    if len(dst_points) == 0 or len(src_points) == 0:
        return np.zeros((len(dst_points), 3), dtype=src_colors.dtype)
    _, idx = cKDTree(src_points).query(dst_points, k=1, workers=2)
    return src_colors[idx]

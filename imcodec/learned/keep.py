"""Which restore candidates to keep: neighbour-support rescoring and the D1 PSNR of every top-k at once.

The restore network (:mod:`imcodec.learned.restore`) scores each candidate voxel on its own. Two
terms from the scores of a candidate's neighbours, weighted per rate, then shift its score:

- **tangent support**: the mean logit of the four neighbours across the local surface normal (the
  two axes other than the normal's dominant one; missing neighbours count as ``MISSING_LOGIT``). A
  candidate inside a confident sheet gains, an isolated one loses.
- **normal support**: the higher logit of the two neighbours along the normal's dominant axis. Where
  the network is unsure at which of two depths the surface lies, keeping both costs D1 less than
  guessing (the original surface is within a voxel of either).

``score = logit + tangent_weight x tangent + normal_weight x normal``; with both weights 0 it is the
network's logit. On the training frames at r1 they moved D1 by +0.1 (basketball) to +0.26 dB
(soldier); at r5 they did not help, so the tuned weights differ by rate
(:func:`imcodec.learned.train_restore.tune_keep_ratios`).

Normals come from :func:`imcodec.vpcc.segment.estimate_normals_grid` over the candidates themselves
(a three-voxel-thick shell around the decoded surface, whose principal axes are the surface's).

How many to keep: :func:`keep_count`, from the decoded voxel count and the network's expected count
of occupied candidates (:func:`expected_count`), with a per-rate ratio and exponent.

:class:`D1Curve` gives the D1 PSNR of the best ``k`` candidates for many ``k`` from one neighbour
search, instead of one full metric run per ``k``: restored -> original distances do not depend on
the other kept voxels, so they are a running sum in score order; for original -> restored each
original point's error only drops when one of its ``NEIGHBOURS`` nearest candidates is first kept,
so the error over ``k`` is a sum of steps (points with no kept candidate among those get a wider
search). Equal to :func:`imcodec.metrics.psnr.compute_metrics` on the kept voxels (tests compare
them); for one 800k-point frame and 2.6M candidates, about 8 s to set up and 1-2 s per ranking for
any number of k, where compute_metrics takes about 2.5 s per k.
"""

from __future__ import annotations

import numpy as np

MISSING_LOGIT = -10.0  # the score a neighbour that is not a candidate counts with
NEIGHBOURS = 32
PEAK = 1023.0


def _keys(local: np.ndarray) -> np.ndarray:
    return (local[:, 0] << 42) | (local[:, 1] << 21) | local[:, 2]


def support_terms(cand: np.ndarray, logit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tangent, normal) support of each candidate (both (M,) float32); see the module docstring."""
    from imcodec.vpcc.segment import estimate_normals_grid

    m = len(cand)
    if m == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    local = np.asarray(cand, np.int64) - np.asarray(cand, np.int64).min(axis=0) + 1
    axis = np.abs(estimate_normals_grid(local)).argmax(axis=1)
    keys = _keys(local)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    scores = np.asarray(logit, np.float32)

    def neighbour(rows: np.ndarray, dim: int, step: int) -> np.ndarray:
        q = local[rows].copy()
        q[:, dim] += step
        k = _keys(q)
        at = np.minimum(np.searchsorted(sorted_keys, k), m - 1)
        hit = sorted_keys[at] == k
        return np.where(hit, scores[order[at]], np.float32(MISSING_LOGIT))

    tangent = np.zeros(m, np.float32)
    normal = np.zeros(m, np.float32)
    for a in range(3):
        rows = np.flatnonzero(axis == a)
        if len(rows) == 0:
            continue
        normal[rows] = np.maximum(neighbour(rows, a, -1), neighbour(rows, a, 1))
        side = [neighbour(rows, b, s) for b in range(3) if b != a for s in (-1, 1)]
        tangent[rows] = np.mean(side, axis=0)
    return tangent, normal


def rescore(logit: np.ndarray, terms: tuple[np.ndarray, np.ndarray] | None,
            weights: tuple[float, float]) -> np.ndarray:
    """logit + tangent_weight x tangent + normal_weight x normal ((M,) float32)."""
    tw, nw = float(weights[0]), float(weights[1])
    out = np.asarray(logit, np.float32)
    if terms is None or (tw == 0.0 and nw == 0.0):
        return out
    return (out + np.float32(tw) * terms[0] + np.float32(nw) * terms[1]).astype(np.float32)


def expected_count(logit: np.ndarray) -> float:
    """The network's expected number of occupied candidates: the sum of sigmoid(logit)."""
    x = np.asarray(logit, np.float64)
    return float(np.sum(0.5 * (1.0 + np.tanh(0.5 * x)))) if len(x) else 0.0


def keep_count(n: int, expected: float, ratio: float, exponent: float = 1.0) -> int:
    """How many candidates to keep: round(ratio x n^exponent x expected^(1 - exponent)).

    n: the decoded voxels; expected: :func:`expected_count` of the network's logits. With exponent 1
    the count follows the decoded voxels alone (what every weights file before ``keep_exponent`` did).
    Lower exponents let the count follow the network's own estimate of how much surface there is:
    on the training frames the best count per decoded voxel differed between soldier and basketball
    by 0.05-0.07 at r3..r5, while per expected count it differed by 0.01-0.03 (see
    :func:`imcodec.learned.train_restore.tune_keep_ratios`, which picks the exponent per rate).
    """
    if n <= 0:
        return 0
    if not 0.0 <= exponent <= 1.0:
        raise ValueError(f"keep exponent must be within 0..1, got {exponent}")
    base = float(n) if exponent == 1.0 else float(n) ** exponent * max(expected, 1.0) ** (1.0 - exponent)
    return int(round(ratio * base))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` highest scores (ties broken by index, as in :func:`ranking`)."""
    mask = np.zeros(len(scores), bool)
    mask[ranking(scores)[:max(0, min(int(k), len(scores)))]] = True
    return mask


def ranking(scores: np.ndarray) -> np.ndarray:
    """Candidate indices, best score first (stable: equal scores keep index order)."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable")


class D1Curve:
    """D1 PSNR of the ``k`` best candidates against ``original``, for any ``k``, after one search.

    ``D1Curve(original, cand)`` runs the neighbour searches; ``psnr(order, ks)`` then costs one pass
    over the original points per ranking ``order`` (indices of ``cand``, best first). An original
    point none of whose ``neighbours`` nearest candidates is among the best ``min(ks)`` gets a wider
    search (up to ``WIDEST`` candidates), and at a k still below all of those, a direct search among
    the kept voxels; so the curve is exact for every k asked.
    """

    WIDEST = 4096

    def __init__(self, original: np.ndarray, cand: np.ndarray, neighbours: int = NEIGHBOURS,
                 workers: int = 2):
        from scipy.spatial import cKDTree

        ref = np.unique(np.rint(np.asarray(original)).astype(np.int64), axis=0).astype(np.float64)
        cand = np.asarray(cand, np.float64)
        self.n_ref, self.m, self.workers = len(ref), len(cand), workers
        if self.n_ref == 0 or self.m == 0:
            raise ValueError("D1 curve needs original points and candidates")
        self.ref = ref
        self.to_ref = cKDTree(ref).query(cand, workers=workers)[0] ** 2  # (M,) candidate -> original
        self.tree = cKDTree(cand)
        self.dist2, self.idx = self._nearest(np.arange(self.n_ref), min(neighbours, self.m))

    def _nearest(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, idx = self.tree.query(self.ref[rows], k=k, workers=self.workers)
        dist2 = np.rint(dist.reshape(len(rows), k) ** 2).astype(np.float32)  # integer voxels
        return dist2, idx.reshape(len(rows), k).astype(np.int32)

    @staticmethod
    def _steps(dist2: np.ndarray, ranks: np.ndarray, m: int) -> tuple[float, np.ndarray]:
        """(sum of the starting errors, change of the summed error at each k) for original points
        with these nearest candidates (nearest first) and their ranks."""
        best = np.minimum.accumulate(ranks, axis=1)
        new = np.ones_like(best, bool)
        new[:, 1:] = best[:, 1:] < best[:, :-1]
        # walking k upwards, an original point's error drops to dist2[j] once rank best[j] is kept
        # (j a new running minimum); before any of its candidates is kept it counts the farthest of them
        floor = dist2[:, -1].astype(np.float64)
        row, col = np.nonzero(new)  # row-major: within a row, j ascending = later in k first
        value = dist2[row, col].astype(np.float64)
        before = floor[row]  # the error just before this drop: the next drop's value in j order
        same = row[:-1] == row[1:]
        before[:-1][same] = value[1:][same]
        delta = np.bincount(best[row, col] + 1, weights=value - before, minlength=m + 1)
        return float(floor.sum()), delta

    def mse(self, order: np.ndarray, ks) -> tuple[np.ndarray, np.ndarray]:
        """(original -> kept, kept -> original) mean squared errors for each k in ``ks``."""
        from scipy.spatial import cKDTree

        ks = np.asarray(ks, np.int64)
        if len(ks) == 0 or np.any(ks < 1) or np.any(ks > self.m):
            raise ValueError(f"k must be within 1..{self.m}")
        order = np.asarray(order, np.int64)
        rank = np.empty(self.m, np.int32)
        rank[order] = np.arange(self.m, dtype=np.int32)
        ranks = rank[self.idx]
        far = np.flatnonzero(ranks.min(axis=1) >= ks.min())
        near = np.ones(self.n_ref, bool)
        near[far] = False
        start, delta = self._steps(self.dist2[near], ranks[near], self.m)
        width = self.dist2.shape[1]
        lone, lone_floor, lone_rank = [], [], []  # unresolved even among WIDEST candidates
        while len(far):
            width = min(width * 8, self.WIDEST, self.m)
            dist2, idx = self._nearest(far, width)
            r = rank[idx]
            last = width >= min(self.WIDEST, self.m)
            done = np.ones(len(far), bool) if last else r.min(axis=1) < ks.min()
            s, d = self._steps(dist2[done], r[done], self.m)
            start, delta = start + s, delta + d
            if last:
                lone, lone_floor, lone_rank = far, dist2[:, -1].astype(np.float64), r.min(axis=1)
                break
            far = far[~done]
        fwd = (start + np.cumsum(delta))[ks]
        # below its nearest kept rank such a point counted the farthest of its WIDEST candidates;
        # for those k (tiny ones) its error comes from a direct search among the kept voxels
        for i, k in enumerate(ks):
            rows = np.flatnonzero(lone_rank >= k) if len(lone) else []
            if len(rows):
                dist = cKDTree(self.tree.data[order[:k]]).query(self.ref[lone[rows]], workers=self.workers)[0]
                fwd[i] += float(np.sum(np.rint(dist ** 2) - lone_floor[rows]))
        back = np.cumsum(self.to_ref[order])
        return fwd / self.n_ref, back[ks - 1] / ks

    def psnr(self, order: np.ndarray, ks) -> np.ndarray:
        """D1 PSNR (peak 1023, 10 log10(3 peak^2 / max of the two MSEs)) for each k in ``ks``."""
        fwd, back = self.mse(order, ks)
        worst = np.maximum(fwd, back)
        with np.errstate(divide="ignore"):
            return np.where(worst > 0, 10 * np.log10(3 * PEAK ** 2 / np.maximum(worst, 1e-300)), np.inf)


def d1_psnr(points: np.ndarray, original: np.ndarray) -> float:
    """D1 PSNR of voxels ``points`` against ``original`` (same definition as :class:`D1Curve`)."""
    from imcodec.metrics.psnr import compute_metrics
    from imcodec.types import PointCloud

    ref = PointCloud(np.unique(np.asarray(original), axis=0).astype(np.float64), None)
    flat = np.zeros((len(ref), 3), np.float32)
    return float(compute_metrics(ref, PointCloud(np.asarray(points, np.float64), None), PEAK,
                                 normals_a=flat)["d1_psnr"])

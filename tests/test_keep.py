"""Choosing restore candidates: neighbour-support rescoring and the all-k D1 curve (imcodec.learned.keep)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imcodec.learned.keep import MISSING_LOGIT, D1Curve, ranking, rescore, support_terms, top_k
from imcodec.metrics.psnr import compute_metrics
from imcodec.synth import make_cloud
from imcodec.types import PointCloud


def _shell(points: np.ndarray) -> np.ndarray:
    """Every voxel within one voxel (Chebyshev) of ``points``, as the restore network proposes."""
    offsets = np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T
    return np.unique((points[:, None, :] + offsets[None]).reshape(-1, 3), axis=0)


def _d1(ref: np.ndarray, pts: np.ndarray):
    m = compute_metrics(PointCloud(ref.astype(np.float64), None), PointCloud(pts.astype(np.float64), None), 1023.0)
    return m["a_to_b"]["d1_mse"], m["b_to_a"]["d1_mse"], m["d1_psnr"]


@pytest.mark.parametrize("seed", [0, 1])
def test_d1_curve_equals_pc_error_metrics_at_every_k_asked(seed):
    """The curve's two MSEs and PSNR equal compute_metrics on the kept voxels, for random rankings
    and for k small enough that many original points need the widened search."""
    rng = np.random.default_rng(seed)
    org = np.unique(make_cloud("sphere", bits=6, seed=seed).points.astype(np.int64), axis=0)
    noisy = org + rng.integers(-1, 2, size=org.shape) * (rng.random((len(org), 1)) < 0.4)
    cand = _shell(np.unique(noisy[rng.random(len(noisy)) > 0.3], axis=0))
    curve = D1Curve(org, cand)
    scores = rng.normal(size=len(cand)).astype(np.float32)
    order = ranking(scores)
    ks = [1, 7, len(org) // 10, len(org) // 2, len(org), 2 * len(org), len(cand)]
    fwd, back = curve.mse(order, ks)
    psnr = curve.psnr(order, ks)
    for i, k in enumerate(ks):
        a, b, p = _d1(org, cand[order[:k]])
        assert fwd[i] == pytest.approx(a, rel=1e-9) and back[i] == pytest.approx(b, rel=1e-9), k
        assert psnr[i] == pytest.approx(p, abs=1e-9), k
    assert np.array_equal(np.flatnonzero(top_k(scores, 50)), np.sort(order[:50]))
    with pytest.raises(ValueError):
        curve.mse(order, [0])
    with pytest.raises(ValueError):
        curve.mse(order, [len(cand) + 1])


def test_d1_curve_on_an_exact_copy_is_infinite():
    org = np.unique(make_cloud("torus", bits=5, seed=3).points.astype(np.int64), axis=0)
    cand = _shell(org)
    keep = np.isin(cand.view([("", cand.dtype)] * 3), org.view([("", org.dtype)] * 3)).ravel()
    scores = keep.astype(np.float32)  # the original voxels first
    assert np.isinf(D1Curve(org, cand).psnr(ranking(scores), [len(org)])[0])


def test_support_terms_on_a_plane_match_a_direct_count():
    """A z = 5 sheet of candidates (normal along z) plus its z = 6 neighbour layer: tangent support is
    the mean logit of the four in-plane neighbours (missing ones at MISSING_LOGIT), normal support
    the higher logit of the z -1 / +1 neighbours."""
    xs, ys = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    sheet = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 5)], axis=1)
    upper = sheet[(sheet[:, 0] >= 3) & (sheet[:, 0] < 9) & (sheet[:, 1] >= 3) & (sheet[:, 1] < 9)] + [0, 0, 1]
    cand = np.concatenate([sheet, upper]).astype(np.int64)
    rng = np.random.default_rng(0)
    logit = rng.normal(size=len(cand)).astype(np.float32)
    tangent, normal = support_terms(cand, logit)
    lookup = {tuple(c): v for c, v in zip(cand.tolist(), logit)}
    get = lambda c: lookup.get(tuple(c), MISSING_LOGIT)
    for i in rng.choice(len(sheet), 40, replace=False):  # interior and border cells of the sheet
        c = cand[i]
        side = [get(c + d) for d in ([1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0])]
        assert tangent[i] == pytest.approx(np.mean(side), abs=1e-5)
        assert normal[i] == pytest.approx(max(get(c + [0, 0, 1]), get(c + [0, 0, -1])), abs=1e-6)
    assert np.array_equal(rescore(logit, (tangent, normal), (0.0, 0.0)), logit)
    mixed = rescore(logit, (tangent, normal), (2.0, 0.5))
    assert np.allclose(mixed, logit + 2.0 * tangent + 0.5 * normal, atol=1e-5)


def test_restore_points_uses_the_weights_support(tmp_path):
    """Weights with support weights keep the top-k of the rescored logits; without, the top-k logits."""
    from imcodec.learned.models import build_model
    from imcodec.learned.restore import load_restorer, restore_config, restore_points, weights_bytes
    from imcodec.learned.upsample import score_candidates

    torch.manual_seed(2)
    model = build_model(restore_config((4, 8), head_channels=4, head_convs=0))
    (tmp_path / "s.pt").write_bytes(weights_bytes(model, "r2", {"r2": 1.05}, support={"r2": (1.0, 0.3)}))
    (tmp_path / "p.pt").write_bytes(weights_bytes(model, "r2", {"r2": 1.05}))
    m, info = load_restorer("r2", tmp_path / "s.pt")
    assert info["support"] == (1.0, 0.3) and load_restorer("r2", tmp_path / "p.pt")[1]["support"] == (0.0, 0.0)
    pts = np.unique(make_cloud("sphere", bits=6, seed=5).points.astype(np.int64), axis=0)
    cand, logit = score_candidates(m, pts, 128, 16)
    k = round(1.05 * len(pts))
    key = lambda a: set(map(tuple, a.tolist()))
    with_support = restore_points(m, pts, 1.05, support=info["support"])
    plain = restore_points(m, pts, 1.05)
    assert key(with_support) == key(cand[np.argsort(-(logit + 1.0 * support_terms(cand, logit)[0]
                                                       + 0.3 * support_terms(cand, logit)[1]), kind="stable")[:k]])
    assert key(plain) == key(cand[np.argsort(-logit, kind="stable")[:k]])
    assert key(with_support) != key(plain)

"""V-PCC patch generation: normals, segmentation, connected components, patch coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from imcodec.synth import make_cloud
from imcodec.vpcc.grid import components_26
from imcodec.vpcc.patches import PatchParams, generate_patches, patch_points
from imcodec.vpcc.segment import (
    PLANE_DIRS,
    estimate_normals,
    initial_segmentation,
    refine_segmentation,
)


def _body(bits=7, seed=3):
    pts = make_cloud("body", bits=bits, seed=seed).points.astype(np.int64)
    return pts - pts.min(axis=0)


def _sphere_shell(radius=20.0):
    g = np.arange(-int(radius) - 2, int(radius) + 3)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z)
    keep = np.abs(r - radius) < 0.5
    return np.stack([x[keep], y[keep], z[keep]], axis=1) + 30


def test_normals_of_a_sphere_point_outward():
    pts = _sphere_shell()
    n = estimate_normals(pts, k=16)
    radial = pts - pts.mean(axis=0)
    radial = radial / np.linalg.norm(radial, axis=1, keepdims=True)
    cos = np.sum(n * radial, axis=1)
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0)
    assert np.quantile(cos, 0.05) > 0.9  # outward and close to radial


def test_initial_segmentation_is_the_best_axis():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(200, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    lab = initial_segmentation(n)
    for i in range(len(n)):
        assert lab[i] == int(np.argmax([n[i] @ d for d in PLANE_DIRS]))


def test_refinement_removes_isolated_label_noise():
    # a flat square facing +z whose labels were randomly flipped for 10% of its points
    g = np.arange(40)
    x, y = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([x.ravel(), y.ravel(), np.full(x.size, 5)], axis=1)
    normals = np.tile([0.0, 0.3, 0.954], (len(pts), 1))
    rng = np.random.default_rng(1)
    labels = np.full(len(pts), 2, dtype=np.int64)
    flip = rng.random(len(pts)) < 0.1
    labels[flip] = 1
    out = refine_segmentation(pts, normals, labels, lam=3.0, iterations=5, grid=4)
    assert np.all(out == 2)
    assert np.array_equal(refine_segmentation(pts, normals, labels, iterations=0), labels)


def test_components_26_match_a_graph_reference():
    rng = np.random.default_rng(2)
    pts = np.unique(rng.integers(0, 12, size=(400, 3)), axis=0)
    labels = rng.integers(0, 2, size=len(pts)).astype(np.int64)
    got = components_26(np.ascontiguousarray(pts, dtype=np.int64), labels)
    diff = np.abs(pts[:, None, :] - pts[None, :, :]).max(axis=2)
    adj = (diff == 1) & (labels[:, None] == labels[None, :])
    i, j = np.nonzero(adj)
    _, ref = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(len(pts),) * 2), directed=False)
    # same partition: a bijection between component ids
    pairs = set(zip(got.tolist(), ref.tolist()))
    assert len(pairs) == len(set(got.tolist())) == len(set(ref.tolist()))


@pytest.mark.parametrize("fill", [True, False])
def test_lossless_patches_cover_every_point_exactly_once(fill):
    pts = _body()
    pset = generate_patches(pts, PatchParams(missed_dist2=0, max_rounds=64, min_points=16, fill=fill))
    rec = np.concatenate([patch_points(pset, fill), pset.raw])
    # every reconstructed point is an input point, none twice, and none is missing
    keys = rec[:, 0] * 1_000_000 + rec[:, 1] * 1000 + rec[:, 2]
    ref = pts[:, 0] * 1_000_000 + pts[:, 1] * 1000 + pts[:, 2]
    assert len(np.unique(keys)) == len(keys)
    assert np.array_equal(np.sort(keys), np.sort(ref))
    assert pset.count > 0
    assert np.all(pset.pix_d1 >= pset.pix_d0)
    assert np.all(pset.pix_d1 - pset.pix_d0 <= 4)
    assert np.all(pset.pix_d0 >= 0) and np.all(pset.pix_d0 <= 255)
    assert np.all((pset.pix_u >= 0) & (pset.pix_u < pset.su[pset.pix_patch]))
    assert np.all((pset.pix_v >= 0) & (pset.pix_v < pset.sv[pset.pix_patch]))


def test_lossy_patches_leave_no_point_far_away():
    pts = _body(bits=7, seed=5)
    params = PatchParams(missed_dist2=9, min_points=16)
    pset = generate_patches(pts, params)
    rec = np.concatenate([patch_points(pset), pset.raw])
    # brute force: distance of every input point to the nearest reconstructed point
    best = np.full(len(pts), np.inf)
    for start in range(0, len(pts), 512):
        d = ((pts[start:start + 512, None, :] - rec[None, :, :]) ** 2).sum(axis=2)
        best[start:start + 512] = d.min(axis=1)
    assert best.max() <= params.missed_dist2


def test_depth_range_is_limited_to_the_video_depth():
    # a steep staircase surface facing +x spanning 60 units of depth: with max_depth 20 it must be split
    y, z = np.meshgrid(np.arange(60), np.arange(10), indexing="ij")
    pts = np.stack([y.ravel(), y.ravel(), z.ravel()], axis=1)
    pset = generate_patches(pts, PatchParams(missed_dist2=0, max_depth=20, min_points=4, max_rounds=64))
    assert pset.count >= 2
    assert pset.pix_d1.max() <= 20
    rec = np.concatenate([patch_points(pset), pset.raw])
    assert len(np.unique(rec, axis=0)) == len(pts)


def test_empty_cloud_gives_no_patch():
    pset = generate_patches(np.zeros((0, 3), dtype=np.int64), PatchParams())
    assert pset.count == 0 and len(pset.raw) == 0

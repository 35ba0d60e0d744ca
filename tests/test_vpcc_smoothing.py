"""V-PCC geometry smoothing against brute-force centroids; encoder and decoder stay equal with it on."""

from __future__ import annotations

import numpy as np

from imcodec.codecs import get_codec
from imcodec.synth import make_cloud
from imcodec.vpcc.config import StreamParams, VpccConfig
from imcodec.vpcc.smoothing import boundary_mask, smooth_points


def test_smoothing_moves_selected_points_to_the_brute_force_centroid():
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 12, size=(300, 3))
    pts = np.concatenate([pts, pts[:20]])  # repeated points count once per copy
    sel = rng.random(len(pts)) < 0.3
    out = smooth_points(pts, sel, radius=2, weight=0.5)
    assert np.array_equal(out[~sel], pts[~sel].astype(float))
    for i in np.flatnonzero(sel):
        near = pts[np.abs(pts - pts[i]).max(axis=1) <= 2]
        want = pts[i] + 0.5 * (near.mean(axis=0) - pts[i])
        assert np.allclose(out[i], want)


def test_boundary_mask_marks_pixels_next_to_other_patches_or_holes():
    ys, xs = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    patch = np.where(xs < 3, 0, 1)
    edge = boundary_mask(ys, xs, patch, 5, 6)
    # inner pixels of patch 0: x in 1..1, y in 1..3 (x = 2 touches patch 1, borders touch empty pixels)
    want = ~((xs == 1) & (ys >= 1) & (ys <= 3) | (xs == 4) & (ys >= 1) & (ys <= 3))
    assert np.array_equal(edge, want)


def test_smoothing_round_trip():
    codec = get_codec("vpcc")
    cloud = make_cloud("body", bits=7, color=True, seed=4)
    cfg = VpccConfig(geometry_qp=32, smoothing_radius=2, threads=1, preset="fast")
    code = codec.encode_frame(cloud, cfg, {})
    dec = codec.decode_frame(code.components, codec.stream_params(cfg), {})
    assert np.array_equal(dec.points, code.recon.points)
    assert np.array_equal(dec.colors, code.recon.colors)
    assert np.any(dec.points != np.rint(dec.points))  # some boundary points moved off the grid
    sp = StreamParams.unpack(codec.stream_params(cfg))
    assert (sp.smooth_radius, sp.smooth_weight16, sp.smooth_all) == (2, 8, False)

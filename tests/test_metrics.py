"""pc_error-grade metrics (imcodec.metrics) against an independent brute-force O(N*M) computation.

The reference below re-implements pc_error 0.14 (--dropdups=2 --neighborsProc=1, averageNormals=1)
directly from its definition with dense distance matrices and Python loops: float32 coordinates,
lexicographic duplicate merging, equidistant neighbours (exact ties; 1e-8 chains for non-integer
clouds), normal transfer A->B, both directions, symmetric = worse. Closed forms check the PSNR.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from imcodec.errors import InputError
from imcodec.io.ply import write_ply
from imcodec.metrics.psnr import compute_metrics
from imcodec.types import PointCloud

PEAK = 1023.0
TOP_KEYS = {"d1_mse", "d1_psnr", "d2_mse", "d2_psnr", "y_psnr", "cb_psnr", "cr_psnr",
            "points_a", "points_b", "a_to_b", "b_to_a"}


# ------------------------------------------------------------------------ brute-force reference

def _bf_merge(points, colors=None, normals=None):
    """pc_error dropdups=2: float32, sorted (x, y, z), runs merged (colour floor-mean, first normal)."""
    p32 = np.asarray(points, np.float32)
    keys = sorted({tuple(map(float, p)) for p in p32})
    where = {k: u for u, k in enumerate(keys)}
    first = [None] * len(keys)
    sums = np.zeros((len(keys), 3), np.int64)
    counts = np.zeros(len(keys), np.int64)
    for i, p in enumerate(p32):
        u = where[tuple(map(float, p))]
        if first[u] is None:
            first[u] = i
        counts[u] += 1
        if colors is not None:
            sums[u] += colors[i]
    pts = np.array(keys, np.float32).reshape(-1, 3)
    col = None if colors is None else (sums // counts[:, None]).astype(colors.dtype)
    nrm = None if normals is None else np.asarray(normals, np.float32)[first]
    return pts, col, nrm


def _bf_dist(q, t):
    """(N, M) squared distances: float32 differences, squares summed in float64 (pc_error)."""
    d = (q[:, None, :] - t[None, :, :]).astype(np.float64)
    return d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]


def _bf_neighbours(q, t):
    """Per query: (nearest d2, chained 'same distance' list sorted by (d, j), number exactly tied)."""
    dist = _bf_dist(q, t)
    out = []
    for row in dist:
        order = np.lexsort((np.arange(len(row)), row))
        d = row[order]
        n_exact = int(np.sum(d == d[0]))
        k = 10
        while n_exact >= k and k + 5 <= 30:
            k += 5
        chain = 1
        while chain < min(k, len(d)) and abs(d[chain] - d[chain - 1]) < 1e-8:
            chain += 1
        out.append((float(d[0]), [int(j) for j in order[:chain]], min(n_exact, 30)))
    return out


def _bf_ycbcr(rgb):
    r, g, b = (float(v) for v in rgb)
    return (np.float32((0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0),
            np.float32((-0.1146 * r - 0.3854 * g + 0.5000 * b) / 255.0 + 0.5),
            np.float32((0.5000 * r - 0.4542 * g - 0.0458 * b) / 255.0 + 0.5))


def _bf_direction(ref, test, test_n, nbrs, ref_c, test_c):
    sse1 = sse2 = 0.0
    sc = np.zeros(3)
    for i, (d0, lst, _) in enumerate(nbrs):
        sse1 += d0
        dp = 0.0
        for j in lst:
            e = (ref[i] - test[j]).astype(np.float32)
            n = test_n[j]
            if np.any(np.isnan(n)):
                dp += float(((((ref[i, 0] - test[j, 0]) + ref[i, 1]) - test[j, 1]) + ref[i, 2]) - test[j, 2])
            else:
                dot = np.float32(np.float32(e[0] * n[0] + e[1] * n[1]) + e[2] * n[2])
                dp += float(np.float32(dot * dot))
        sse2 += dp / len(lst)
        if ref_c is not None:
            mean = [math.floor(sum(int(test_c[j][c]) for j in lst) / len(lst) + 0.5) for c in range(3)]
            a, b = _bf_ycbcr(ref_c[i]), _bf_ycbcr(mean)
            sc += [float(np.float32(a[c] - b[c]) ** 2) for c in range(3)]
    n = len(nbrs)
    return sse1 / n, sse2 / n, sc / n


def bruteforce(a: PointCloud, b: PointCloud, normals_a, color=False):
    """Per-direction (d1_mse, d2_mse, (y, cb, cr) mse) as pc_error defines them."""
    pa, ca, na = _bf_merge(a.points, a.colors if color else None, normals_a)
    pb, cb, _ = _bf_merge(b.points, b.colors if color else None)
    ab, ba = _bf_neighbours(pa, pb), _bf_neighbours(pb, pa)
    nb = np.zeros((len(pb), 3), np.float32)
    cnt = np.zeros(len(pb), np.int64)
    for i, (_, lst, ne) in enumerate(ab):  # scaleNormals: scatter in A order, then average
        for j in lst[:ne]:
            nb[j] += na[i]
            cnt[j] += 1
    for j in range(len(pb)):
        if cnt[j]:
            nb[j] = nb[j] / np.float32(cnt[j])
        else:
            lst, ne = ba[j][1], ba[j][2]
            s = np.zeros(3, np.float32)
            for i in lst[:ne]:
                s += na[i]
            nb[j] = s / np.float32(ne)
    return (_bf_direction(pa, pb, nb, ab, ca, cb), _bf_direction(pb, pa, na, ba, cb, ca),
            len(pa), len(pb))


def psnr(mse, peak, factor):
    return math.inf if mse == 0 else 10 * math.log10(factor * peak * peak / mse)


def assert_matches(res, ref, color):
    (a1, a2, ac), (b1, b2, bc), npa, npb = ref
    assert res["points_a"] == npa and res["points_b"] == npb
    for key, (m1, m2, mc) in (("a_to_b", (a1, a2, ac)), ("b_to_a", (b1, b2, bc))):
        d = res[key]
        assert d["d1_mse"] == pytest.approx(m1, rel=1e-9, abs=1e-12)
        assert d["d2_mse"] == pytest.approx(m2, rel=1e-6, abs=1e-9)
        assert d["d1_psnr"] == pytest.approx(psnr(m1, PEAK, 3), rel=1e-9)
        if color:
            for c, ch in enumerate(("y", "cb", "cr")):
                assert d[f"{ch}_mse"] == pytest.approx(mc[c], rel=1e-6, abs=1e-12)
    assert res["d1_mse"] == pytest.approx(max(a1, b1), rel=1e-9, abs=1e-12)
    assert res["d2_mse"] == pytest.approx(max(a2, b2), rel=1e-6, abs=1e-9)
    if color:
        assert res["y_psnr"] == pytest.approx(psnr(max(ac[0], bc[0]), 1.0, 1), rel=1e-6)


# -------------------------------------------------------------------------------------- clouds

def random_cloud(rng, n, span, color=True, dup_frac=0.2):
    """Integer cloud in a small box (many ties), with some exact duplicates."""
    pts = rng.integers(0, span, size=(n, 3)).astype(np.float64)
    ndup = int(n * dup_frac)
    if ndup:
        pts[-ndup:] = pts[rng.integers(0, n - ndup, ndup)]
    cols = rng.integers(0, 256, size=(n, 3)).astype(np.uint8) if color else None
    return PointCloud(points=pts, colors=cols)


def random_normals(rng, n):
    v = rng.normal(size=(n, 3))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_bruteforce_integer_clouds_with_ties_and_duplicates(seed):
    rng = np.random.default_rng(seed)
    a = random_cloud(rng, 300, 9)
    b = random_cloud(rng, 220, 11)
    na = random_normals(rng, len(a))
    res = compute_metrics(a, b, PEAK, na, color=True)
    assert_matches(res, bruteforce(a, b, na, color=True), color=True)


def test_matches_bruteforce_sparse_and_dense():
    rng = np.random.default_rng(7)
    a = random_cloud(rng, 400, 40, dup_frac=0.0)
    b = PointCloud(points=np.rint(a.points[:60] / 4) * 4 + rng.integers(-1, 2, (60, 3)),
                   colors=a.colors[:60])
    na = random_normals(rng, len(a))
    res = compute_metrics(a, b, PEAK, na, color=True)
    assert_matches(res, bruteforce(a, b, na, color=True), color=True)


def test_matches_bruteforce_non_integer_coordinates():
    rng = np.random.default_rng(3)
    lattice = rng.integers(0, 12, size=(250, 3)) * (8.0 / 7.0)  # like TMC13 positionQuantizationScale 7/8
    a = PointCloud(points=rng.integers(0, 14, size=(300, 3)).astype(np.float64))
    b = PointCloud(points=lattice)
    na = random_normals(rng, len(a))
    res = compute_metrics(a, b, PEAK, na)
    assert_matches(res, bruteforce(a, b, na), color=False)


def test_far_away_points_and_outliers():
    rng = np.random.default_rng(5)
    a = random_cloud(rng, 200, 20, color=False)
    far = np.array([[5000.0, -300.0, 70.0], [-900.0, 4000.0, 12.0]])
    b = PointCloud(points=np.vstack([a.points[:50] + 1, far]))
    na = random_normals(rng, len(a))
    assert_matches(compute_metrics(a, b, PEAK, na), bruteforce(a, b, na), color=False)


def test_nan_normals_follow_pc_error_fallback():
    rng = np.random.default_rng(11)
    a = random_cloud(rng, 120, 8, color=False, dup_frac=0.0)
    b = random_cloud(rng, 100, 8, color=False, dup_frac=0.0)
    na = random_normals(rng, len(a))
    na[::7] = np.nan
    assert_matches(compute_metrics(a, b, PEAK, na), bruteforce(a, b, na), color=False)


def test_shift_by_one_closed_form():
    g = np.stack(np.meshgrid(*[np.arange(0, 40, 4)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    a = PointCloud(points=g)
    b = PointCloud(points=g + [1.0, 0.0, 0.0])
    nx = np.tile(np.float32([1, 0, 0]), (len(g), 1))
    res = compute_metrics(a, b, PEAK, nx)
    expected = 10 * math.log10(3 * PEAK ** 2 / 1.0)
    for key in ("a_to_b", "b_to_a"):
        assert res[key]["d1_mse"] == 1.0 and res[key]["d2_mse"] == 1.0
        assert res[key]["d1_psnr"] == pytest.approx(expected, abs=1e-12)
    assert res["d1_psnr"] == pytest.approx(expected, abs=1e-12)
    nz = np.tile(np.float32([0, 0, 1]), (len(g), 1))  # error along x is in the plane z = const
    res = compute_metrics(a, b, PEAK, nz)
    assert res["d1_mse"] == 1.0 and res["d2_mse"] == 0.0 and res["d2_psnr"] == math.inf


def test_identical_clouds_give_infinite_psnr():
    rng = np.random.default_rng(2)
    a = random_cloud(rng, 200, 30, dup_frac=0.0)
    res = compute_metrics(a, a, PEAK, None, color=True, hausdorff=True)
    for key in ("d1_psnr", "d2_psnr", "y_psnr", "cb_psnr", "cr_psnr"):
        assert res[key] == math.inf
    assert res["d1_mse"] == 0.0
    assert res["a_to_b"]["d1_hausdorff"] == 0.0 and res["a_to_b"]["d1_hausdorff_psnr"] == math.inf


def test_symmetric_is_the_worse_direction():
    rng = np.random.default_rng(4)
    a = random_cloud(rng, 150, 20, color=False, dup_frac=0.0)
    b = PointCloud(points=np.vstack([a.points, a.points[:10] + [0.0, 0.0, 3.0]]))
    res = compute_metrics(a, b, PEAK, random_normals(rng, len(a)))
    assert res["a_to_b"]["d1_mse"] == 0.0
    assert res["b_to_a"]["d1_mse"] > 0.0
    assert res["d1_mse"] == res["b_to_a"]["d1_mse"]
    assert res["d1_psnr"] == res["b_to_a"]["d1_psnr"] == min(res["a_to_b"]["d1_psnr"], res["b_to_a"]["d1_psnr"])


def test_hausdorff_is_the_max_squared_distance():
    a = PointCloud(points=np.array([[0.0, 0, 0], [10, 0, 0], [20, 0, 0]]))
    b = PointCloud(points=np.array([[0.0, 1, 0], [10, 0, 3], [20, 0, 0]]))
    n = np.tile(np.float32([0, 1, 0]), (3, 1))
    res = compute_metrics(a, b, PEAK, n, hausdorff=True)
    assert res["a_to_b"]["d1_hausdorff"] == 9.0
    assert res["a_to_b"]["d1_hausdorff_psnr"] == pytest.approx(10 * math.log10(3 * PEAK ** 2 / 9.0))
    assert res["b_to_a"]["d1_hausdorff"] == 9.0


def test_duplicates_are_merged_with_integer_mean_colour():
    pts = np.array([[1.0, 1, 1], [1, 1, 1], [1, 1, 1], [5, 5, 5]])
    a = PointCloud(points=pts, colors=np.array([[10, 0, 0], [11, 0, 0], [11, 0, 0], [0, 0, 0]], np.uint8))
    b = PointCloud(points=np.array([[1.0, 1, 1], [5, 5, 5]]),
                   colors=np.array([[10, 0, 0], [0, 0, 0]], np.uint8))  # 32 // 3 == 10
    res = compute_metrics(a, b, PEAK, None, color=True)
    assert res["points_a"] == 2 and res["points_b"] == 2
    assert res["y_psnr"] == math.inf and res["d1_psnr"] == math.inf
    assert any("duplicate" in n for n in res["notes"])


def test_one_point_clouds_and_estimated_normals_note():
    a = PointCloud(points=np.array([[3.0, 4.0, 5.0]]))
    b = PointCloud(points=np.array([[3.0, 4.0, 7.0]]))
    res = compute_metrics(a, b, PEAK, None)
    assert res["d1_mse"] == 4.0 and res["points_a"] == 1 and res["points_b"] == 1
    assert math.isfinite(res["d2_mse"]) and 0.0 <= res["d2_mse"] <= 4.0
    assert any("estimated" in n for n in res["notes"])


def test_estimated_normals_of_a_plane():
    from imcodec.metrics.grid import build_grid
    from imcodec.metrics.normals import estimate_normals

    g = np.stack(np.meshgrid(np.arange(20), np.arange(20), indexing="ij"), -1).reshape(-1, 2)
    pts = np.column_stack([g, np.full(len(g), 7)]).astype(np.float32)
    n = estimate_normals(build_grid(pts, True))
    np.testing.assert_allclose(n, np.tile([0, 0, 1], (len(pts), 1)), atol=1e-6)


def test_knn_matches_bruteforce():
    from imcodec.metrics.grid import build_grid
    from imcodec.metrics.nn import knn_self

    rng = np.random.default_rng(9)
    for pts in (np.unique(rng.integers(0, 12, (400, 3)), axis=0).astype(np.float32),  # dense, many ties
                np.vstack([rng.integers(0, 30, (60, 3)), [[500, 0, 0], [-90, 700, 3]]]).astype(np.float32),
                rng.integers(0, 5, (7, 3)).astype(np.float32)):  # fewer points than k
        idx, count = knn_self(build_grid(pts, True), 12)
        dist = _bf_dist(pts, pts)
        for i in range(len(pts)):
            order = np.lexsort((np.arange(len(pts)), dist[i]))[:12]
            assert count[i] == len(order) and list(idx[i, :count[i]]) == list(order)


def test_more_than_30_equidistant_neighbours_keep_30():
    from imcodec.metrics.grid import build_grid
    from imcodec.metrics.ties import nearest_with_ties

    shell = np.array([p for p in np.ndindex(9, 9, 9) if sum((c - 4) ** 2 for c in p) == 17], np.float32)
    assert len(shell) == 48  # (4,1,0) and (3,2,2) permutations
    nb = nearest_with_ties(np.float32([[4, 4, 4]]), build_grid(shell, True), True)
    assert nb.d2[0] == 17.0 and nb.n_exact[0] == 30
    assert list(nb.index) == list(range(30))


def test_normals_file_in_another_order_is_aligned():
    from imcodec.metrics.normals import align_normals

    rng = np.random.default_rng(1)
    pts = rng.integers(0, 50, (100, 3)).astype(np.float64)
    pts = np.unique(pts, axis=0)
    nrm = random_normals(rng, len(pts))
    perm = rng.permutation(len(pts))
    np.testing.assert_array_equal(align_normals(pts, pts[perm], nrm[perm], "n.ply"), nrm)
    with pytest.raises(InputError, match="not the points of A"):
        align_normals(pts, pts + 1, nrm, "n.ply")


@pytest.mark.parametrize("which", ["a", "b"])
def test_empty_cloud_is_an_input_error(which):
    empty = PointCloud(points=np.zeros((0, 3)))
    one = PointCloud(points=np.ones((1, 3)))
    a, b = (empty, one) if which == "a" else (one, empty)
    with pytest.raises(InputError, match=f"cloud {which.upper()} .* is empty"):
        compute_metrics(a, b, PEAK)


def test_16_bit_colours_are_normalised_by_65535():
    rng = np.random.default_rng(8)
    a = random_cloud(rng, 150, 20, color=False, dup_frac=0.0)
    ca = rng.integers(0, 65536, (len(a), 3)).astype(np.uint16)
    a = a.with_(colors=ca)
    b = a.with_(colors=np.clip(ca.astype(np.int64) + 257, 0, 65535).astype(np.uint16))
    res = compute_metrics(a, b, PEAK, None, color=True)
    y = res["a_to_b"]["y_mse"]
    assert 0.0 < y < 1e-3 and math.isfinite(res["y_psnr"])
    assert any("65535" in n for n in res["notes"])
    with pytest.raises(InputError, match="colour types differ"):
        compute_metrics(a, b.with_(colors=(b.colors >> 8).astype(np.uint8)), PEAK, color=True)


def test_colour_needs_colours():
    a = PointCloud(points=np.ones((2, 3)) * [[1], [2]])
    with pytest.raises(InputError, match="no red/green/blue"):
        compute_metrics(a, a, PEAK, color=True)


def test_cli_json_has_exactly_the_specified_keys(tmp_path, capsys):
    from imcodec.cli import main

    rng = np.random.default_rng(6)
    a = random_cloud(rng, 300, 30, dup_frac=0.0)
    b = PointCloud(points=a.points[:250] + rng.integers(-1, 2, (250, 3)), colors=a.colors[:250])
    write_ply(a, tmp_path / "a.ply")
    write_ply(b, tmp_path / "b.ply")
    code = main(["metrics", str(tmp_path / "a.ply"), str(tmp_path / "b.ply"), "--bits", "10", "--json"])
    out = capsys.readouterr()
    assert code == 0
    res = json.loads(out.out)
    assert set(res) == TOP_KEYS
    assert res["y_psnr"] is None and isinstance(res["d1_psnr"], float)
    assert res["a_to_b"]["peak"] == 1023.0 and "d2_psnr" in res["b_to_a"]
    assert "estimated" in out.err  # the normals note goes to stderr, not into the JSON

    write_ply(a, tmp_path / "same.ply")
    code = main(["metrics", str(tmp_path / "a.ply"), str(tmp_path / "same.ply"), "--peak", "1023",
                 "--color", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and set(res) == TOP_KEYS
    assert res["d1_psnr"] == "inf" and res["y_psnr"] == "inf"

"""Synthetic surfaces: exact agreement with a dense brute-force voxelisation, closedness, bounds,
determinism, sequences, colour, argument checks and the ``imcodec synth`` command."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from imcodec.errors import UsageError
from imcodec.io.ply import ply_bytes, read_ply
from imcodec.synth import MOTIONS, SHAPES, _scene, make_cloud, make_sequence
from imcodec.synth_kernels import shell_voxels

CASES = list(itertools.product(SHAPES, MOTIONS))


# ------------------------------------------------------------------------------ brute-force reference

def _field(prims: np.ndarray, kinds: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Union field of the primitives at object points q (M, 3), written directly from the formulas."""
    out = np.full(len(q), np.inf)
    for kind, p in zip(kinds, prims):
        if kind == 1:  # capsule
            a, u, r = p[0:3], p[3:6] - p[0:3], p[6]
            h = np.clip((q - a) @ u / (u @ u), 0.0, 1.0)
            v = np.linalg.norm(q - a - h[:, None] * u, axis=1) - r
        else:
            local = (q - p[0:3]) @ p[3:12].reshape(3, 3).T
            if kind == 0:  # ellipsoid
                v = p[12:15].min() * (np.linalg.norm(local / p[12:15], axis=1) - 1.0)
            elif kind == 2:  # torus
                v = np.hypot(np.hypot(local[:, 0], local[:, 2]) - p[12], local[:, 1]) - p[13]
            else:  # box
                d = np.abs(local) - p[12:15]
                v = np.linalg.norm(np.maximum(d, 0.0), axis=1) + np.minimum(d.max(axis=1), 0.0)
        out = np.minimum(out, v)
    return out


def _brute_shell(shape, bits, seed, t, motion):
    """Every voxel of the grid classified; shell = inside with a 6-neighbour outside or off the grid."""
    args, _, _ = _scene(shape, bits, seed, t, motion)
    prims, kinds, _, rot_t, pivot, shift, waves = args[:7]
    size = 1 << bits
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
    for amp, kx, ky, phase in waves:  # the depth ripple
        grid[:, 2] -= amp * np.sin(kx * grid[:, 0] + ky * grid[:, 1] + phase)
    q = (grid - pivot - shift) @ rot_t.T + pivot
    inside = (_field(prims, kinds, q) <= 0.0).reshape(size, size, size)
    padded = np.pad(inside, 1)
    all_in = np.ones_like(inside)
    for axis in range(3):
        for step in (-1, 1):
            all_in &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(inside & ~all_in)


@pytest.mark.parametrize("shape, motion", CASES)
@pytest.mark.parametrize("seed, t, bits", [(0, 0.0, 6), (7, 5.0, 5)])
def test_matches_brute_force(shape, motion, seed, t, bits):
    cloud = make_cloud(shape, bits=bits, seed=seed, t=t, motion=motion)
    np.testing.assert_array_equal(cloud.points.astype(np.int64), _brute_shell(shape, bits, seed, t, motion))


@pytest.mark.parametrize("seed", range(6))
def test_torus_quartic_matches_brute_force(seed):
    # the analytic torus path (a quartic per column) at varied poses
    cloud = make_cloud("torus", bits=6, seed=seed, t=3.0 * seed, motion="rigid")
    np.testing.assert_array_equal(cloud.points.astype(np.int64), _brute_shell("torus", 6, seed, 3.0 * seed, "rigid"))


@pytest.mark.parametrize("shape", SHAPES)
def test_parts_are_the_deepest_primitive(shape):
    # the part of each voxel (used for colours) is the primitive whose field is lowest there
    args, _, _ = _scene(shape, 7, 3, 2.0, "wave")
    coords, part = shell_voxels(*args)
    prims, kinds, _, rot_t, pivot, shift, waves = args[:7]
    grid = coords.astype(float)
    for amp, kx, ky, phase in waves:
        grid[:, 2] -= amp * np.sin(kx * grid[:, 0] + ky * grid[:, 1] + phase)
    q = (grid - pivot - shift) @ rot_t.T + pivot
    fields = np.stack([_field(prims[i:i + 1], kinds[i:i + 1], q) for i in range(len(prims))])
    np.testing.assert_array_equal(part, fields.argmin(axis=0))
    assert fields.min(axis=0).max() <= 0.0  # every shell voxel is inside
    if shape == "body":
        assert len(np.unique(part)) == len(prims)  # every body part shows


# ------------------------------------------------------------------------------------- properties

def _occupancy(points: np.ndarray, bits: int) -> np.ndarray:
    occ = np.zeros((1 << bits,) * 3, dtype=bool)
    occ[tuple(points.astype(np.int64).T)] = True
    return occ


@pytest.mark.parametrize("shape, motion", CASES)
def test_cloud_is_a_closed_voxel_surface(shape, motion):
    bits = 7
    cloud = make_cloud(shape, bits=bits, color=True, seed=2, t=3.0, motion=motion)
    pts = cloud.points
    assert pts.dtype == np.float64 and pts.ndim == 2 and pts.shape[1] == 3 and len(pts) > 500
    assert cloud.point_dtype == "float32"
    assert np.array_equal(pts, np.rint(pts))
    assert pts.min() >= 0 and pts.max() <= (1 << bits) - 1
    ipts = pts.astype(np.int64)
    keys = (ipts[:, 0] << 2 * bits) | (ipts[:, 1] << bits) | ipts[:, 2]
    assert np.all(np.diff(keys) > 0)  # sorted by (x, y, z), hence no duplicates
    occ = _occupancy(pts, bits)
    # every point has one of its 26 neighbours in the cloud
    neighbours = ndimage.convolve(occ.astype(np.uint8), np.ones((3, 3, 3), np.uint8), mode="constant") - 1
    assert neighbours[occ].min() >= 1
    # closed: the empty voxels split into the outside and at least one enclosed (inside) region
    labels, count = ndimage.label(~occ)  # 6-connectivity
    assert count >= 2
    outside = labels[0, 0, 0]
    enclosed = (labels > 0) & (labels != outside)
    assert enclosed.sum() > len(pts)  # a solid interior, not a few stray cavities
    assert cloud.colors is not None and cloud.colors.dtype == np.uint8 and cloud.colors.shape == pts.shape


def test_sphere_shell_is_one_voxel_thick():
    # closed form: an inner shell voxel is inside the ball (d <= r) next to one outside (d > r - 1)
    args, _, _ = _scene("sphere", 8, 4, 0.0, "rigid")
    centre, radius = args[0][0, 0:3], args[0][0, 12]
    pts = make_cloud("sphere", bits=8, seed=4).points
    d = np.linalg.norm(pts - centre, axis=1)
    assert d.max() <= radius + 1e-9 and d.min() > radius - 1.0
    # count: a plane with unit normal n holds max|n_i| inner-boundary voxels per unit area, and the
    # mean of max|n_i| over the sphere is 0.8313 (numerically); the shell sits about half a voxel in
    expect = 0.8313 * 4 * np.pi * (radius - 0.5) ** 2
    assert abs(len(pts) / expect - 1) < 0.02


def test_body_at_10_bits_is_scan_sized():
    cloud = make_cloud("body", bits=10, color=True, seed=1)
    assert 400_000 < len(cloud) < 1_200_000
    extent = cloud.points.max(axis=0) - cloud.points.min(axis=0)
    assert extent[1] > 0.85 * 1024 and extent[0] < 0.6 * 1024  # a standing figure
    assert cloud.points.max() <= 1023 and cloud.points.min() >= 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bits", [3, 4, 5])
def test_small_bit_depths(shape, bits):
    pts = make_cloud(shape, bits=bits, seed=1).points
    assert len(pts) > 0 and pts.min() >= 0 and pts.max() <= (1 << bits) - 1
    np.testing.assert_array_equal(pts.astype(np.int64), _brute_shell(shape, bits, 1, 0.0, "rigid"))


def test_high_bit_depths_keep_the_12_bit_size_centred():
    for bits in (13, 16):
        args, _, _ = _scene("sphere", bits, 0, 0.0, "rigid")
        lo, hi = args[7], args[8]
        centre = ((1 << bits) - 1) / 2
        assert np.all(hi - lo < 4096) and np.all(lo > centre - 2048) and np.all(hi < centre + 2048)


# ------------------------------------------------------------------------------- determinism, seeds

def test_deterministic_bytes():
    for shape in SHAPES:
        a = make_cloud(shape, bits=7, color=True, seed=5, t=1.0, motion="wave")
        b = make_cloud(shape, bits=7, color=True, seed=5, t=1.0, motion="wave")
        assert ply_bytes(a) == ply_bytes(b)


def test_seed_changes_the_shape():
    for shape in SHAPES:
        a, b = make_cloud(shape, bits=7, seed=0), make_cloud(shape, bits=7, seed=1)
        assert len(a) != len(b) or not np.array_equal(a.points, b.points)
        assert abs(len(a) - len(b)) < 0.25 * len(a)  # details vary, not the kind of shape


def test_color_absent_and_smooth():
    assert make_cloud("box", bits=7).colors is None
    cloud = make_cloud("body", bits=8, color=True, seed=3)
    pts, col = cloud.points.astype(np.int64), cloud.colors.astype(np.int64)
    same_column = np.all(pts[1:, :2] == pts[:-1, :2], axis=1) & (pts[1:, 2] == pts[:-1, 2] + 1)
    step = np.abs(col[1:] - col[:-1])[same_column].mean()
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(col), (2, 5000))
    random_pairs = np.abs(col[i] - col[j]).mean()
    assert step < 8 and random_pairs > 3 * step
    assert len(np.unique(col, axis=0)) > 100  # textured, not flat


# ---------------------------------------------------------------------------------------- sequences

@pytest.mark.parametrize("shape, motion", CASES)
def test_sequence_moves_but_keeps_its_size(shape, motion):
    frames = make_sequence(shape, bits=7, frames=3, motion=motion, color=False, seed=2)
    assert len(frames) == 3
    counts = [len(f) for f in frames]
    assert max(counts) < 1.1 * min(counts)
    for i in range(3):
        assert np.array_equal(frames[i].points, make_cloud(shape, 7, seed=2, t=float(i), motion=motion).points)
    for a, b in itertools.combinations(frames, 2):
        assert len(a) != len(b) or not np.array_equal(a.points, b.points)


# ------------------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("kwargs, message", [
    (dict(shape="cube"), "'cube'"),
    (dict(shape="sphere", motion="spin"), "'spin'"),
    (dict(shape="sphere", bits=2), "got 2"),
    (dict(shape="sphere", bits=17), "got 17"),
    (dict(shape="sphere", bits=True), "got True"),
    (dict(shape="sphere", bits="10"), "got '10'"),
    (dict(shape="sphere", seed=-1), "got -1"),
    (dict(shape="sphere", t=float("nan")), "got nan"),
])
def test_bad_cloud_arguments(kwargs, message):
    with pytest.raises(UsageError, match=message):
        make_cloud(**kwargs)


def test_bad_frame_count():
    with pytest.raises(UsageError, match="got 0"):
        make_sequence("sphere", bits=5, frames=0)


# -------------------------------------------------------------------------------------------- CLI

def test_cli_single_file(tmp_path, run_cli):
    out = tmp_path / "t.ply"
    code, _, err = run_cli("synth", "--shape", "torus", "--bits", "7", "--color", "--seed", "3", "-o", out)
    assert code == 0, err
    back, ref = read_ply(out), make_cloud("torus", bits=7, color=True, seed=3)
    np.testing.assert_array_equal(back.points, ref.points)
    np.testing.assert_array_equal(back.colors, ref.colors)
    assert back.point_dtype == "float32"


def test_cli_directory_and_pattern(tmp_path, run_cli):
    code, _, err = run_cli("synth", "--shape", "body", "--bits", "6", "--frames", "3", "--motion", "wave",
                           "-o", tmp_path / "seq")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "seq").iterdir())
    assert names == ["body_0000.ply", "body_0001.ply", "body_0002.ply"]
    second = read_ply(tmp_path / "seq" / "body_0001.ply")
    np.testing.assert_array_equal(second.points, make_cloud("body", 6, t=1.0, motion="wave").points)
    code, _, err = run_cli("synth", "--bits", "5", "--frames", "2", "-o", tmp_path / "pat" / "s_%04d.ply")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pat").iterdir()) == ["s_0000.ply", "s_0001.ply"]


@pytest.mark.parametrize("args, message", [
    (["--frames", "2", "-o", "x_%d_%d.ply"], "exactly one %d-style field"),
    (["--frames", "2", "-o", "x_%s.ply"], "exactly one %d-style field"),
    (["--bits", "20", "-o", "x.ply"], "got 20"),
    (["--frames", "0", "-o", "x.ply"], "got 0"),
    (["--seed", "-3", "-o", "x.ply"], "got -3"),
])
def test_cli_bad_usage(tmp_path, run_cli, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("synth", *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written

"""Look-up-table depth denoiser: kernel keys against a direct computation, fitting, decoding, weights."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from imcodec.errors import InputError, UsageError
from imcodec.learned.depth_lut import FAR_STAGES, NEAR_STAGES, LutDenoiser, Stage, _args, fit_lut, weights_bytes
from imcodec.learned.enhance_data import DepthPair
from imcodec.vpcc.depthlut import FX, GAP_HI, GAP_LO, apply_table, fixed_point, stage_apply, stage_keys


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _direct_key(y, m, g, stage: Stage, i: int, j: int) -> int:
    """The key of pixel (i, j) from the module docstring's definition, with exact fractions."""
    h, w = y.shape
    key, base = 0, 1
    for dy, dx in stage.offsets:
        ii, jj = i + dy, j + dx
        digit = 2 * stage.levels + 1
        if 0 <= ii < h and 0 <= jj < w and m[ii, jj]:
            q = _half_up(Fraction(int(y[ii, jj]) - int(y[i, j]), stage.step))
            digit = min(max(q, -stage.levels), stage.levels) + stage.levels
        key += digit * base
        base *= 2 * stage.levels + 2
    if stage.radius:
        r = stage.radius
        win = (slice(max(0, i - r), i + r + 1), slice(max(0, j - r), j + r + 1))
        vals = [int(v) for v in y[win][m[win]]]
        mean = Fraction(sum(vals), len(vals))
        q = _half_up((mean - int(y[i, j])) * stage.mq / FX)
        key += (min(max(q, -stage.mlevels), stage.mlevels) + stage.mlevels) * base
        base *= 2 * stage.mlevels + 1
    if stage.gap:
        q = _half_up(Fraction(2 * (int(y[i, j]) - int(g[i, j])), FX))
        key += (min(max(q, GAP_LO), GAP_HI) - GAP_LO) * base
    return key


def _random_fixed(rng, h=19, w=23, fill=0.6):
    m = rng.random((h, w)) < fill
    d = rng.integers(90, 110, (h, w))
    y = fixed_point(d.astype(np.uint8), m) + np.where(m, rng.integers(-200, 200, (h, w)), 0)
    return y, m


@pytest.mark.parametrize("stage", NEAR_STAGES + FAR_STAGES, ids=lambda s: f"r{s.radius}g{int(s.gap)}s{s.step}")
def test_stage_keys_match_the_definition(rng, stage):
    y, m = _random_fixed(rng)
    g = y - np.where(m, rng.integers(-3 * FX, 6 * FX, y.shape), 0)
    keys = stage_keys(*_args(stage, y, m, g))
    assert np.all(keys[~m] == -1)
    assert keys[m].max() < stage.size
    for i, j in zip(*np.nonzero(m)):
        assert keys[i, j] == _direct_key(y, m, g, stage, i, j), (i, j)


def test_stage_apply_in_row_bands_equals_keys_plus_table(rng):
    stage = NEAR_STAGES[1]
    y, m = _random_fixed(rng, 40, 31)
    table = rng.integers(-300, 300, stage.size)
    want = apply_table(y, stage_keys(*_args(stage, y, m, None)), table)
    for cuts in ([0, 40], [0, 13, 40], [0, 1, 2, 20, 39, 40]):
        out = np.zeros_like(y)
        for a, b in zip(cuts[:-1], cuts[1:]):
            stage_apply(*_args(stage, y, m, None), table, out, a, b)
        assert np.array_equal(out, want)


def _smooth_pair(seed: int, rate: str = "r1", h=64, w=80) -> DepthPair:
    """Planar patches with a surface thickness of 0-2, decoded with Gaussian noise (sigma 1.2)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    true0 = np.clip(np.rint(80 + rng.uniform(-0.6, 0.6) * xx + rng.uniform(-0.6, 0.6) * yy), 0, 255)
    true1 = true0 + rng.integers(0, 3, (h, w))
    mask = np.zeros((h, w), bool)
    mask[5:h - 5, 4:w - 8] = True
    noisy = lambda t: np.clip(np.rint(t + rng.normal(0, 1.2, t.shape)), 0, 255).astype(np.uint8)
    e = np.zeros((0, 3), dtype=np.int64)
    return DepthPair(f"p{seed}", rate, true0.astype(np.uint8), true1.astype(np.uint8), noisy(true0),
                     noisy(true1), mask, mask.copy(), e, e)


def _mse(a, b, m) -> float:
    return float(((a.astype(np.float64) - b)[m] ** 2).mean())


@pytest.fixture(scope="module")
def fitted():
    pairs = [_smooth_pair(k) for k in range(6)]
    return fit_lut(pairs, {"r1": 32}, min_count=3)


def test_fitted_tables_reduce_the_error_on_unseen_images(fitted):
    model, summary = fitted
    assert summary["qps"] == [32]
    test = _smooth_pair(99)
    n0, n1 = model.denoise(test.dec0, test.dec1, test.mask, 255, 32)
    assert n0.dtype == np.uint8 and n1.shape == test.dec1.shape
    assert np.array_equal(n0[~test.mask], test.dec0[~test.mask])
    assert _mse(n0, test.true0, test.mask) < 0.5 * _mse(test.dec0, test.true0, test.mask)
    assert _mse(n1, test.true1, test.mask) < 0.7 * _mse(test.dec1, test.true1, test.mask)
    t = summary["train_mse"]["32"]
    assert t["d0_mse_denoised"] < t["d0_mse_decoded"]
    only0, none = model.denoise(test.dec0, None, test.mask, 255, 32)
    assert none is None and np.array_equal(only0, n0)


def test_first_table_is_the_mean_correction_per_key(fitted):
    """Entry = rounded mean of (true - decoded) in fixed point over the 8 flips/transposes."""
    from imcodec.learned.enhance_data import dihedral as _dihedral

    model, _ = fitted
    stage = NEAR_STAGES[0]
    sums = np.zeros(stage.size)
    counts = np.zeros(stage.size)
    for k in range(6):
        p = _smooth_pair(k)
        for t in range(8):
            m = _dihedral(p.mask, t)
            y = fixed_point(_dihedral(p.dec0, t), m)
            keys = stage_keys(*_args(stage, y, m, None))
            diff = (_dihedral(p.true0, t).astype(np.int64) * FX - y)[m]
            sums += np.bincount(keys[m], diff, stage.size)
            counts += np.bincount(keys[m], None, stage.size)
    want = np.where(counts >= 3, np.rint(sums / np.maximum(counts, 1)), 0)
    assert np.array_equal(model.near[0][0], want.astype(np.int64))


def test_output_does_not_depend_on_the_thread_count(fitted):
    model, _ = fitted
    test = _smooth_pair(7, h=300, w=90)
    model.threads = 1
    a = model.denoise(test.dec0, test.dec1, test.mask, 255, 32)
    model.threads = 3
    b = model.denoise(test.dec0, test.dec1, test.mask, 255, 32)
    model.threads = 2
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_qp_picks_the_nearest_table_set():
    stages = (Stage(((0, 1),), levels=1),)
    z = lambda: [[np.zeros(s.size, dtype=np.int64) for s in stages]]
    model = LutDenoiser((32, 24, 16), z() * 3, z() * 3, stages, stages)
    assert [model.table_set(q) for q in (40, 29, 27, 20, 19, 1)] == [0, 0, 1, 1, 2, 2]
    assert model.table_set(0) == 1 and model.table_set(None) == 1  # unknown QP: the middle set


def test_weights_round_trip_and_damaged_tables(fitted, tmp_path):
    import io
    import json

    from imcodec.learned.denoiser import load_denoiser

    model, _ = fitted
    path = tmp_path / "lut.npz"
    path.write_bytes(weights_bytes(model, {"test": 1}))
    again, info = load_denoiser(path)
    assert isinstance(again, LutDenoiser) and info["arch"] == "dualpath-lut" and info["meta"] == {"test": 1}
    for a, b in zip(model.near[0] + model.far[0], again.near[0] + again.far[0]):
        assert np.array_equal(a, b)

    def rewrite(name, change):
        z = dict(np.load(path))
        change(z)
        buf = io.BytesIO()
        np.savez(buf, **z)
        (tmp_path / name).write_bytes(buf.getvalue())
        return tmp_path / name

    short = rewrite("short.npz", lambda z: z.__setitem__("near.32", z["near.32"][:-1]))
    with pytest.raises(InputError, match="dualpath-lut"):
        load_denoiser(short)

    def other_task(z):
        header = json.loads(bytes(z["imcodec_header"]).decode())
        header["task"] = "restore"
        z["imcodec_header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with pytest.raises(InputError, match="'restore'"):
        load_denoiser(rewrite("task.npz", other_task))
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError):
        load_denoiser(tmp_path / "cut.npz")


def test_loading_and_running_the_tables_does_not_import_torch(tmp_path):
    """``decode --denoise-depth`` with the default tables starts without PyTorch (a 1-2 s import)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from imcodec.learned.denoiser import DepthDenoiser\n"
            "dn = DepthDenoiser()\n"
            "d = np.full((40, 40), 100, np.uint8); m = np.ones((40, 40), bool)\n"
            "dn.model.denoise(d, d, m, 255, 32)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_lut_weights_cannot_seed_cnn_fine_tuning(fitted, tmp_path):
    from imcodec import api

    path = tmp_path / "lut.npz"
    path.write_bytes(weights_bytes(fitted[0]))
    with pytest.raises(UsageError, match="look-up-table"):
        api.train_denoise_depth([], tmp_path / "out.pt", init=path, synth_shapes=())


def test_shipped_names_select_the_shipped_files():
    from imcodec.learned.depth_denoise import DualDenoiser
    from imcodec.learned.denoiser import load_denoiser

    lut, info = load_denoiser(None)
    assert isinstance(lut, LutDenoiser) and info["weights"].endswith("denoise_depth.npz")
    assert set(lut.qps) == {32, 28, 24, 20, 16}
    cnn, info = load_denoiser("cnn")
    assert isinstance(cnn, DualDenoiser) and info["weights"].endswith("denoise_depth_cnn.pt")


def test_other_tools_refuse_the_tables_by_their_task(fitted, tmp_path):
    from imcodec.learned.restore import load_restorer
    from imcodec.learned.zoo import load_upsampler

    path = tmp_path / "lut.npz"
    path.write_bytes(weights_bytes(fitted[0]))
    with pytest.raises(InputError, match="'denoise-depth', expected 'restore'"):
        load_restorer(None, path)
    with pytest.raises(InputError, match="'denoise-depth', expected 'upsample'"):
        load_upsampler(4, path)

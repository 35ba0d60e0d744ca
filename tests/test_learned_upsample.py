"""Upsampling network, training loop, chunked inference, weights files and the API/CLI around them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imcodec.errors import InputError, UsageError
from imcodec.learned import train as T
from imcodec.learned.models import UpsamplerConfig, build_model
from imcodec.learned.sparse import kernel_offsets, minkowski_available
from imcodec.learned.upsample import score_candidates, upsample_points
from imcodec.learned.zoo import load_upsampler, save_weights, shipped_weights
from imcodec.types import PointCloud

TINY = dict(channels=(8, 8, 8), head_channels=4)


def shell(r: float, centre: int = 40, seed: int = 0, keep: float = 1.0) -> np.ndarray:
    """Voxels of a sphere shell of radius r (|dist - r| < 0.5), optionally a seeded random subset."""
    g = np.arange(centre - r - 2, centre + r + 3)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    d = np.sqrt((x - centre) ** 2 + (y - centre) ** 2 + (z - centre) ** 2)
    pts = np.stack([x[np.abs(d - r) < 0.5], y[np.abs(d - r) < 0.5], z[np.abs(d - r) < 0.5]], 1).astype(np.int64)
    if keep < 1.0:
        rng = np.random.default_rng(seed)
        pts = pts[rng.random(len(pts)) < keep]
    return pts


def tiny_model(factor: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(UpsamplerConfig(factor=factor, **TINY)).eval()


def test_loss_decreases_on_a_tiny_set():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pts = shell(12)
    pairs = [T.sample_crop(rng, pts, 24, 4) for _ in range(2)]
    x, targets = T.make_batch(pairs, torch.device("cpu"))
    model = build_model(UpsamplerConfig(factor=4, **TINY))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        loss, _, labels = T.occupancy_loss(model, x, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    p = float(labels.mean())
    prior = -(p * np.log(p) + (1 - p) * np.log(1 - p))  # BCE of the best constant prediction
    assert 0 < p < 1  # both classes present among the candidates
    assert losses[-1] < 0.7 * losses[0], losses
    assert losses[-1] < 0.9 * prior, (losses[-1], prior)


def test_sampling_weights_split_real_and_synthetic():
    z = np.zeros
    pool = [("a.ply", z((100, 3))), ("b.ply", z((400, 3))), ("synth:x", z((9, 3))), ("synth:y", z((16, 3)))]
    np.testing.assert_allclose(T.sampling_weights(pool, 0.3), [0.7 / 3, 1.4 / 3, 0.15, 0.15])
    np.testing.assert_allclose(T.sampling_weights(pool[:2], 0.3), [1 / 3, 2 / 3])
    np.testing.assert_allclose(T.sampling_weights(pool[2:], 0.3), [0.5, 0.5])


def test_sample_crop_subsamples_the_target():
    rng = np.random.default_rng(3)
    pts = shell(20)
    inputs, target = T.sample_crop(rng, pts, 32, 4)
    assert target.min() >= 0 and target.max() < 32
    assert len(inputs) == round(len(target) / 4)
    tset = {tuple(p) for p in target}
    assert all(tuple(p) in tset for p in inputs)
    assert len({tuple(p) for p in inputs}) == len(inputs)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_upsample_returns_factor_times_points_near_the_input(factor):
    model = tiny_model(factor)
    pts = shell(14, keep=1.0 / factor, seed=1)
    out = upsample_points(model, pts, factor)
    assert out.shape == (factor * len(pts), 3)
    assert len(np.unique(out, axis=0)) == len(out)
    r = model.config.kernel // 2
    d = np.abs(out[:, None, :] - pts[None, :, :]).max(axis=2).min(axis=1)  # Chebyshev distance to inputs
    assert d.max() <= r
    kept = {tuple(p) for p in out}
    assert all(tuple(p) in kept for p in pts)  # input voxels are always kept


def test_test_time_views_keep_the_count_and_the_input():
    model = tiny_model(4, seed=6)
    pts = shell(12, keep=0.25, seed=8)
    one = upsample_points(model, pts, 4)
    two = upsample_points(model, pts, 4, views=4)
    assert two.shape == one.shape == (4 * len(pts), 3)
    kept = {tuple(p) for p in two}
    assert all(tuple(p) in kept for p in pts)
    with pytest.raises(InputError, match="views must be 1..4"):
        upsample_points(model, pts, 4, views=5)


def test_upsample_keeps_all_candidates_when_fewer_than_k():
    model = tiny_model(4)
    pts = np.array([[5, 5, 5]])
    out = upsample_points(model, pts, 4)
    assert len(out) == 4  # 27 candidates >= 4
    out8 = upsample_points(tiny_model(8), np.array([[5, 5, 5], [40, 40, 40]]), 8)
    assert len(out8) == 16
    assert len(upsample_points(model, np.zeros((0, 3)), 4)) == 0


def test_chunked_scores_equal_whole_cloud_scores():
    """With a margin covering the receptive field, chunking changes nothing (chunks of 32 vs one)."""
    model = tiny_model(4, seed=2)
    pts = shell(26, centre=50, keep=0.3, seed=4)
    whole_c, whole_l = score_candidates(model, pts, chunk=256, margin=64)
    part_c, part_l = score_candidates(model, pts, chunk=32, margin=64)
    assert len(whole_c) == len(part_c)
    o1, o2 = np.lexsort(whole_c.T), np.lexsort(part_c.T)
    assert np.array_equal(whole_c[o1], part_c[o2])
    np.testing.assert_allclose(whole_l[o1], part_l[o2], rtol=1e-4, atol=1e-4)


def test_split_of_crowded_chunks_keeps_every_candidate():
    model = tiny_model(4)
    pts = shell(20, centre=40, keep=0.5, seed=5)
    a_c, _ = score_candidates(model, pts, chunk=64, margin=8)
    b_c, _ = score_candidates(model, pts, chunk=64, margin=8, max_points=200)
    assert len(a_c) == len(b_c)
    assert np.array_equal(a_c[np.lexsort(a_c.T)], b_c[np.lexsort(b_c.T)])
    offs = kernel_offsets(3).numpy()
    assert len(a_c) == len(np.unique((pts[:, None] + offs[None]).reshape(-1, 3), axis=0))


@pytest.mark.parametrize("factor", [4, 8])
def test_candidates_in_chunks_without_input_are_scored(factor):
    """Points just below a chunk boundary propose voxels in the (empty) chunk above it."""
    model = tiny_model(factor)
    rng = np.random.default_rng(11)
    pts = np.unique(np.concatenate([rng.integers(28, 32, size=(40, 3)),  # corner of chunk 0
                                    rng.integers(60, 72, size=(60, 3))]), axis=0)  # across 64
    r = model.config.kernel // 2
    offs = np.array(list(np.ndindex(2 * r + 1, 2 * r + 1, 2 * r + 1))) - r
    expect = np.unique((pts[:, None] + offs[None]).reshape(-1, 3), axis=0)
    for chunk, max_points in ((32, 400_000), (64, 30), (256, 400_000)):
        c, _ = score_candidates(model, pts, chunk=chunk, margin=8, max_points=max_points)
        assert len(c) == len(expect)
        assert np.array_equal(c[np.lexsort(c.T[::-1])], expect)


def test_upsample_rejects_non_voxel_input():
    with pytest.raises(InputError, match="integer coordinates"):
        upsample_points(tiny_model(), np.array([[0.5, 1.0, 2.0]]), 4)


# ---------------------------------------------------------------------------------- weights files

def test_weights_round_trip_and_errors(tmp_path):
    model = tiny_model(4, seed=3)
    path = tmp_path / "w.pt"
    save_weights(path, model, {"command": "test"})
    loaded, info = load_upsampler(4, path)
    assert info["meta"]["command"] == "test" and info["config"]["factor"] == 4
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(InputError, match=r"w\.pt: weights are for 4x upsampling, expected 8x"):
        load_upsampler(8, path)
    with pytest.raises(InputError, match="no such weights file"):
        load_upsampler(4, tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="bad.pt: not a readable imcodec weights file"):
        load_upsampler(4, bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(InputError, match="no 'imcodec-weights' header"):
        load_upsampler(4, other)
    arch = tmp_path / "arch.pt"
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "pu-gan"
    torch.save(payload, arch)
    with pytest.raises(InputError, match="architecture 'pu-gan', expected 'pudense-slim'"):
        load_upsampler(4, arch)
    payload["arch"] = "pudense-slim"
    payload["state_dict"].pop("stem.weight")
    torch.save(payload, arch)
    with pytest.raises(InputError, match="damaged"):  # the digest no longer matches
        load_upsampler(4, arch)
    payload.pop("digest")  # a file from before digests: loads unchecked, then fails on the layout
    torch.save(payload, arch)
    with pytest.raises(InputError, match="do not fit"):
        load_upsampler(4, arch)


def _tensor_offset(data: bytes, index: int = 0) -> int:
    """Byte offset of tensor storage ``index`` inside a torch.save zip (stored, uncompressed)."""
    import io
    import struct
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(f"/data/{index}"))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def test_a_flipped_byte_inside_a_tensor_is_refused(tmp_path):
    path = tmp_path / "w.pt"
    save_weights(path, tiny_model(4, seed=3))
    data = bytearray(path.read_bytes())
    off = _tensor_offset(bytes(data)) + 5
    data[off] ^= 0x10
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    torch.load(bad, weights_only=True)  # torch itself loads it: no CRC check in its zip reader
    with pytest.raises(InputError, match=r"flipped\.pt: weights file is damaged"):
        load_upsampler(4, bad)


def test_a_damaged_training_checkpoint_is_refused_on_resume(tmp_path):
    from imcodec.learned.train import open_checkpoint, save_checkpoint

    model = tiny_model(4, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    cfg = {"epochs": 2, "channels": [4, 8]}
    state = {"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 1, "history": [{"loss": 0.5}],
             "rng": np.random.default_rng(1).bit_generator.state, "torch_rng": torch.get_rng_state(),
             "train_config": cfg}
    ck = tmp_path / "ck"
    path, _ = open_checkpoint(ck, False, cfg)
    save_checkpoint(path, state)
    _, back = open_checkpoint(ck, True, cfg)
    assert back["epoch"] == 1 and "digest" not in back
    for k, v in model.state_dict().items():
        assert torch.equal(back["model"][k], v), k
    data = bytearray(path.read_bytes())
    data[_tensor_offset(bytes(data)) + 5] ^= 0x10
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=False)  # torch itself loads it
    with pytest.raises(InputError, match=r"last\.pt: checkpoint is damaged"):
        open_checkpoint(ck, True, cfg)
    torch.save(state, path)  # a checkpoint from before digests resumes unchecked
    assert open_checkpoint(ck, True, cfg)[1]["epoch"] == 1


def test_digest_covers_scalar_and_empty_tensors():
    from imcodec.learned.zoo import state_digest

    state = {"bn.num_batches_tracked": torch.tensor(5), "empty": torch.empty(0), "w": torch.ones(2, 3)}
    d = state_digest(state)
    assert d == state_digest({k: v.clone() for k, v in state.items()})
    assert d != state_digest({**state, "bn.num_batches_tracked": torch.tensor(6)})
    assert d != state_digest({**state, "w": torch.ones(3, 2)})  # same bytes, other shape


def test_every_shipped_pytorch_weights_file_carries_a_matching_digest():
    from imcodec.learned.zoo import read_weights, state_digest
    from imcodec.learned.zoo_header import WEIGHTS_DIR

    files = sorted(WEIGHTS_DIR.glob("*.pt"))
    assert len(files) >= 4
    for path in files:
        payload = read_weights(path)
        assert payload["digest"] == state_digest(payload["state_dict"]), path.name


def test_shipped_weights_load():
    path = shipped_weights(4)
    model, info = load_upsampler(4)
    assert info["weights"] == str(path) and model.config.factor == 4
    assert path.stat().st_size <= 5 * 1024 * 1024
    assert info["meta"].get("command", "").startswith("imcodec train upsample")


# ---------------------------------------------------------------------------------------- training

def test_train_records_history_and_refuses_bad_resume(tmp_path):
    pool = [("shell", shell(14))]
    cfg = T.TrainConfig(factor=4, synth=(), epochs=2, steps_per_epoch=2, batch_size=1, crop=24, val_crops=2,
                        channels=(8, 8, 8), head_channels=4)
    _, summary = T.train_upsampler(cfg, checkpoint_dir=tmp_path / "a", pool=pool)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert 0.0 <= summary["history"][-1]["val_precision"] <= 1.0
    other = T.TrainConfig(**{**cfg.__dict__, "lr": 1e-4})
    with pytest.raises(UsageError, match="other training settings"):
        T.train_upsampler(other, checkpoint_dir=tmp_path / "a", resume=True, pool=pool)
    with pytest.raises(UsageError, match="no checkpoint"):
        T.train_upsampler(cfg, checkpoint_dir=tmp_path / "empty", resume=True, pool=pool)


def test_resume_continues_identically(tmp_path):
    pool = [("shell", shell(14))]
    cfg = T.TrainConfig(factor=4, synth=(), epochs=2, steps_per_epoch=2, batch_size=1, crop=24, val_crops=1,
                        channels=(8, 8, 8), head_channels=4)
    straight, _ = T.train_upsampler(cfg, checkpoint_dir=tmp_path / "s", pool=pool)
    ck = torch.load(tmp_path / "s" / "last.pt", weights_only=False)
    # rewind the checkpoint to epoch 1 by training epoch 1 alone under the same settings
    state1 = _train_first_epoch(cfg, pool, tmp_path / "r")
    assert state1["epoch"] == 1
    resumed, _ = T.train_upsampler(cfg, checkpoint_dir=tmp_path / "r", resume=True, pool=pool)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert ck["epoch"] == 2


def _train_first_epoch(cfg, pool, directory):
    """Run the 2-epoch configuration but interrupt it at the first step of epoch 2."""
    class Stop(Exception):
        pass

    def on_step(ev):
        if ev.get("epoch") == 2 and "loss" in ev:
            raise Stop

    with pytest.raises(Stop):
        T.train_upsampler(cfg, checkpoint_dir=directory, on_step=on_step, pool=pool)
    return torch.load(directory / "last.pt", weights_only=False)


# ------------------------------------------------------------------------------------- API and CLI

def test_api_upsample_writes_factor_times_points(tmp_path):
    from imcodec import api
    from imcodec.io.ply import read_ply, write_ply

    pts = shell(12, keep=0.25, seed=7).astype(np.float64)
    cols = np.tile(np.array([[10, 200, 30]], np.uint8), (len(pts), 1))
    src, dst, w = tmp_path / "in.ply", tmp_path / "out.ply", tmp_path / "w.pt"
    write_ply(PointCloud(points=pts, colors=cols), src)
    save_weights(w, tiny_model(4))
    res = api.upsample(src, dst, factor=4, weights=w)
    out = read_ply(dst)
    assert res["output_points"] == len(out) == 4 * len(pts)
    assert out.colors is not None and np.all(out.colors == cols[0])
    with pytest.raises(UsageError, match="CUDA is not available") if not torch.cuda.is_available() else _nullctx():
        api.upsample(src, dst, factor=4, weights=w, device="cuda")
    with pytest.raises(UsageError, match="--factor must be 2, 4 or 8"):
        api.upsample(src, dst, factor=3, weights=w)
    with pytest.raises(InputError, match="expected 8x"):
        api.upsample(src, dst, factor=8, weights=w)


@pytest.mark.skipif(minkowski_available(), reason="MinkowskiEngine is installed here")
def test_minkowski_engine_missing_says_how_to_install(tmp_path):
    from imcodec import api

    with pytest.raises(UsageError, match="build_minkowski.sh"):
        api.upsample(tmp_path / "x.ply", tmp_path / "y.ply", engine="minkowski")


def test_cli_upsample_errors_and_json(tmp_path):
    from imcodec.cli import main
    from imcodec.io.ply import write_ply

    src, w = tmp_path / "in.ply", tmp_path / "w.pt"
    write_ply(PointCloud(points=shell(10, keep=0.25, seed=2).astype(np.float64)), src)
    save_weights(w, tiny_model(2))
    assert main(["upsample", str(src), "-o", str(tmp_path / "o.ply"), "--factor", "4", "--weights", str(w)]) == 1
    assert main(["upsample", str(src), "-o", str(tmp_path / "o.ply"), "--engine", "nope"]) == 2
    assert main(["-q", "upsample", str(src), "-o", str(tmp_path / "o.ply"), "--factor", "2",
                 "--weights", str(w)]) == 0


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_cli_train_upsample_writes_loadable_weights(tmp_path):
    from imcodec.cli import main
    from imcodec.io.ply import write_ply

    src, out = tmp_path / "shell.ply", tmp_path / "w.pt"
    write_ply(PointCloud(points=shell(14).astype(np.float64)), src)
    args = ["-q", "train", "upsample", "--data", str(src), "--no-synth", "--factor", "2", "--epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "1", "--crop", "24", "-o", str(out)]
    assert main(args) == 0
    model, info = load_upsampler(2, out)
    assert model.config.factor == 2
    assert info["meta"]["data"] == [str(src)] and len(info["meta"]["history"]) == 1
    assert main(["-q", "train", "upsample", "--data", str(tmp_path / "none.ply"), "-o", str(out)]) == 1
    assert main(["-q", "train", "upsample", "--factor", "3", "--no-synth", "--data", str(src), "-o", str(out)]) == 2

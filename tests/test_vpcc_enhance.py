"""Learned V-PCC enhancement: depth denoiser (decoder hook) and artifact removal, weights, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imcodec.errors import InputError, UsageError
from imcodec.learned.depth_denoise import DenoiserConfig, DualDenoiser, denoise_images, load_denoiser
from imcodec.learned.depth_denoise import weights_bytes as denoise_bytes
from imcodec.learned.enhance_data import DepthPair
from imcodec.learned.models import build_model
from imcodec.learned.restore import load_restorer, restore_config, restore_points
from imcodec.learned.restore import weights_bytes as restore_bytes
from imcodec.learned.train_denoise import DenoiseTrainConfig, masked_mse, sample_batch, train_denoiser
from imcodec.metrics.psnr import compute_metrics
from imcodec.synth import make_cloud
from imcodec.types import PointCloud


def _perturbed_denoiser(seed: int = 0) -> DualDenoiser:
    """A small denoiser whose output differs from its input (the last layers start at zero)."""
    torch.manual_seed(seed)
    model = DualDenoiser(DenoiserConfig(channels=4))
    with torch.no_grad():
        for net in (model.near, model.far):
            net.body[-1].weight.normal_(0, 0.3)
            net.body[-1].bias.fill_(0.1)
    return model.eval()


@pytest.fixture(scope="module")
def denoise_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "dn.pt"
    path.write_bytes(denoise_bytes(_perturbed_denoiser(), {"test": True}))
    return path


@pytest.fixture(scope="module")
def identity_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "identity.pt"
    path.write_bytes(denoise_bytes(DualDenoiser(DenoiserConfig(channels=4))))  # zero last layers
    return path


@pytest.fixture(scope="module")
def restore_file(tmp_path_factory):
    torch.manual_seed(1)
    model = build_model(restore_config((4, 8), head_channels=4, head_convs=0))
    path = tmp_path_factory.mktemp("w") / "rs_r1.pt"
    path.write_bytes(restore_bytes(model, "r1", {"r1": 0.9}))
    return path


def _images(rng, h=48, w=64):
    yy, xx = np.mgrid[0:h, 0:w]
    true0 = np.clip(np.rint(60 + 0.5 * xx + 0.3 * yy), 0, 255).astype(np.uint8)
    true1 = np.clip(true0.astype(int) + 2, 0, 255).astype(np.uint8)
    noisy = lambda t: np.clip(np.rint(t + rng.normal(0, 1.5, t.shape)), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[4:h - 4, 6:w - 6] = True
    edge = mask & ~np.pad(mask, 1)[2:, 1:-1] | mask & ~np.pad(mask, 1)[:-2, 1:-1]
    return true0, true1, noisy(true0), noisy(true1), mask, edge


def test_denoise_images_shape_dtype_mask_and_determinism(rng):
    t0, t1, d0, d1, mask, edge = _images(rng)
    model = _perturbed_denoiser()
    a0, a1 = denoise_images(model, d0, d1, mask, edge, 255)
    b0, b1 = denoise_images(model, d0, d1, mask, edge, 255)
    assert a0.shape == d0.shape and a0.dtype == np.uint8 and a1.dtype == np.uint8
    assert np.array_equal(a0, b0) and np.array_equal(a1, b1)
    assert np.array_equal(a0[~mask], d0[~mask]) and np.array_equal(a1[~mask], d1[~mask])
    assert not np.array_equal(a0[mask], d0[mask])  # the perturbed network does change depths
    n0, none = denoise_images(model, d0, None, mask, edge, 255)
    assert none is None and n0.shape == d0.shape


def test_tiled_denoising_equals_one_pass_over_the_canvas(rng, monkeypatch):
    """Tiles computed from windows widened by the networks' reach give the single-pass result; an
    unoccupied tile is skipped (left unchanged)."""
    import imcodec.learned.depth_denoise as dd

    _, _, d0, d1, mask, edge = _images(rng, h=70, w=90)
    mask[:, 64:] = False  # the right-hand tiles hold no occupied pixel
    edge &= mask
    model = _perturbed_denoiser()
    monkeypatch.setattr(dd, "TILE", 1024)
    one0, one1 = denoise_images(model, d0, d1, mask, edge, 255)
    near_one, _ = denoise_images(model, d0, None, mask, edge, 255)
    monkeypatch.setattr(dd, "TILE", 16)
    assert dd.halo_pixels(model.config) > 16  # the windows overlap several tiles
    got0, got1 = denoise_images(model, d0, d1, mask, edge, 255)
    near_got, _ = denoise_images(model, d0, None, mask, edge, 255)
    assert np.array_equal(got0, one0) and np.array_equal(got1, one1) and np.array_equal(near_got, near_one)
    assert not np.array_equal(one1[mask], d1[mask])


def test_identity_network_leaves_depths_unchanged(rng, identity_file):
    t0, t1, d0, d1, mask, edge = _images(rng)
    model, _ = load_denoiser(identity_file)
    a0, a1 = denoise_images(model, d0, d1, mask, edge, 255)
    assert np.array_equal(a0, d0) and np.array_equal(a1, d1)


def test_denoiser_training_loss_decreases(rng):
    pairs = []
    for k in range(3):
        t0, t1, d0, d1, mask, edge = _images(np.random.default_rng(k))
        pairs.append(DepthPair(f"p{k}", "r1", t0, t1, d0, d1, mask, edge, np.zeros((0, 3)), np.zeros((0, 3))))
    batch = sample_batch(np.random.default_rng(9), pairs, 4, 32)
    def near_loss(model):
        from imcodec.learned.depth_denoise import near_only
        with torch.no_grad():
            return float(masked_mse(near_only(model, batch["dec0"], batch["mask"], batch["edge"]),
                                    batch["true0"], batch["mask"]))
    cfg = DenoiseTrainConfig(epochs=2, steps_per_epoch=60, batch_size=4, crop=32, lr=3e-2, val_crops=4, channels=8)
    model, summary = train_denoiser(cfg, pairs, threads=1)
    before = float(masked_mse(batch["dec0"], batch["true0"], batch["mask"]))  # untrained = identity
    assert near_loss(model) < 0.8 * before
    assert [h["stage"] for h in summary["history"]] == ["near", "far"]


def test_denoiser_checkpoint_resume(tmp_path):
    from dataclasses import replace

    from imcodec.errors import UsageError

    pairs = []
    for k in range(2):
        t0, t1, d0, d1, mask, edge = _images(np.random.default_rng(k))
        pairs.append(DepthPair(f"p{k}", "r1", t0, t1, d0, d1, mask, edge, np.zeros((0, 3)), np.zeros((0, 3))))
    cfg = DenoiseTrainConfig(epochs=2, steps_per_epoch=3, batch_size=2, crop=32, val_crops=4, channels=4)
    model, summary = train_denoiser(cfg, pairs, checkpoint_dir=tmp_path / "ck", threads=1)
    assert (tmp_path / "ck" / "last.pt").is_file()
    again, summary2 = train_denoiser(cfg, pairs, checkpoint_dir=tmp_path / "ck", resume=True, threads=1)
    assert summary2["history"] == summary["history"]
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(UsageError, match="other training settings"):
        train_denoiser(replace(cfg, lr=cfg.lr / 2), pairs, checkpoint_dir=tmp_path / "ck", resume=True, threads=1)
    with pytest.raises(UsageError, match="no checkpoint"):
        train_denoiser(cfg, pairs, checkpoint_dir=tmp_path / "none", resume=True, threads=1)


@pytest.fixture(scope="module")
def vpcc_stream(tmp_path_factory):
    from imcodec import api
    from imcodec.io.ply import write_ply

    d = tmp_path_factory.mktemp("s")
    write_ply(make_cloud("body", bits=7, seed=3), d / "body.ply")
    api.encode(d / "body.ply", d / "body.imc", codec="vpcc", options={"rate": "r1", "threads": 1})
    api.encode(d / "body.ply", d / "body_oct.imc", codec="octree", options={})
    return d


def test_decoder_with_denoiser_is_deterministic(vpcc_stream, denoise_file, identity_file):
    from imcodec import api
    from imcodec.io.ply import read_ply

    d = vpcc_stream
    api.decode(d / "body.imc", d / "plain.ply")
    api.decode(d / "body.imc", d / "id.ply", denoise_depth=True, weights=identity_file)
    api.decode(d / "body.imc", d / "a.ply", denoise_depth=True, weights=denoise_file)
    api.decode(d / "body.imc", d / "b.ply", denoise_depth=True, weights=denoise_file)
    plain, ident, a, b = (read_ply(d / f).points for f in ("plain.ply", "id.ply", "a.ply", "b.ply"))
    assert np.array_equal(plain, ident)  # the hook with an identity network changes nothing
    assert np.array_equal(a, b)
    assert np.all(a == np.rint(a))
    assert not np.array_equal(np.sort(a, axis=0), np.sort(plain, axis=0))


def test_decoder_with_the_shipped_lut_denoiser(vpcc_stream):
    """The default denoiser (look-up tables) changes the decoded points, deterministically, whatever
    the thread count; the stream's QP picks the r1 tables."""
    from imcodec import api
    from imcodec.io.ply import read_ply
    from imcodec.learned.denoiser import DepthDenoiser
    from imcodec.vpcc.codec import decode_components
    from imcodec.vpcc.config import StreamParams

    d = vpcc_stream
    api.decode(d / "body.imc", d / "plain_l.ply")
    api.decode(d / "body.imc", d / "lut.ply", denoise_depth=True)
    plain, lut = read_ply(d / "plain_l.ply").points, read_ply(d / "lut.ply").points
    assert not np.array_equal(np.sort(plain, axis=0), np.sort(lut, axis=0))
    from imcodec.io.bitstream import parse_stream, read_frame, read_stream_bytes

    data = read_stream_bytes(d / "body.imc")
    header, entries = parse_stream(data)
    frames = [read_frame(data, e) for e in entries]
    sp = StreamParams.unpack(header.params)
    assert sp.geometry_qp == 32
    one = DepthDenoiser(threads=1)
    assert one.is_lut and one.model.table_set(sp.geometry_qp) == 0
    a = decode_components(frames[0], sp, denoiser=one).points
    b = decode_components(frames[0], sp, denoiser=DepthDenoiser(threads=2)).points
    assert np.array_equal(a, b) and np.array_equal(np.sort(a, axis=0), np.sort(lut, axis=0))


def test_pixel_mask_is_the_mask_of_pixel_maps(vpcc_stream):
    from imcodec.io.bitstream import parse_stream, read_frame, read_stream_bytes
    from imcodec.learned.enhance_data import decoded_depth, pixel_mask, pixel_maps
    from imcodec.vpcc.config import StreamParams

    data = read_stream_bytes(vpcc_stream / "body.imc")
    header, entries = parse_stream(data)
    frames = [read_frame(data, e) for e in entries]
    sp = StreamParams.unpack(header.params)
    meta, occ, owner, _ = decoded_depth(frames[0], sp)
    mask = pixel_mask(meta, occ, owner, sp.b0)
    assert mask.any() and np.array_equal(mask, pixel_maps(meta, occ, owner, sp.b0)[0])


def test_denoise_depth_on_octree_stream_is_refused(vpcc_stream, denoise_file):
    from imcodec import api

    with pytest.raises(UsageError, match="octree"):
        api.decode(vpcc_stream / "body_oct.imc", vpcc_stream / "x.ply", denoise_depth=True, weights=denoise_file)


def test_wrong_weights_are_refused(denoise_file, restore_file):
    with pytest.raises(InputError, match="'restore'"):
        load_denoiser(restore_file)
    with pytest.raises(InputError, match="'denoise-depth'"):
        load_restorer(None, denoise_file)
    with pytest.raises(InputError, match="rate r1, not r3"):
        load_restorer("r3", restore_file)
    with pytest.raises(UsageError, match="r9"):
        load_restorer("r9", restore_file)
    model, info = load_restorer("r1", restore_file)
    assert info["keep_ratio"] == pytest.approx(0.9)


def test_shipped_restorer_prefers_the_rates_own_weights(tmp_path, monkeypatch):
    """shipped_restorer(rate) takes restore_<rate>.pt when the package has it, else the all-rate
    restore.pt (no rate, or a rate without its own file); and every shipped per-rate file loads for
    its rate and is refused for another."""
    from imcodec.learned import zoo
    from imcodec.learned.restore import RATES, shipped_restorer

    shipped = sorted(zoo.WEIGHTS_DIR.glob("restore_r*.pt"))
    for path in shipped:
        rate = path.stem.split("_")[1]
        assert rate in RATES, path.name
        _, info = load_restorer(rate)
        assert info["rate"] == rate and info["weights"] == str(path)
        other = "r5" if rate != "r5" else "r1"
        with pytest.raises(InputError, match=f"rate {rate}, not {other}"):
            load_restorer(other, path)
    torch.manual_seed(2)
    model = build_model(restore_config((4, 8), head_channels=4, head_convs=0))
    (tmp_path / "restore.pt").write_bytes(restore_bytes(model, "all", {"all": 1.1, "r2": 1.2}))
    (tmp_path / "restore_r1.pt").write_bytes(restore_bytes(model, "r1", {"r1": 0.95}))
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    assert shipped_restorer("r1") == tmp_path / "restore_r1.pt"
    assert shipped_restorer("r2") == shipped_restorer(None) == tmp_path / "restore.pt"
    assert load_restorer("r1")[1]["keep_ratio"] == pytest.approx(0.95)
    assert load_restorer("r2")[1]["keep_ratio"] == pytest.approx(1.2)
    assert load_restorer(None)[1]["keep_ratio"] == pytest.approx(1.1)


def test_restore_keeps_k_candidates_within_one_voxel(restore_file):
    from scipy.spatial import cKDTree

    model, info = load_restorer("r1", restore_file)
    pts = make_cloud("sphere", bits=6, seed=1).points
    out = restore_points(model, pts, info["keep_ratio"], chunk=32, margin=8)
    assert len(out) == round(0.9 * len(pts))
    assert len(np.unique(out, axis=0)) == len(out)
    dist, _ = cKDTree(pts).query(out, k=1, p=np.inf)
    assert dist.max() <= 1
    again = restore_points(model, pts, info["keep_ratio"], chunk=32, margin=8)
    assert np.array_equal(np.sort(out, axis=0), np.sort(again, axis=0))


def test_keep_exponent_counts_from_the_networks_expected_occupancy(tmp_path):
    """With meta.keep_exponent a < 1 the kept count is round(ratio x N^a x E^(1-a)), E the sum of the
    candidates' sigmoid probabilities (computed here from the raw logits); without the entry, and for
    a hinted ratio, it stays round(ratio x N). A malformed exponent is refused on load."""
    from imcodec.learned.restore import restore_cloud
    from imcodec.learned.upsample import score_candidates
    from imcodec.types import PointCloud

    torch.manual_seed(3)
    model = build_model(restore_config((4, 8), head_channels=4, head_convs=0))
    pts = np.unique(make_cloud("sphere", bits=6, seed=2).points.astype(np.int64), axis=0)
    _, logit = score_candidates(model.eval(), pts, 32, 8)
    expected = float(np.sum(1.0 / (1.0 + np.exp(-logit.astype(np.float64)))))
    assert abs(expected - len(pts)) > 20  # the two counts differ, so the test can tell them apart
    for a in (0.0, 0.5):
        path = tmp_path / f"e{a}.pt"
        path.write_bytes(restore_bytes(model, "r2", {"r2": 1.1}, exponent={"r2": a}))
        m, info = load_restorer("r2", path)
        assert info["keep_exponent"] == a
        out = restore_cloud(m, info, PointCloud(pts.astype(np.float64), None), "r2")
        assert len(out) == round(1.1 * len(pts) ** a * expected ** (1 - a))
        hinted = restore_cloud(m, info, PointCloud(pts.astype(np.float64), None), "r2", ratio=1.05)
        assert len(hinted) == round(1.05 * len(pts))
    path = tmp_path / "old.pt"
    path.write_bytes(restore_bytes(model, "r2", {"r2": 1.1}))
    m, info = load_restorer("r2", path)
    assert info["keep_exponent"] == 1.0
    assert len(restore_points(m, pts, info["keep_ratio"], chunk=32, margin=8)) == round(1.1 * len(pts))
    for bad in (1.5, "x", True):
        path = tmp_path / "bad.pt"
        path.write_bytes(restore_bytes(model, "r2", {"r2": 1.1}, meta={"keep_exponent": {"r2": bad}}))
        with pytest.raises(InputError, match="keep exponent"):
            load_restorer("r2", path)


def test_cli_restore_decode_and_train(vpcc_stream, denoise_file, restore_file, run_cli, tmp_path):
    from imcodec.io.ply import read_ply, write_ply

    d = vpcc_stream
    code, out, err = run_cli("decode", d / "body.imc", "-o", tmp_path / "dn.ply", "--denoise-depth",
                             "--weights", denoise_file, "--json")
    assert code == 0, err
    code, out, err = run_cli("decode", d / "body_oct.imc", "-o", tmp_path / "x.ply", "--denoise-depth",
                             "--weights", denoise_file)
    assert code == 2 and "octree" in err
    code, out, err = run_cli("decode", d / "body.imc", "-o", tmp_path / "dr.ply", "--restore", "--restore-rate",
                             "r1", "--restore-weights", restore_file)
    assert code == 0, err
    from imcodec import api

    api.decode(d / "body.imc", tmp_path / "plain.ply")
    plain = len(np.unique(read_ply(tmp_path / "plain.ply").points, axis=0))
    assert len(read_ply(tmp_path / "dr.ply")) == round(0.9 * plain)
    code, out, err = run_cli("restore", tmp_path / "dn.ply", "-o", tmp_path / "rs.ply", "--rate", "r1",
                             "--weights", restore_file, "--json")
    assert code == 0, err
    assert len(read_ply(tmp_path / "rs.ply")) == round(0.9 * len(np.unique(read_ply(tmp_path / "dn.ply").points, axis=0)))
    code, out, err = run_cli("restore", tmp_path / "dn.ply", "-o", tmp_path / "rs.ply", "--rate", "r2",
                             "--weights", restore_file)
    assert code == 1 and "r1" in err
    code, out, err = run_cli("restore", tmp_path / "dn.ply", "-o", tmp_path / "rp.ply", "--rate", "r1",
                             "--weights", restore_file, "--points", "777")
    assert code == 0, err
    assert len(read_ply(tmp_path / "rp.ply")) == 777
    write_ply(make_cloud("sphere", bits=6, seed=5), tmp_path / "train.ply")
    code, out, err = run_cli("train", "denoise-depth", "--arch", "cnn", "--data", tmp_path / "train.ply", "--no-synth",
                             "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "16",
                             "--channels", "4", "--cache-dir", tmp_path / "cache", "-o", tmp_path / "w.pt", "--json")
    assert code == 0, err
    model, info = load_denoiser(tmp_path / "w.pt")
    assert info["meta"]["rates"] == ["r1", "r2", "r3", "r4", "r5"] and model.config.channels == 4
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 5
    # fine-tuning: the width comes from --init; a different --channels is a usage error
    tune = ("train", "denoise-depth", "--arch", "cnn", "--data", tmp_path / "train.ply", "--no-synth", "--epochs", "2",
            "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "16", "--cache-dir", tmp_path / "cache",
            "--init", tmp_path / "w.pt")
    code, out, err = run_cli(*tune, "-o", tmp_path / "w2.pt", "--json")
    assert code == 0, err
    model2, info2 = load_denoiser(tmp_path / "w2.pt")
    assert model2.config.channels == 4 and info2["meta"]["train_config"]["init"] == str(tmp_path / "w.pt")
    code, out, err = run_cli(*tune, "--channels", "8", "-o", tmp_path / "w3.pt")
    assert code == 2 and "--channels 8" in err and not (tmp_path / "w3.pt").exists()
    # the look-up-table denoiser (the default --arch; no synthetic shapes unless --synth) from the same pair
    # cache; CNN-only options refused
    code, out, err = run_cli("train", "denoise-depth", "--data", tmp_path / "train.ply",
                             "--cache-dir", tmp_path / "cache", "-o", tmp_path / "lut.npz", "--json")
    assert code == 0, err
    lut, info = load_denoiser(tmp_path / "lut.npz")
    assert info["arch"] == "dualpath-lut" and lut.qps == (32, 28, 24, 20, 16)
    assert info["meta"]["data"] == [str(tmp_path / "train.ply")]
    code, out, err = run_cli("train", "denoise-depth", "--data", tmp_path / "train.ply", "--no-synth",
                             "--channels", "8", "-o", tmp_path / "lut2.pt")
    assert code == 2 and "--arch cnn" in err and not (tmp_path / "lut2.pt").exists()
    code, out, err = run_cli("decode", d / "body.imc", "-o", tmp_path / "dl.ply", "--denoise-depth",
                             "--weights", tmp_path / "lut.npz")
    assert code == 0, err
    # the restore trainer through the CLI, one rate (a per-rate model), from the same pair cache
    code, out, err = run_cli("train", "restore", "--data", tmp_path / "train.ply", "--no-synth", "--rate", "r2",
                             "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "1", "--crop", "16",
                             "--cache-dir", tmp_path / "cache", "-o", tmp_path / "r.pt", "--json")
    assert code == 0, err
    assert load_restorer("r2", tmp_path / "r.pt")[1]["rate"] == "r2"
    with pytest.raises(InputError, match="r2"):
        load_restorer("r1", tmp_path / "r.pt")
    # fine-tuning from those weights: at a vanishing learning rate the result equals them
    fine = ("train", "restore", "--data", tmp_path / "train.ply", "--no-synth", "--rate", "r2", "--epochs", "1",
            "--steps-per-epoch", "1", "--batch-size", "1", "--crop", "16", "--lr", "1e-9", "--cache-dir",
            tmp_path / "cache", "--json")
    code, out, err = run_cli(*fine, "--init", tmp_path / "r.pt", "-o", tmp_path / "r_ft.pt")
    assert code == 0, err
    before, after = load_restorer("r2", tmp_path / "r.pt")[0], load_restorer("r2", tmp_path / "r_ft.pt")[0]
    for (k, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        if a.is_floating_point():  # lr 1e-9: one step moves nothing measurably
            assert torch.allclose(a, b, atol=1e-5), k
    code, out, err = run_cli(*fine, "--init", tmp_path / "lut.npz", "-o", tmp_path / "r_bad.pt")
    assert code != 0 and "lut.npz" in err and not (tmp_path / "r_bad.pt").exists()
    assert len(err.strip().splitlines()) == 1
    # --epochs 0: the same weights, keep ratio tuned again (a listed ratio), the training record kept
    retune = ("train", "restore", "--data", tmp_path / "train.ply", "--no-synth", "--rate", "r2", "--epochs", "0",
              "--cache-dir", tmp_path / "cache", "--json")
    code, out, err = run_cli(*retune, "--init", tmp_path / "r.pt", "-o", tmp_path / "r_rt.pt")
    assert code == 0, err
    from imcodec.learned.train_restore import TUNE_EXPONENTS, TUNE_RATIOS, TUNE_SUPPORT

    (m0, i0), (m1, i1) = load_restorer("r2", tmp_path / "r.pt"), load_restorer("r2", tmp_path / "r_rt.pt")
    assert all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m1.state_dict().values()))
    assert i1["keep_ratio"] in TUNE_RATIOS and i1["meta"]["keep_ratio"]["r2"] == i1["keep_ratio"]
    assert i1["support"] in TUNE_SUPPORT and i1["meta"]["support"]["r2"] == list(i1["support"])
    assert i1["keep_exponent"] in TUNE_EXPONENTS and i1["meta"]["keep_exponent"]["r2"] == i1["keep_exponent"]
    assert i1["meta"]["history"] == i0["meta"]["history"] and i1["meta"]["retune"]["rates"] == ["r2"]
    assert i1["meta"]["retune"]["keep_ratio_before"] == i0["meta"]["keep_ratio"]
    code, out, err = run_cli(*retune, "-o", tmp_path / "r_rt2.pt")
    assert code == 2 and "--init" in err and not (tmp_path / "r_rt2.pt").exists()


def test_restore_after_the_denoiser_keeps_the_ratio_of_the_denoised_voxels(vpcc_stream, restore_file):
    """decode --denoise-depth --restore keeps the weights' ratio (0.9 here) of the denoised cloud's
    voxels, as --restore alone does of the plain decoder's."""
    from imcodec import api
    from imcodec.io.ply import read_ply

    d = vpcc_stream
    count = lambda name: len(np.unique(read_ply(d / name).points, axis=0))
    api.decode(d / "body.imc", d / "dn2.ply", denoise_depth=True)
    api.decode(d / "body.imc", d / "dr2.ply", denoise_depth=True, restore=True, restore_rate="r1",
               restore_weights=restore_file)
    assert count("dr2.ply") == round(0.9 * count("dn2.ply"))
    api.decode(d / "body.imc", d / "pl2.ply")
    api.decode(d / "body.imc", d / "rs2.ply", restore=True, restore_rate="r1", restore_weights=restore_file)
    assert count("rs2.ply") == round(0.9 * count("pl2.ply"))
    assert count("dn2.ply") != count("pl2.ply")  # not trivially the same rule


def test_restore_without_a_rate_uses_the_streams_rate(vpcc_stream, tmp_path):
    """decode --restore without --restore-rate takes the rate from the V-PCC stream's geometry QP
    (r1 here: ratio 0.9); a QP of no CTC rate, or an octree stream, gets the all-rate ratio (1.1)."""
    from imcodec import api
    from imcodec.api.learned import stream_rate
    from imcodec.io.bitstream import parse_stream
    from imcodec.io.ply import read_ply

    torch.manual_seed(1)
    model = build_model(restore_config((4, 8), head_channels=4, head_convs=0))
    w = tmp_path / "rs_all.pt"
    w.write_bytes(restore_bytes(model, "all", {"r1": 0.9, "r2": 1.02, "all": 1.1}))
    d = vpcc_stream
    count = lambda p: len(np.unique(read_ply(p).points, axis=0))
    api.encode(d / "body.ply", tmp_path / "q30.imc", codec="vpcc", options={"geometry_qp": 30, "threads": 1})
    for stream, rate, ratio in ((d / "body.imc", "r1", 0.9), (tmp_path / "q30.imc", None, 1.1),
                                (d / "body_oct.imc", None, 1.1)):
        assert stream_rate(parse_stream(stream.read_bytes())[0]) == rate
        api.decode(stream, tmp_path / "pl.ply")
        api.decode(stream, tmp_path / "rs.ply", restore=True, restore_weights=w)
        assert count(tmp_path / "rs.ply") == round(ratio * count(tmp_path / "pl.ply")), stream.name
    w2 = tmp_path / "rs_r2.pt"  # a per-rate model for another rate than the stream's: refused
    w2.write_bytes(restore_bytes(model, "r2", {"r2": 1.0}))
    with pytest.raises(InputError, match="r2"):
        api.decode(d / "body.imc", tmp_path / "x.ply", restore=True, restore_weights=w2)


def test_restore_hint_is_the_encoders_best_ratio_and_the_decoder_uses_it(vpcc_stream, restore_file, tmp_path):
    """encode --restore-hint: each frame carries two per-mille keep ratios, for the plain and for the
    depth-denoised decode, each at least as good (D1 against the source, computed here with pc_error's
    metrics) as every ratio 0.05 apart in 0.9..1.3 (it is the best per-mille ratio in 0.85..1.4); decode
    --restore keeps the ratio of its path."""
    from imcodec import api
    from imcodec.io.bitstream import parse_stream, read_frame
    from imcodec.io.ply import read_ply
    from imcodec.learned.restore import RATIO_COMPONENT, hinted_ratio

    d = vpcc_stream
    model, _ = load_restorer("r1", restore_file)
    weights = tmp_path / "w125.pt"  # the fixture's network with ratio 1.25, which no hint below equals
    weights.write_bytes(restore_bytes(model, "r1", {"r1": 1.25}))
    res = api.encode(d / "body.ply", tmp_path / "h.imc", codec="vpcc", options={"rate": "r1", "threads": 1},
                     restore_hint=True, restore_weights=weights)
    assert res["components"][RATIO_COMPONENT] == 4 and res["hint_seconds"] > 0
    data = (tmp_path / "h.imc").read_bytes()
    comps = read_frame(data, parse_stream(data)[1][0])
    assert {k: v for k, v in comps.items() if k != RATIO_COMPONENT} == read_frame(
        (d / "body.imc").read_bytes(), parse_stream((d / "body.imc").read_bytes())[1][0])  # nothing else changed
    src = read_ply(d / "body.ply").points
    ref = PointCloud(np.unique(src, axis=0), None)
    d1 = lambda p: compute_metrics(ref, PointCloud(p.astype(np.float64), None), 1023.0)["d1_psnr"]
    count = lambda p: len(np.unique(read_ply(p).points, axis=0))
    for denoised, extra in ((False, {}), (True, {"denoise_depth": True})):
        ratio = hinted_ratio(comps, denoised=denoised)
        assert ratio == round(ratio, 3) and 0.85 <= ratio <= 1.4
        assert ratio != 1.25  # (seeded) so the decodes below tell the hint from the weights' ratio
        api.decode(tmp_path / "h.imc", tmp_path / "in.ply", **extra)
        dec = np.unique(read_ply(tmp_path / "in.ply").points, axis=0)
        got = d1(restore_points(model, dec, ratio))
        for r in [0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3]:
            assert got >= d1(restore_points(model, dec, r)) - 1e-9, (denoised, r)
        api.decode(tmp_path / "h.imc", tmp_path / "rs.ply", restore=True, restore_weights=weights, **extra)
        assert count(tmp_path / "rs.ply") == round(ratio * len(dec)), denoised
    # refused before any coding
    with pytest.raises(UsageError, match="V-PCC"):
        api.encode(d / "body.ply", tmp_path / "o.imc", codec="octree", restore_hint=True)
    with pytest.raises(UsageError, match="lossless"):
        api.encode(d / "body.ply", tmp_path / "o.imc", codec="vpcc", options={"lossless": True}, restore_hint=True)
    with pytest.raises(UsageError, match="--restore-hint"):
        api.encode(d / "body.ply", tmp_path / "o.imc", codec="vpcc", restore_weights=restore_file)
    assert not (tmp_path / "o.imc").exists()


def test_restore_hint_in_a_group_of_frames(tmp_path, restore_file):
    """With --gof the encoder's denoised decode follows the group: every frame's second ratio is the
    best (coarse grid, as above) for what decode --denoise-depth gives for that frame."""
    from imcodec import api
    from imcodec.io.bitstream import parse_stream, read_frame
    from imcodec.io.ply import read_ply
    from imcodec.learned.restore import hinted_ratio

    seq = tmp_path / "seq"
    frames = sorted(api.synth(seq, shape="body", bits=7, frames=3, motion="rigid", seed=4))
    assert len(frames) == 3
    api.encode(seq, tmp_path / "g.imc", codec="vpcc", options={"rate": "r1", "gof": 3, "threads": 1},
               restore_hint=True, restore_weights=restore_file)
    data = (tmp_path / "g.imc").read_bytes()
    entries = parse_stream(data)[1]
    api.decode(tmp_path / "g.imc", tmp_path / "dn", denoise_depth=True)
    outs = sorted((tmp_path / "dn").glob("*.ply"))
    model, _ = load_restorer("r1", restore_file)
    for entry, src, out in zip(entries, frames, outs):
        ratio = hinted_ratio(read_frame(data, entry), denoised=True)
        ref = PointCloud(np.unique(read_ply(src).points, axis=0), None)
        d1 = lambda p: compute_metrics(ref, PointCloud(p.astype(np.float64), None), 1023.0)["d1_psnr"]
        dec = np.unique(read_ply(out).points, axis=0)
        got = d1(restore_points(model, dec, ratio))
        assert all(got >= d1(restore_points(model, dec, r)) - 1e-9 for r in (0.9, 1.0, 1.1, 1.2, 1.3))


def test_cli_restore_hint_flags(vpcc_stream, restore_file, run_cli, tmp_path):
    import json

    d = vpcc_stream
    hint = ("encode", d / "body.ply", "-o", tmp_path / "h.imc", "--codec", "vpcc", "--restore-hint",
            "--restore-weights", restore_file, "--json")
    code, out, err = run_cli(*hint, "--rate", "r2")  # weights trained for r1: refused before coding
    assert code != 0 and "r1, not r2" in err and not (tmp_path / "h.imc").exists()
    code, out, err = run_cli(*hint, "--rate", "r1")
    assert code == 0, err
    assert json.loads(out)["components"]["restore_ratio"] == 4
    code, out, err = run_cli("encode", d / "body.ply", "-o", tmp_path / "o.imc", "--restore-hint")
    assert code == 2 and "V-PCC" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.imc").exists()


def test_damaged_restore_hint_is_a_bitstream_error():
    from imcodec.errors import BitstreamError
    from imcodec.learned.restore import hinted_ratio, ratio_bytes

    assert hinted_ratio({}) is None and hinted_ratio({"restore_ratio": ratio_bytes(1.085)}) == 1.085
    assert hinted_ratio({"restore_ratio": ratio_bytes(1.085)}, denoised=True) is None
    both = {"restore_ratio": ratio_bytes(1.085, 0.97)}
    assert hinted_ratio(both) == 1.085 and hinted_ratio(both, denoised=True) == 0.97
    for bad in (b"", b"\x04", b"\x04\x3d\x00", b"\x04\x3d\x04\x3d\x00", (499).to_bytes(2, "big"),
                (2001).to_bytes(2, "big"), ratio_bytes(1.0) + (2001).to_bytes(2, "big")):
        with pytest.raises(BitstreamError, match="restore ratio"):
            hinted_ratio({"restore_ratio": bad})
    with pytest.raises(UsageError):
        ratio_bytes(3.0)


def test_damaged_source_count_is_a_bitstream_error():
    from imcodec.errors import BitstreamError
    from imcodec.vpcc.encoder import source_points

    assert source_points({}) is None and source_points({"source_points": b"\x81\x01"}) == 129
    for bad in (b"", b"\x80", b"\x05\x00"):
        with pytest.raises(BitstreamError):
            source_points({"source_points": bad})


def test_keep_ratio_tuning_picks_listed_ratios_per_rate(restore_file):
    from imcodec.learned.train_restore import TUNE_EXPONENTS, TUNE_RATIOS, TUNE_SUPPORT, keep_ratios, tune_keep_ratios

    model, _ = load_restorer("r1", restore_file)
    org = make_cloud("sphere", bits=6, seed=2).points.astype(np.int64)
    rng = np.random.default_rng(0)
    pairs = []
    for rate, drop in (("r1", 0.2), ("r5", 0.0)):
        dec = org + rng.integers(-1, 2, size=org.shape) * (rng.random((len(org), 1)) < 0.3)
        dec = dec[rng.random(len(dec)) >= drop]
        e = np.zeros((1, 1))
        pairs.append(DepthPair("x.ply", rate, e, e, e, e, e, e, dec, org))
    tuned = tune_keep_ratios(model, pairs)
    assert set(tuned["keep_ratio"]) == set(tuned["support"]) == {"r1", "r5", "all"}
    assert all(r in TUNE_RATIOS for r in tuned["keep_ratio"].values())
    assert all(tuple(w) in TUNE_SUPPORT for w in tuned["support"].values())
    assert len(tuned["gains"]["r1"]) == len(TUNE_RATIOS)
    assert len(tuned["best_by_support"]["r1"]) == len(TUNE_SUPPORT)
    assert all(a in TUNE_EXPONENTS for a in tuned["keep_exponent"].values())
    assert len(tuned["best_by_exponent"]["r1"]) == len(TUNE_EXPONENTS)
    # each gain is the whole cloud's D1 gain of restore at that ratio with the chosen support weights
    # and exponent (pc_error metrics, normals estimated)
    ref = PointCloud(org.astype(np.float64), None)
    dec = np.unique(pairs[0].decoded, axis=0)
    d1 = lambda p: compute_metrics(ref, PointCloud(p.astype(np.float64), None), 1023.0)["d1_psnr"]
    support, exponent = tuned["support"]["r1"], tuned["keep_exponent"]["r1"]
    for i in (0, TUNE_RATIOS.index(1.05), len(TUNE_RATIOS) - 1):
        out = restore_points(model, dec, TUNE_RATIOS[i], support=support, exponent=exponent)
        assert tuned["gains"]["r1"][i] == pytest.approx(d1(out) - d1(dec), abs=1e-4)
    best = tuned["keep_ratio"]["r1"]
    assert tuned["gains"]["r1"][TUNE_RATIOS.index(best)] == max(tuned["gains"]["r1"])
    assert max(tuned["gains"]["r1"]) == pytest.approx(max(tuned["best_by_support"]["r1"]))
    assert max(tuned["gains"]["r1"]) == pytest.approx(max(tuned["best_by_exponent"]["r1"]))
    # and no other support pair does better at its best ratio (one checked directly)
    other = next(w for w in TUNE_SUPPORT if tuple(w) != tuple(support))
    assert max(d1(restore_points(model, dec, r, support=other)) for r in (0.95, 1.0, 1.05)) - d1(dec) <= (
        max(tuned["gains"]["r1"]) + 1e-9)
    counts = keep_ratios(pairs)  # original / unique decoded voxels
    assert counts["r1"] == pytest.approx(len(org) / len(np.unique(pairs[0].decoded, axis=0)))


def test_local_reference_is_the_occupied_mean_of_each_window(rng):
    from imcodec.learned.depth_denoise import REF, local_reference

    d = rng.integers(0, 256, (1, 1, 23, 31)).astype(np.float32)
    m = (rng.random((1, 1, 23, 31)) < 0.4).astype(np.float32)
    got = local_reference(torch.from_numpy(d), torch.from_numpy(m)).numpy()[0, 0]
    r = REF // 2
    for y in range(23):
        for x in range(31):
            win = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
            n = m[0, 0][win].sum()
            want = (d[0, 0][win] * m[0, 0][win]).sum() / n if n else d[0, 0, y, x]
            assert got[y, x] == pytest.approx(want, rel=1e-5)


def test_keep_ratio_tuning_averages_sequences_not_frames(restore_file):
    """Two frames of one sequence weigh as much as one frame of another: the tuned gains equal the
    mean of the two sequences' own tunings."""
    from dataclasses import replace

    from imcodec.learned.train_restore import sequence_of, tune_keep_ratios

    assert sequence_of("/d/soldier_q08_0536.ply") == sequence_of("soldier_q08_0537.ply") != sequence_of(
        "basketball_player_00000001_vox10.ply")
    model, _ = load_restorer("r1", restore_file)
    rng = np.random.default_rng(3)
    e = np.zeros((1, 1))

    def pair(name, seed, drop):
        org = make_cloud("sphere", bits=6, seed=seed).points.astype(np.int64)
        dec = org + rng.integers(-1, 2, size=org.shape) * (rng.random((len(org), 1)) < 0.3)
        return DepthPair(name, "r1", e, e, e, e, e, e, dec[rng.random(len(dec)) >= drop], org)

    a = pair("a_0001.ply", 4, 0.25)
    a2 = replace(a, name="a_0002.ply")
    b = pair("b_0001.ply", 5, 0.0)
    one = [(0.0, 0.0)]
    both = tune_keep_ratios(model, [a, a2, b], supports=one)["gains"]["r1"]
    ga = tune_keep_ratios(model, [a], supports=one)["gains"]["r1"]
    gb = tune_keep_ratios(model, [b], supports=one)["gains"]["r1"]
    assert both == pytest.approx((np.array(ga) + np.array(gb)) / 2, abs=2e-4)
    frames = (2 * np.array(ga) + np.array(gb)) / 3
    assert not np.allclose(both, frames, atol=2e-4)  # the frame mean would differ

"""V-PCC groups of frames (issue #8): inter coding, consistent packing, 3D-motion hints, `imcodec motion`."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from imcodec import api
from imcodec.codecs import get_codec
from imcodec.errors import BitstreamError, InputError, UsageError
from imcodec.io.bitstream import StreamWriter, parse_stream, read_frame
from imcodec.io.hints import read_hints
from imcodec.io.ply import read_ply, write_ply
from imcodec.synth import make_sequence
from imcodec.types import PointCloud
from imcodec.vpcc.gofpack import match_patches
from imcodec.vpcc.inter import MODE_OWN, MODE_REF, MODE_REF_LAYERS, MODE_REF_PREDICTED, GofRecord, check_sequence
from imcodec.metrics.parallel import CHUNK
from imcodec.vpcc.encoder import atlas_frames
from imcodec.vpcc.motion import DecodedFrame, block_hints, correspond, predict_atlas, predict_colors
from imcodec.vpcc.patches import PatchSet

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def seq():
    return make_sequence("body", bits=8, frames=3, motion="rigid", color=True, seed=3)


def _code(clouds, attribute_layers=2, **options):
    codec = get_codec("vpcc")
    cfg = replace(codec.make_config({"rate": "r3", "gof": len(clouds), **options}),
                  attribute_layers=attribute_layers)
    state = {"export_hints": True}
    codes = codec.encode_group(clouds, cfg, state)
    writer = StreamWriter(codec.codec_id, codec.stream_params(cfg))
    for i, c in enumerate(codes):
        writer.add_frame(i, len(c.recon), c.components, c.needs_previous)
    return codes, writer.finish(bit_depth=9), state


@pytest.fixture(scope="module")
def coded(seq):
    return {hints: _code(seq, motion_hints=hints) for hints in (False, True)}


@pytest.mark.parametrize("hints", [False, True])
def test_decoder_equals_encoder_recon(coded, seq, hints):
    codes, data, _ = coded[hints]
    codec = get_codec("vpcc")
    header, entries = parse_stream(data)
    assert [e.needs_previous for e in entries] == [False, True, True]
    state: dict = {}
    for code, entry in zip(codes, entries):
        dec = codec.decode_frame(read_frame(data, entry), header, state)
        assert np.array_equal(dec.points, code.recon.points)
        assert np.array_equal(dec.colors, code.recon.colors)
    first = read_frame(data, entries[0])
    assert first["geometry_video"] and all(not read_frame(data, e)["geometry_video"] for e in entries[1:])


@pytest.mark.parametrize("hints", [False, True])
def test_denoised_output_does_not_feed_the_predictions(coded, hints):
    """A decoder-side depth filter changes what a GOF frame outputs, never what the next frame is
    predicted from (the encoder's reconstruction): with a filter that moves every depth by one, each
    frame has the plain decode's colours, pixel by pixel, and its positions differ by one voxel."""
    codes, data, _ = coded[hints]
    codec = get_codec("vpcc")
    header, entries = parse_stream(data)

    def shift(geo, meta, occ, owner, sp):  # every layer one unit nearer where all are >= 1 (same gaps)
        m = np.logical_and.reduce([f[0] > 0 for f in geo])
        return [(np.where(m, f[0] - 1, f[0]).astype(f[0].dtype),) + tuple(f[1:]) for f in geo]
    state: dict = {"depth_denoiser": shift}
    for code, entry in zip(codes, entries):
        dec = codec.decode_frame(read_frame(data, entry), header, state)
        assert len(dec) == len(code.recon)
        assert np.array_equal(dec.colors, code.recon.colors)
        moved = np.abs(dec.points - code.recon.points).sum(axis=1)
        assert moved.max() <= 1 and moved.mean() > 0.5


def test_reconstruction_is_close_to_input(coded, seq):
    from scipy.spatial import cKDTree

    codes, _, _ = coded[True]
    for code, cloud in zip(codes, seq):
        dist, idx = cKDTree(cloud.points).query(code.recon.points)
        assert np.percentile(dist, 99) <= 3.0
        err = np.abs(code.recon.colors.astype(float) - cloud.colors[idx].astype(float)).mean()
        assert err < 12.0


def test_hints_cut_colour_bits(coded):
    off = sum(len(c.components["attribute_video"]) for c in coded[False][0])
    on = sum(len(c.components["attribute_video"]) for c in coded[True][0])
    assert on < 0.95 * off
    # frames after the first: P-frames after the predicted T0 and T1 (two synthesised references)
    assert [GofRecord.unpack(c.components["gof"]).mode for c in coded[True][0]] == [MODE_OWN] + [MODE_REF_LAYERS] * 2


def _decodes_to_recon(codes, data):
    """Decode every frame of ``data`` in order, checking each against the encoder's reconstruction;
    returns (codec, header, entries)."""
    codec = get_codec("vpcc")
    header, entries = parse_stream(data)
    state: dict = {}
    for code, entry in zip(codes, entries):
        dec = codec.decode_frame(read_frame(data, entry), header, state)
        assert np.array_equal(dec.points, code.recon.points) and np.array_equal(dec.colors, code.recon.colors)
    return codec, header, entries


def test_one_texture_layer_predicts_t0_only(seq):
    """With one texture layer the colour video follows one synthesised reference (MODE_REF, the
    format of streams made before MODE_REF_LAYERS), and the decoder still reproduces the encoder."""
    codes, data, _ = _code(seq, motion_hints=True, attribute_layers=1)
    assert [GofRecord.unpack(c.components["gof"]).mode for c in codes] == [MODE_OWN, MODE_REF, MODE_REF]
    codec, header, entries = _decodes_to_recon(codes, data)
    # a record that claims two predicted layers in a one-layer stream is refused, not mis-decoded
    frame1 = dict(read_frame(data, entries[1]))
    frame1["gof"] = replace(GofRecord.unpack(frame1["gof"]), mode=MODE_REF_LAYERS).pack()
    state = {}
    codec.decode_frame(read_frame(data, entries[0]), header, state)
    with pytest.raises(BitstreamError, match="two texture layers for a stream with 1"):
        codec.decode_frame(frame1, header, state)


@pytest.mark.parametrize("refs, mode", [("predicted", MODE_REF_PREDICTED), ("t0", MODE_REF)])
def test_smaller_reference_sets_round_trip(seq, refs, mode):
    """--hint-refs predicted / t0 code later frames against fewer synthesised references (t0: the
    one-reference format of streams made before MODE_REF_LAYERS, now with two texture layers) and
    decode to the encoder's reconstruction."""
    codes, data, _ = _code(seq, motion_hints=True, hint_refs=refs)
    assert [GofRecord.unpack(c.components["gof"]).mode for c in codes] == [MODE_OWN, mode, mode]
    _decodes_to_recon(codes, data)


def test_hint_refs_option_is_checked():
    from imcodec.vpcc.config import config_from_options

    assert config_from_options({"hint_refs": "Predicted"}).hint_refs == "predicted"
    with pytest.raises(UsageError, match="--hint-refs must be one of all, predicted, t0, got 'some'"):
        config_from_options({"hint_refs": "some"})
    with pytest.raises(UsageError, match="needs --motion-hints on"):
        config_from_options({"motion_hints": "off", "hint_refs": "all"})


def test_hints_identical_on_both_sides(coded):
    codes, data, enc_state = coded[True]
    codec = get_codec("vpcc")
    header, entries = parse_stream(data)
    state: dict = {"export_hints": True}
    for e in entries:
        codec.decode_frame(read_frame(data, e), header, state)
    assert len(enc_state["hints"]) == len(state["hints"]) == 2
    for (n1, h1, w1, ht1), (n2, h2, w2, ht2) in zip(enc_state["hints"], state["hints"]):
        assert (n1, w1, ht1) == (n2, w2, ht2)
        assert np.array_equal(h1, h2) and len(h1) > 0


def test_later_frame_alone_is_rejected(coded):
    _, data, _ = coded[False]
    codec = get_codec("vpcc")
    header, entries = parse_stream(data)
    with pytest.raises(BitstreamError, match="predecessors"):
        codec.decode_frame(read_frame(data, entries[1]), header, {})


def test_random_access_equals_full_decode(tmp_path, seq):
    src = tmp_path / "seq"
    src.mkdir()
    clouds = seq + make_sequence("body", bits=8, frames=4, motion="rigid", color=True, seed=3)[3:]
    for i, c in enumerate(clouds):
        write_ply(c, src / f"f_{i:04d}.ply")
    stream = tmp_path / "s.imc"
    api.encode(src, stream, codec="vpcc", options={"gof": 3, "rate": "r3"})
    info = api.info(stream)
    assert [f["needs_previous"] for f in info["frames"]] == [False, True, True, False]
    api.decode(stream, tmp_path / "all")
    for spec in ("1:3", "2", "3"):
        part = tmp_path / f"part{spec.replace(':', '_')}"
        part.mkdir()
        out = api.decode(stream, part, frames=spec)
        assert out["written"]
        for path in out["written"]:
            name = path.rsplit("/", 1)[1]
            a, b = read_ply(path), read_ply(tmp_path / "all" / name)
            assert np.array_equal(a.points, b.points) and np.array_equal(a.colors, b.colors)


def test_gof1_keeps_the_intra_format(tmp_path, seq):
    src = tmp_path / "seq"
    src.mkdir()
    for i, c in enumerate(seq[:2]):
        write_ply(c, src / f"f_{i:04d}.ply")
    stream = tmp_path / "s.imc"
    api.encode(src, stream, codec="vpcc", options={"gof": 1, "rate": "r3"})
    data = stream.read_bytes()
    _, entries = parse_stream(data)
    codec = get_codec("vpcc")
    cfg = codec.make_config({"rate": "r3"})
    for e, path in zip(entries, sorted(src.iterdir())):
        assert not e.needs_previous
        assert read_frame(data, e) == codec.encode_frame(read_ply(path), cfg, {}).components


def test_mismatched_frames_fail_before_coding(tmp_path, seq):
    src = tmp_path / "depth"
    src.mkdir()
    write_ply(seq[0], src / "f_0000.ply")
    write_ply(PointCloud(seq[1].points * 2, seq[1].colors), src / "f_0001.ply")
    with pytest.raises(InputError, match="bit depth"):
        api.encode(src, tmp_path / "a.imc", codec="vpcc", options={"gof": 2})
    assert not (tmp_path / "a.imc").exists()
    src2 = tmp_path / "colour"
    src2.mkdir()
    write_ply(seq[0], src2 / "f_0000.ply")
    write_ply(PointCloud(seq[1].points), src2 / "f_0001.ply")
    with pytest.raises(InputError, match="colour"):
        api.encode(src2, tmp_path / "b.imc", codec="vpcc", options={"gof": 2})
    with pytest.raises(InputError, match="colour"):
        check_sequence([seq[0], PointCloud(seq[1].points)])


def _frame(points, ys, xs, plane, width=64, height=64, colors=None):
    k = len(ys)
    return DecodedFrame(np.asarray(points, float), colors, np.asarray(ys), np.asarray(xs),
                        np.zeros(k, np.uint8), np.asarray(plane), width, height)


def test_correspond_and_block_hints_against_brute_force():
    rng = np.random.default_rng(5)
    n = 300
    pts_prev = rng.integers(0, 40, (n, 3)).astype(float)
    pts_cur = pts_prev[rng.permutation(n)[:250]] + rng.integers(-2, 3, (250, 3))
    plane_prev = rng.integers(0, 2, n)
    plane_cur = rng.integers(0, 2, 250)
    # distinct pixels in raster order, as the decoder produces them
    pix_prev = np.sort(rng.choice(64 * 64, n, replace=False))
    pix_cur = np.sort(rng.choice(64 * 64, 250, replace=False))
    prev = _frame(pts_prev, pix_prev // 64, pix_prev % 64, plane_prev)
    cur = _frame(pts_cur, pix_cur // 64, pix_cur % 64, plane_cur)
    idx, dist = correspond(cur, prev)
    d2 = ((pts_cur[:, None, :] - pts_prev[None, :, :]) ** 2).sum(-1)
    d2[plane_cur[:, None] != plane_prev[None, :]] = np.inf
    assert np.allclose(dist, np.sqrt(d2.min(axis=1)))
    assert np.allclose(np.sqrt(d2[np.arange(250), idx]), dist)
    hints = block_hints(cur, prev, idx, dist, block=16)
    rows = {}
    for i in range(250):
        b = (cur.ys[i] // 16, cur.xs[i] // 16)
        rows.setdefault(b, []).append(i)
    assert len(hints) == len(rows)
    for x, y, dx, dy, conf, cnt in hints:
        members = rows[(int(y) // 16, int(x) // 16)]
        mvx = np.array([prev.xs[idx[i]] - cur.xs[i] for i in members])
        mvy = np.array([prev.ys[idx[i]] - cur.ys[i] for i in members])
        assert cnt == len(members)
        assert dx == np.sort(mvx)[(len(members) - 1) // 2] and dy == np.sort(mvy)[(len(members) - 1) // 2]
        ok = (np.abs(mvx - dx) <= 1) & (np.abs(mvy - dy) <= 1) & (dist[members] <= 2.0)
        assert conf == pytest.approx(ok.mean())


def _brute_prediction(cur_pts, prev_pts, prev_col):
    out = np.zeros((len(cur_pts), 3))
    for i, p in enumerate(cur_pts):
        dd = ((prev_pts - p) ** 2).sum(axis=1)
        keep = dd <= 2 * dd.min() + 2
        w = (1 << 20) // (64 * dd[keep] + 1)
        num = (w[:, None] * prev_col[keep].astype(np.int64)).sum(axis=0)
        out[i] = np.floor(num / w.sum() + 0.5)
    return out


def test_colour_prediction_against_brute_force():
    rng = np.random.default_rng(11)
    prev_pts = rng.integers(0, 40, (300, 3))
    prev_col = rng.integers(0, 256, (300, 3)).astype(np.uint8)
    cur_pts = rng.integers(-5, 45, (80, 3))  # some outside the previous frame's box
    got = predict_colors(cur_pts, prev_pts, prev_col)
    assert np.array_equal(got, _brute_prediction(cur_pts, prev_pts, prev_col))
    # a dense surface (the common case: most points repeat a voxel of t-1) and duplicates in t-1
    yy, zz = np.meshgrid(np.arange(60), np.arange(60), indexing="ij")
    surf = np.stack([(10 + (yy * zz) % 3), yy, zz], axis=-1).reshape(-1, 3)
    surf = np.concatenate([surf, surf[:100]])
    scol = rng.integers(0, 256, (len(surf), 3)).astype(np.uint8)
    moved = surf[::5] + rng.integers(-1, 2, (len(surf[::5]), 3))
    assert np.array_equal(predict_colors(moved, surf, scol), _brute_prediction(moved, surf, scol))
    # points farther than the grid search from every previous point take their nearest one's colour
    far = np.array([[200, 200, 200], [-100, 5, 5]])
    assert np.array_equal(predict_colors(far, prev_pts, prev_col),
                          prev_col[[np.argmin(((prev_pts - f) ** 2).sum(axis=1)) for f in far]])
    # on a grid of spacing 3, a point present in the previous frame keeps exactly its colour
    grid = np.stack(np.meshgrid(*[np.arange(0, 30, 3)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    gcol = rng.integers(0, 256, (len(grid), 3)).astype(np.uint8)
    assert np.array_equal(predict_colors(grid[::7], grid, gcol), gcol[::7])


def test_colour_prediction_does_not_depend_on_threads():
    rng = np.random.default_rng(12)
    prev_pts = rng.integers(0, 64, (20000, 3))
    prev_col = rng.integers(0, 256, (20000, 3)).astype(np.uint8)
    cur_pts = rng.integers(0, 64, (CHUNK + 4000, 3))  # more than one chunk of points
    one = predict_colors(cur_pts, prev_pts, prev_col, threads=1)
    assert np.array_equal(predict_colors(cur_pts, prev_pts, prev_col, threads=2), one)
    pick = np.r_[0:20, CHUNK - 10:CHUNK + 10]
    assert np.array_equal(one[pick], _brute_prediction(cur_pts[pick], prev_pts, prev_col))


def test_atlas_prediction_equals_the_two_layer_images():
    # one layer: only the points T0 reads are predicted; T0 must equal that of all points in two
    # layers, and two layers must give exactly the T0 / T1 the encoder builds from predicted colours
    rng = np.random.default_rng(13)
    ys, xs = np.divmod(np.arange(32 * 32), 32)
    ys, xs = np.r_[ys, ys[::3]], np.r_[xs, xs[::3]]
    slot = np.r_[np.zeros(32 * 32, np.uint8), np.ones(len(ys) - 32 * 32, np.uint8)]
    depth = np.where(slot == 1, 2, 0)
    pts = np.stack([5 + depth, ys, xs], axis=1).astype(float)
    raw = rng.integers(0, 40, (7, 3)).astype(float)
    cur = DecodedFrame(np.concatenate([pts, raw]), None, ys, xs, slot, np.zeros(len(ys), np.int64), 32, 32)
    prev_pts = pts[::2] + rng.integers(-1, 2, (len(pts[::2]), 3))
    prev = _frame(prev_pts, ys[::2], xs[::2], np.zeros(len(prev_pts), np.int64),
                  colors=rng.integers(0, 256, (len(prev_pts), 3)).astype(np.uint8))
    meta = SimpleNamespace(width=32, height=32)
    col = predict_colors(cur.points, prev.points, prev.colors)
    want = atlas_frames(meta, col, ys, xs, slot, len(raw), 2, height=40)[0]
    got = predict_atlas(meta, cur, prev, 2, 40)
    assert len(got) == 1 and all(np.array_equal(g, w) for g, w in zip(got[0], want[0]))
    got = predict_atlas(meta, cur, prev, 2, 40, layers=2)
    assert len(got) == 2
    for g_layer, w_layer in zip(got, want):
        assert len(g_layer) == 3 and all(np.array_equal(g, w) for g, w in zip(g_layer, w_layer))
    assert not np.array_equal(got[0][0], got[1][0])  # the far points' own colours
    with pytest.raises(ValueError, match="at most the texture layers"):
        predict_atlas(meta, cur, prev, 1, 40, layers=2)


def test_static_content_has_zero_motion():
    pts = np.array([[5, y, x] for y in range(16) for x in range(16)], float)
    ys, xs = np.divmod(np.arange(256), 16)
    f = _frame(pts, ys, xs, np.zeros(256, np.int64))
    idx, dist = correspond(f, f)
    hints = block_hints(f, f, idx, dist)
    assert hints.tolist() == [[0, 0, 0, 0, 1.0, 256]]


def test_match_patches_prefers_overlap():
    def ps(plane, u1, v1, su, sv):
        z = np.zeros(0, np.int64)
        a = lambda v: np.asarray(v, np.int64)  # noqa: E731
        return PatchSet(a(plane), a(u1), a(v1), a([0] * len(plane)), a(su), a(sv), z, z, z, z, z,
                        np.zeros((0, 3), np.int64))

    prev = ps([0, 0, 1], [0, 50, 0], [0, 0, 0], [40, 40, 40], [40, 40, 40])
    cur = ps([0, 1, 0, 2], [52, 2, 100, 0], [3, 1, 0, 0], [40, 40, 10, 40], [40, 40, 10, 40])
    assert match_patches(cur, prev).tolist() == [1, 2, -1, -1]


def test_motion_command_writes_hint_files(tmp_path, seq):
    src = tmp_path / "seq"
    src.mkdir()
    for i, c in enumerate(seq):
        write_ply(c, src / f"f_{i:04d}.ply")
    out = api.motion(src, tmp_path / "mo", options={"rate": "r3", "gof": 3}, block=8)
    assert [r["frame"] for r in out["frames"]] == [1, 2]
    for r in out["frames"]:
        csv = tmp_path / "mo" / f"hints_{r['frame']:04d}.csv"
        text = csv.read_text().splitlines()
        assert text[0] == "# imcodec motion hints v1" and text[3] == "x,y,dx,dy,confidence,pixels"
        hints = read_hints(csv)
        assert len(hints) == r["blocks"] > 0
        assert np.all(hints[:, 0] % 8 == 0) and np.all(hints[:, 1] % 8 == 0)
        assert np.all((hints[:, 4] >= 0) & (hints[:, 4] <= 1)) and np.all(hints[:, 5] >= 1)
        from PIL import Image

        with Image.open(tmp_path / "mo" / f"hints_{r['frame']:04d}.png") as im:
            w, h = (int(v) for v in text[1].split("atlas ")[1].split(";")[0].split("x"))
            assert im.size == (w, h)
    bad = tmp_path / "bad.csv"
    bad.write_text("# imcodec motion hints v1\nx,y,dx,dy,confidence,pixels\n1,2,3\n")
    with pytest.raises(InputError, match="row"):
        read_hints(bad)


def test_tracked_patches_keep_their_canvas_place(seq):
    from imcodec.codecs import get_codec as _get
    from imcodec.vpcc.encoder import patch_params, prepare
    from imcodec.vpcc.gofpack import pack_gof, patch_tracks
    from imcodec.vpcc.patches import generate_patches
    from imcodec.vpcc.reconstruct import canvas_coords

    cfg = _get("vpcc").make_config({})
    coords = [prepare(c)[0] for c in seq]
    origin = np.min([c.min(axis=0) for c in coords], axis=0)
    raw_psets = [generate_patches(c - origin, patch_params(cfg)) for c in coords]
    tracks = [t for t in patch_tracks(raw_psets) if len(t) > 1]
    assert tracks
    metas, psets = pack_gof(raw_psets, origin, 9, cfg)
    fields = ("plane", "orient", "bu", "bv", "bw", "bh", "u1", "v1", "dpos")
    rows = [{tuple(int(getattr(m, f)[i]) for f in fields) for i in range(m.count)} for m in metas]
    # every frame after the first repeats at least as many patches exactly as there are live tracks
    for t in (1, 2):
        live = sum(1 for tr in tracks if any(f == t for f, _ in tr) and any(f == t - 1 for f, _ in tr))
        assert len(rows[t] & rows[t - 1]) >= live > 0
    # the reordered patches still describe the same points (3D positions of their pixels)
    for m, ps, raw in zip(metas, psets, raw_psets):
        ys, xs = canvas_coords(m, ps.pix_patch, ps.pix_u, ps.pix_v)
        assert ys.max() < 4096 and xs.max() < m.width
        a = np.stack([ps.u1[ps.pix_patch] + ps.pix_u, ps.v1[ps.pix_patch] + ps.pix_v,
                      ps.offset[ps.pix_patch] + ps.pix_d0], axis=1)
        b = np.stack([raw.u1[raw.pix_patch] + raw.pix_u, raw.v1[raw.pix_patch] + raw.pix_v,
                      raw.offset[raw.pix_patch] + raw.pix_d0], axis=1)
        assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))


def test_inter_patch_metadata_round_trip():
    from imcodec.vpcc.metadata import FrameMeta, decode_meta, encode_meta

    rng = np.random.default_rng(2)
    n = 40

    def meta(cols):
        return FrameMeta(np.array([3, 4, 5]), 10, 1280, 640, *cols)

    def cols(k):
        return [rng.integers(0, 6, k), rng.integers(0, 2, k), rng.integers(0, 60, k), rng.integers(0, 30, k),
                rng.integers(1, 9, k), rng.integers(1, 9, k), rng.integers(0, 900, k),
                rng.integers(0, 900, k), rng.integers(0, 900, k)]

    base = cols(n)
    ref = meta(base)
    keep = rng.permutation(n)[:30]
    cur_cols = [np.concatenate([c[np.sort(keep)], d]) for c, d in zip(base, cols(5))]
    cur = meta(cur_cols)
    inter_bytes = encode_meta(cur, 1, ref)
    out = decode_meta(inter_bytes, 1, ref)
    for f in ("plane", "orient", "bu", "bv", "bw", "bh", "u1", "v1", "dpos"):
        assert np.array_equal(getattr(out, f), getattr(cur, f)), f
    assert len(inter_bytes) < 0.6 * len(encode_meta(cur, 1))
    with pytest.raises(BitstreamError):
        decode_meta(inter_bytes, 1, meta([c[:3] for c in base]))


def test_occupancy_with_reference_round_trip():
    from imcodec.vpcc.occupancy import box_blocks, cell_allowed, decode_occupancy_map, encode_occupancy

    rng = np.random.default_rng(4)
    ptr, idx = box_blocks(np.array([0]), np.array([0]), np.array([4]), np.array([4]), 64, 64)
    allowed = cell_allowed(ptr, 64, 64, 2)
    yy, xx = np.mgrid[:32, :32]
    blobs = [(rng.uniform(0, 32), rng.uniform(0, 32), rng.uniform(2, 6)) for _ in range(12)]
    ref = np.zeros((32, 32), np.uint8)
    occ = np.zeros((32, 32), np.uint8)
    for cy, cx, r in blobs:  # the same shapes, slightly changed in the current frame
        ref |= ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
        occ |= ((yy - cy) ** 2 + (xx - cx - 0.4) ** 2 <= (r + 0.3) ** 2).astype(np.uint8)
    occ[0, 0] = 1
    data = encode_occupancy(occ, allowed, np.zeros(0, np.int64), ref)
    got, owner = decode_occupancy_map(data, allowed, ptr, idx, 2, ref)
    assert np.array_equal(got, occ) and (owner == 0).all()
    assert len(data) < 0.85 * len(encode_occupancy(occ, allowed, np.zeros(0, np.int64)))


def test_predict_depth_against_brute_force():
    from imcodec.vpcc.metadata import FrameMeta
    from imcodec.vpcc.motion import predict_depth

    # one patch on plane 3 (axis x, depth = x - dpos), identity orientation, box 16 x 16 at (0, 0)
    meta = FrameMeta(np.array([0, 0, 0]), 8, 16, 16, np.array([3]), np.array([0]), np.array([0]),
                     np.array([0]), np.array([1]), np.array([1]), np.array([10]), np.array([20]),
                     np.array([5]))
    ys, xs = np.divmod(np.arange(16 * 16), 16)
    patch = np.zeros(256, np.int64)
    rng = np.random.default_rng(1)
    pts = []
    for y, x in zip(ys[::3], xs[::3]):  # lines at tangent (u, v) = (10 + x, 20 + y)
        for d in rng.choice(12, 3, replace=False):
            pts.append([5 + d, 10 + x, 20 + y])
    prev = np.array(pts, float)
    d0, d1 = predict_depth(meta, ys, xs, patch, prev, 2, 4, 255)
    for y, x in zip(ys[::3], xs[::3]):
        line = prev[(prev[:, 1] == 10 + x) & (prev[:, 2] == 20 + y), 0] - 5
        assert d0[y, x] == line.min()
        assert d1[y, x] == min(line.max(), line.min() + 4)


def test_depth_prediction_round_trip(seq):
    import dataclasses

    codec = get_codec("vpcc")
    cfg = dataclasses.replace(codec.make_config({"rate": "r3", "gof": 2}), depth_prediction=True)
    codes = codec.encode_group(seq[:2], cfg, {})
    assert GofRecord.unpack(codes[1].components["gof"]).geo_mode == 1 and codes[1].components["geometry_video"]
    writer = StreamWriter(codec.codec_id, codec.stream_params(cfg))
    for i, c in enumerate(codes):
        writer.add_frame(i, len(c.recon), c.components, c.needs_previous)
    data = writer.finish(bit_depth=9)
    header, entries = parse_stream(data)
    state: dict = {}
    for code, e in zip(codes, entries):
        dec = codec.decode_frame(read_frame(data, e), header, state)
        assert np.array_equal(dec.points, code.recon.points) and np.array_equal(dec.colors, code.recon.colors)


def test_cli_gof_motion_hints_and_motion_command(tmp_path, run_cli):
    import json

    src = tmp_path / "seq"
    src.mkdir()
    for i, c in enumerate(make_sequence("sphere", bits=7, frames=2, motion="rigid", color=True, seed=2)):
        write_ply(c, src / f"f_{i:04d}.ply")
    code, out, err = run_cli("encode", src, "-o", tmp_path / "s.imc", "--codec", "vpcc", "--gof", "2",
                             "--motion-hints", "off", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["frames"] == 2 and result["components"]["gof"] > 0
    code, _, err = run_cli("encode", src, "-o", tmp_path / "t.imc", "--codec", "vpcc", "--motion-hints", "maybe")
    assert code == 2
    code, _, err = run_cli("encode", src, "-o", tmp_path / "t.imc", "--codec", "vpcc", "--gof", "0")
    assert code == 2 and "--gof" in err
    code, out, err = run_cli("encode", src, "-o", tmp_path / "h.imc", "--codec", "vpcc", "--hint-refs", "t0",
                             "--json")
    assert code == 0, err
    code, _, err = run_cli("encode", src, "-o", tmp_path / "t.imc", "--codec", "vpcc", "--motion-hints", "off",
                           "--hint-refs", "t0")
    assert code == 2 and "--hint-refs t0 needs --motion-hints on" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.imc").exists()
    code, out, err = run_cli("motion", src, "--out", tmp_path / "mo", "--json")
    assert code == 0, err
    assert [r["frame"] for r in json.loads(out)["frames"]] == [1]
    assert (tmp_path / "mo" / "hints_0001.csv").is_file() and (tmp_path / "mo" / "hints_0001.png").is_file()
    bad = tmp_path / "bad"
    bad.mkdir()
    write_ply(read_ply(src / "f_0000.ply"), bad / "f_0000.ply")
    write_ply(PointCloud(read_ply(src / "f_0001.ply").points), bad / "f_0001.ply")
    code, _, err = run_cli("encode", bad, "-o", tmp_path / "u.imc", "--codec", "vpcc")
    assert code == 1 and "f_0001.ply" in err and "colour" in err and len(err.strip().splitlines()) == 1

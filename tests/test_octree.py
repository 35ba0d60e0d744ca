"""Octree codec: Morton codes, tree building and neighbour tables against brute force; exact round
trips (lossless multisets, lossy == encoder reconstruction); determinism; damage -> BitstreamError;
bad input -> InputError; the encode/decode API and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imcodec import api
from imcodec.cli import main
from imcodec.codecs import get_codec
from imcodec.errors import BitstreamError, InputError, UsageError
from imcodec.io.bitstream import StreamHeader
from imcodec.io.ply import read_ply, write_ply
from imcodec.octree.build import build_occupancy, child_neighbours, level_sizes, root_neighbours
from imcodec.octree.codec import OctreeConfig
from imcodec.octree.geometry import (
    decode_geometry,
    decode_geometry_ref,
    encode_geometry,
    encode_geometry_ref,
    is_inter,
)
from imcodec.octree.morton import morton_decode, morton_encode
from imcodec.synth import make_sequence
from imcodec.types import PointCloud


def _shell(radius: float, center=(40, 40, 40), seed: int = 0, noise: float = 0.0) -> np.ndarray:
    """Integer points of a voxelised sphere shell (a small closed surface), (N, 3) float64."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(int(40 * radius * radius), 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    p = np.rint(v * radius + np.asarray(center) + rng.normal(scale=noise, size=v.shape))
    return np.unique(p, axis=0).astype(np.float64)


def _multiset(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


# ------------------------------------------------------------------------------------ kernels

def test_morton_matches_bit_interleaving():
    rng = np.random.default_rng(1)
    xyz = rng.integers(0, 1 << 21, (500, 3)).astype(np.int64)
    xyz[0] = (1 << 21) - 1
    codes = morton_encode(xyz)
    for (x, y, z), c in zip(xyz[:50], codes[:50]):
        ref = 0
        for b in range(21):
            ref |= (((int(x) >> b) & 1) << (3 * b + 2)) | (((int(y) >> b) & 1) << (3 * b + 1)) | (((int(z) >> b) & 1) << (3 * b))
        assert ref == c
    assert np.array_equal(morton_decode(codes), xyz)
    assert codes.min() >= 0


def test_occupancy_and_neighbours_match_brute_force():
    rng = np.random.default_rng(2)
    pts = np.unique(rng.integers(0, 16, (300, 3)), axis=0).astype(np.int64)
    depth = 4
    codes = np.sort(morton_encode(pts))
    sizes = level_sizes(codes, depth)
    occ = build_occupancy(codes, depth, sizes)
    start = 0
    nbr = root_neighbours()
    for d in range(depth):
        level = occ[start:start + sizes[d]]
        nodes = sorted({tuple(int(v) >> (depth - d) for v in p) for p in pts},
                       key=lambda t: morton_encode(np.array([t], np.int64))[0])
        index = {t: i for i, t in enumerate(nodes)}
        for i, t in enumerate(nodes):  # occupancy byte: which children exist
            ref = 0
            for p in pts:
                if tuple(int(v) >> (depth - d) for v in p) == t:
                    c = tuple((int(v) >> (depth - d - 1)) & 1 for v in p)
                    ref |= 1 << (c[0] * 4 + c[1] * 2 + c[2])
            assert level[i] == ref
            k = 0
            for dx in (-1, 0, 1):  # neighbour table: the index of each neighbour, -1 if empty
                for dy in (-1, 0, 1):
                    for dz in (-1, 0, 1):
                        assert nbr[i, k] == index.get((t[0] + dx, t[1] + dy, t[2] + dz), -1)
                        k += 1
        nbr = child_neighbours(nbr, level)
        start += sizes[d]


# ------------------------------------------------------------------------------ geometry coding

CASES = {
    "one point": np.array([[5, 9, 2]], np.float64),
    "origin only": np.zeros((1, 3)),
    "duplicates": np.array([[3, 3, 3]] * 5 + [[4, 3, 3]] * 2 + [[0, 0, 0]], np.float64),
    "corner of 21 bits": np.array([[0, 0, 0], [(1 << 21) - 1] * 3], np.float64),
    "shell": _shell(12, seed=3),
    "noisy shell with repeats": np.concatenate([_shell(9, seed=4, noise=0.7)] * 2),
    "random sparse": np.random.default_rng(5).integers(0, 1000, (400, 3)).astype(np.float64),
}


@pytest.mark.parametrize("name", list(CASES))
def test_lossless_round_trip_is_the_input_multiset(name):
    pts = CASES[name].astype(np.int64)
    payload, order, mult = encode_geometry(pts, keep_duplicates=True)
    vox, counts = decode_geometry(payload, len(pts))
    got = np.repeat(vox, counts, axis=0)
    assert np.array_equal(got, pts[order])
    assert np.array_equal(_multiset(got), _multiset(pts))
    assert payload == encode_geometry(pts, keep_duplicates=True)[0]  # deterministic


def test_merged_duplicates_decode_once():
    pts = CASES["duplicates"].astype(np.int64)
    payload, order, mult = encode_geometry(pts, keep_duplicates=False)
    vox, counts = decode_geometry(payload, 3)
    assert np.array_equal(_multiset(vox), _multiset(np.unique(pts, axis=0))) and (counts == 1).all()
    assert mult.sum() == len(pts)


def test_geometry_compresses_a_surface():
    pts = _shell(30, center=(64, 64, 64), seed=6)
    payload, _, _ = encode_geometry(pts.astype(np.int64), keep_duplicates=True)
    assert 8 * len(payload) / len(pts) < 2.5  # a plain octree needs ~8 bits per occupied parent


def test_geometry_decoder_rejects_inconsistent_headers():
    pts = _shell(6, seed=7).astype(np.int64)
    payload, _, _ = encode_geometry(pts, keep_duplicates=True)
    with pytest.raises(BitstreamError, match="limit"):
        decode_geometry(payload, len(pts) - 1)  # more points than the container allows
    with pytest.raises(BitstreamError):
        decode_geometry(payload[:-3], len(pts))
    with pytest.raises(BitstreamError):
        decode_geometry(payload + b"\x00", len(pts))
    with pytest.raises(BitstreamError):
        decode_geometry(payload[:5], len(pts))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2), st.integers(0, 10**6), st.booleans())
def test_damaged_geometry_payload_never_crashes(which, where, truncate):
    """Without the container's CRC, damage must give a BitstreamError or a bounded result."""
    pts = [CASES["duplicates"], CASES["shell"], CASES["one point"]][which].astype(np.int64)
    payload, _, _ = encode_geometry(pts, keep_duplicates=True)
    if truncate:
        bad = payload[: where % len(payload)]
    else:
        i = where % (8 * len(payload))
        bad = bytearray(payload)
        bad[i // 8] ^= 1 << (i % 8)
        bad = bytes(bad)
    try:
        vox, counts = decode_geometry(bad, len(pts))
    except BitstreamError:
        return
    assert counts.sum() <= len(pts) and len(vox) == len(counts) and (vox >= 0).all()


# ------------------------------------------------------------------------------ inter coding

def _moving(frames: int = 3, bits: int = 8, motion: str = "wave") -> list[np.ndarray]:
    return [np.asarray(c.points).astype(np.int64) for c in make_sequence("body", bits, frames, motion, seed=3)]


def test_inter_geometry_round_trip_and_gain():
    a, b, c = _moving()
    pa, _, _, ref_a = encode_geometry_ref(a, True, None)
    intra_b = encode_geometry(b, True)[0]
    pb, ob, mb, ref_b = encode_geometry_ref(b, True, ref_a)
    assert is_inter(pb) and not is_inter(pa) and not is_inter(intra_b)
    assert len(pb) < 0.9 * len(intra_b)  # the previous frame predicts most of a slowly moving body
    # the decoder, given its own decoded previous frame, returns exactly the input points
    va, ca, dref_a = decode_geometry_ref(pa, len(a), None)
    vb, cb, dref_b = decode_geometry_ref(pb, len(b), dref_a)
    assert np.array_equal(np.repeat(vb, cb, axis=0), b[ob]) and np.array_equal(mb, cb)
    pc, oc, _, _ = encode_geometry_ref(c, True, ref_b)
    vc, cc, _ = decode_geometry_ref(pc, len(c), dref_b)
    assert np.array_equal(np.repeat(vc, cc, axis=0), c[oc])
    # a repeated frame is nearly free against itself: every bit equals the co-located one
    same = encode_geometry_ref(a, True, ref_a)[0]
    assert len(same) < 0.1 * len(pa)


def test_inter_geometry_needs_its_reference():
    a, b, _ = _moving()
    pa, _, _, ref_a = encode_geometry_ref(a, True, None)
    pb = encode_geometry_ref(b, True, ref_a)[0]
    with pytest.raises(BitstreamError, match="no reference"):
        decode_geometry_ref(pb, len(b), None)
    shallow = encode_geometry_ref(a // 2, True, None)[3]  # one bit less deep
    with pytest.raises(BitstreamError, match="depth"):
        decode_geometry_ref(pb, len(b), shallow)
    # a reference of another depth is not used by the encoder
    assert not is_inter(encode_geometry_ref(b, True, shallow)[0])


def test_sequence_groups_of_frames(tmp_path):
    folder = tmp_path / "moving"
    folder.mkdir()
    clouds = make_sequence("body", 8, 5, "wave", color=True, seed=4)
    for i, cloud in enumerate(clouds):
        write_ply(cloud, folder / f"f_{i:04d}.ply")
    inter, intra = tmp_path / "inter.imc", tmp_path / "intra.imc"
    api.encode(folder, inter, options={"gof": 3, "lossless_color": True})
    api.encode(folder, intra, options={"gof": 1, "lossless_color": True})
    assert [f["needs_previous"] for f in api.info(inter)["frames"]] == [False, True, True, False, True]
    assert not any(f["needs_previous"] for f in api.info(intra)["frames"])
    assert inter.stat().st_size < intra.stat().st_size
    full = tmp_path / "full"
    api.decode(inter, full)
    for i, cloud in enumerate(clouds):
        got = read_ply(full / f"inter_{i:04d}.ply")
        ref = np.concatenate([cloud.points, cloud.colors], axis=1)
        assert np.array_equal(_multiset(np.concatenate([got.points, got.colors], axis=1)), _multiset(ref))
    one = tmp_path / "one.ply"
    api.decode(inter, one, frames="4")  # decodes frame 3's geometry (its group's first) on the way
    got, ref = read_ply(one), read_ply(full / "inter_0004.ply")
    assert np.array_equal(got.points, ref.points) and np.array_equal(got.colors, ref.colors)
    with pytest.raises(UsageError, match="--gof"):
        api.encode(folder, tmp_path / "x.imc", options={"gof": 0})


# --------------------------------------------------------------------------------- the codec

def _colored(seed: int = 8) -> PointCloud:
    pts = _shell(8, seed=seed)
    rng = np.random.default_rng(seed)
    cols = np.clip(pts * 3 + rng.integers(0, 20, pts.shape), 0, 255).astype(np.uint8)
    return PointCloud(points=pts, colors=cols)


def _header(codec, config, recon_points: int) -> StreamHeader:
    return StreamHeader(codec_id=1, bit_depth=10, origin=config.origin, scale=config.scale,
                        frame_count=1, max_points=recon_points, params=codec.stream_params(config))


@pytest.mark.parametrize("opts", [{"lossless": True, "lossless_color": True}, {"lossless": True},
                                  {"scale": 0.5, "attr_qp": 34}, {"scale": 0.3, "lossless_color": True}])
def test_codec_decoder_equals_encoder_reconstruction(opts):
    codec = get_codec("octree")
    config = codec.make_config(opts)
    cloud = _colored()
    code = codec.encode_frame(cloud, config, {})
    out = codec.decode_frame(code.components, _header(codec, config, len(code.recon)), {})
    assert np.array_equal(out.points, code.recon.points)
    assert np.array_equal(out.colors, code.recon.colors)
    if config.lossless:
        assert np.array_equal(_multiset(out.points), _multiset(cloud.points))
    if opts.get("lossless_color") and config.lossless:
        ref = np.concatenate([cloud.points, cloud.colors], axis=1)
        got = np.concatenate([out.points, out.colors], axis=1)
        assert np.array_equal(_multiset(got), _multiset(ref))
    else:  # lossy: TMC13 quantisation, one point per voxel
        q = np.unique(np.floor(cloud.points * config.scale + 0.5), axis=0) / config.scale
        assert np.array_equal(_multiset(out.points), _multiset(q))


@pytest.mark.parametrize("points, message", [
    ([[1.0, -2.0, 3.0]], "negative"),
    ([[1.0, np.nan, 3.0]], "non-finite"),
    ([[1.0, np.inf, 3.0]], "non-finite"),
    ([[1.5, 2.0, 3.0]], "integer"),
    ([[1024.0, 2.0, 3.0]], "declared bit depth 10"),
])
def test_bad_input_is_an_input_error(points, message):
    codec = get_codec("octree")
    config = OctreeConfig(bit_depth=10)
    with pytest.raises(InputError, match=message):
        codec.encode_frame(PointCloud(points=np.array(points)), config, {})


def test_config_errors_are_usage_errors():
    make = get_codec("octree").make_config
    with pytest.raises(UsageError, match="--rate"):
        make({"rate": "r1"})
    with pytest.raises(UsageError, match="exclude"):
        make({"lossless": True, "scale": 0.5})
    with pytest.raises(UsageError, match="attr-qp"):
        make({"attr_qp": 99})
    with pytest.raises(UsageError, match="scale"):
        make({"scale": -1.0})
    assert make({"gof": None, "lossless": None}).lossless


# ------------------------------------------------------------------------------ API and CLI

@pytest.fixture()
def sequence(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    clouds = []
    for i in range(3):
        cloud = _colored(seed=10 + i)
        write_ply(cloud, folder / f"shape_{i + 7:04d}.ply")
        clouds.append(cloud)
    return folder, clouds


def test_sequence_stream_and_random_access(sequence, tmp_path, capsys):
    folder, clouds = sequence
    stream = tmp_path / "seq.imc"
    assert main(["encode", str(folder), "-o", str(stream), "--lossless-color", "--json"]) == 0
    enc = json.loads(capsys.readouterr().out)
    assert enc["frames"] == 3 and enc["points"] == sum(len(c) for c in clouds)
    assert set(enc["components"]) == {"geometry", "attribute"} and enc["bytes"] == stream.stat().st_size
    assert abs(enc["bpp"] - 8 * enc["bytes"] / enc["points"]) < 1e-9 and enc["encode_seconds"] >= 0
    info = api.info(stream)
    assert [f["frame"] for f in info["frames"]] == [7, 8, 9] and info["codec"] == "octree"
    out = tmp_path / "dec"
    assert main(["decode", str(stream), "-o", str(out), "--frames", "8:10", "--json"]) == 0
    dec = json.loads(capsys.readouterr().out)
    assert dec["frames"] == 2 and dec["points"] == len(clouds[1]) + len(clouds[2])
    for i, name in ((1, "seq_0008.ply"), (2, "seq_0009.ply")):
        got = read_ply(out / name)
        ref = np.concatenate([clouds[i].points, clouds[i].colors], axis=1)
        assert np.array_equal(_multiset(np.concatenate([got.points, got.colors], axis=1)), _multiset(ref))
    one = tmp_path / "one.ply"
    assert api.decode(stream, one, frames="7")["frames"] == 1 and len(read_ply(one)) == len(clouds[0])


def test_encode_is_deterministic_and_lossy_scale_works(sequence, tmp_path):
    folder, clouds = sequence
    a, b = tmp_path / "a.imc", tmp_path / "b.imc"
    api.encode(folder / "shape_0007.ply", a, options={"scale": 0.5})
    api.encode(folder / "shape_0007.ply", b, options={"scale": 0.5})
    assert a.read_bytes() == b.read_bytes()
    api.decode(a, tmp_path / "a.ply")
    got = read_ply(tmp_path / "a.ply")
    assert len(got) == len(np.unique(np.floor(clouds[0].points * 0.5 + 0.5), axis=0))


def test_cli_errors(sequence, tmp_path, capsys):
    folder, _ = sequence
    stream = tmp_path / "s.imc"
    assert main(["encode", str(folder), "-o", str(stream), "--rate", "r1"]) == 2
    assert "does not support --rate" in capsys.readouterr().err
    assert main(["encode", str(folder), "-o", str(stream), "--lossless", "--scale", "0.5"]) == 2
    api.encode(folder, stream)
    data = bytearray(stream.read_bytes())
    data[len(data) // 2] ^= 4
    bad = tmp_path / "bad.imc"
    bad.write_bytes(bytes(data))
    assert main(["decode", str(bad), "-o", str(tmp_path / "o")]) == 1
    assert "CRC" in capsys.readouterr().err
    assert main(["decode", str(stream), "-o", str(tmp_path / "o"), "--frames", "50:60"]) == 2


_VALID: dict[str, bytes] = {}


def _valid_streams(tmp_path_factory) -> list[bytes]:
    if not _VALID:
        d = tmp_path_factory.mktemp("fuzz")
        for i, opts in enumerate([{}, {"scale": 0.5}, {"lossless_color": True}]):
            src = d / f"c{i}.ply"
            cloud = _colored(seed=20 + i)
            write_ply(PointCloud(points=cloud.points[:60], colors=cloud.colors[:60]), src)
            api.encode(src, d / f"c{i}.imc", options=opts)
            _VALID[str(i)] = (d / f"c{i}.imc").read_bytes()
        seq = d / "seq"
        seq.mkdir()
        for i, cloud in enumerate(make_sequence("sphere", 5, 2, "rigid", seed=9)):
            write_ply(cloud, seq / f"s_{i:04d}.ply")
        api.encode(seq, d / "inter.imc")
        _VALID["inter"] = (d / "inter.imc").read_bytes()
    return list(_VALID.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.integers(0, 3), st.integers(0, 10**7), st.booleans())
def test_damaged_streams_are_bitstream_errors(tmp_path_factory, which, where, truncate):
    data = _valid_streams(tmp_path_factory)[which]
    if truncate:
        bad = data[: where % len(data)]
    else:
        i = where % (8 * len(data))
        arr = bytearray(data)
        arr[i // 8] ^= 1 << (i % 8)
        bad = bytes(arr)
    path = tmp_path_factory.getbasetemp() / "damaged.imc"
    path.write_bytes(bad)
    with pytest.raises(BitstreamError) as err:
        api.decode(path, tmp_path_factory.getbasetemp() / "damaged_out")
    assert str(err.value).startswith(f"{path}: ")  # the message names the stream, once

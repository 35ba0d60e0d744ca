"""Training pairs for the V-PCC enhancement tools, made by coding training frames at CTC rates.

For every (cloud, rate) the frame is V-PCC encoded (all-intra, the codec's defaults at that rate)
and its sub-streams decoded again, which gives

* the depth images before video coding (D0/D1, what the encoder packed) and after it (what the
  decoder sees), with the occupied-pixel mask and a patch-boundary mask (depth denoising pairs);
* the decoded cloud next to the original voxels (artifact-removal pairs).

Pairs are cached as ``.npz`` files in a directory (``cache_dir``) keyed by the cloud's name and
rate, so a training run codes each frame once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from imcodec.types import PointCloud

ProgressFn = Callable[[int, int, str], None]
RATES = ("r1", "r2", "r3", "r4", "r5")


@dataclass
class DepthPair:
    """One coded frame: images (H, W) uint8 depth before (``true0``/``true1``) and after video coding
    (``dec0``/``dec1``), ``mask`` (H, W) bool occupied pixels, ``edge`` (H, W) bool patch-boundary pixels;
    ``decoded`` (K, 3) int64 decoded points, ``original`` (N, 3) int64 input voxels."""

    name: str
    rate: str
    true0: np.ndarray
    true1: np.ndarray
    dec0: np.ndarray
    dec1: np.ndarray
    mask: np.ndarray
    edge: np.ndarray
    decoded: np.ndarray
    original: np.ndarray


def pixel_maps(meta, occ: np.ndarray, owner: np.ndarray, b0: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask, edge): (H, W) bool occupied canvas pixels, and those of them with a 4-neighbour that is
    unoccupied or belongs to another patch (where depth is discontinuous on the canvas)."""
    from imcodec.vpcc.reconstruct import occupied_pixels

    h, w = meta.height, meta.width
    ys, xs, patch = occupied_pixels(meta, occ, owner, b0)
    lab = np.full((h + 2, w + 2), -1, dtype=np.int64)
    lab[ys + 1, xs + 1] = patch
    mask = lab[1:-1, 1:-1] >= 0
    c = lab[1:-1, 1:-1]
    edge = np.zeros((h, w), dtype=bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        edge |= lab[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx] != c
    return mask, edge & mask


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """Image ``a`` turned by the k-th (0..7) flip/transpose: bit 0 flips rows, bit 1 columns, bit 2
    transposes (patches are packed in several orientations, so training sees all 8); contiguous."""
    if k & 1:
        a = a[::-1]
    if k & 2:
        a = a[:, ::-1]
    if k & 4:
        a = a.T
    return np.ascontiguousarray(a)


def pixel_mask(meta, occ: np.ndarray, owner: np.ndarray, b0: int) -> np.ndarray:
    """(H, W) bool occupied canvas pixels: the first map of :func:`pixel_maps` (the pixels of
    :func:`imcodec.vpcc.reconstruct.occupied_pixels`), from block maps, without listing pixels."""
    from imcodec.vpcc.reconstruct import BLOCK

    h, w = meta.height, meta.width

    def on_canvas(blocks: np.ndarray, size: int) -> np.ndarray:  # a block map as (H, W) pixels
        up = np.repeat(np.repeat(blocks, size, axis=0), size, axis=1)[:h, :w]
        out = np.zeros((h, w), dtype=bool)
        out[:up.shape[0], :up.shape[1]] = up
        return out
    return on_canvas(np.asarray(occ, dtype=bool), b0) & on_canvas(np.asarray(owner) >= 0, BLOCK)


def decoded_depth(components: dict[str, bytes], sp, threads: int = 2):
    """(meta, occ, owner, geo_frames) of a coded frame, as the decoder sees them."""
    from imcodec.vpcc.metadata import decode_meta
    from imcodec.vpcc.occupancy import box_blocks, cell_allowed, decode_occupancy_map
    from imcodec.vpcc.video import decode_video

    meta = decode_meta(components["patches"], sp.orient_bits)
    wo = np.where(meta.orient & 1, meta.bh, meta.bw)
    ho = np.where(meta.orient & 1, meta.bw, meta.bh)
    ptr, idx = box_blocks(meta.bu, meta.bv, wo, ho, meta.width, meta.height)
    allowed = cell_allowed(ptr, meta.width, meta.height, sp.b0)
    occ, owner = decode_occupancy_map(components["occupancy"], allowed, ptr, idx, sp.b0)
    geo = decode_video(components["geometry_video"], sp.geometry_codec, sp.geometry_pix_fmt, meta.width,
                       meta.height, sp.geometry_layers, threads)
    return meta, occ, owner, geo


def make_pair(name: str, cloud: PointCloud, rate: str, threads: int = 2) -> DepthPair:
    """Code ``cloud`` with V-PCC at ``rate`` (geometry only) and collect the pair (see the module doc)."""
    from imcodec.vpcc.config import StreamParams, config_from_options
    from imcodec.vpcc.encoder import encode_cloud

    cfg = replace(config_from_options({"rate": rate, "threads": threads}), keep_intermediate="(images)")
    geom = PointCloud(np.asarray(cloud.points, dtype=np.float64), None)
    frame = encode_cloud(geom, cfg)  # keep_intermediate only fills frame.images here; nothing is written
    sp = StreamParams.from_config(cfg)
    meta, occ, owner, geo = decoded_depth(frame.components, sp, threads)
    mask, edge = pixel_maps(meta, occ, owner, sp.b0)
    t0, t1 = frame.images["geometry_d0"], frame.images["geometry_d1"]
    return DepthPair(name, rate, t0.astype(np.uint8), t1.astype(np.uint8), geo[0][0].astype(np.uint8),
                     geo[1][0].astype(np.uint8), mask, edge, np.rint(frame.recon.points).astype(np.int64),
                     np.unique(np.rint(geom.points).astype(np.int64), axis=0))


def _cache_file(cache_dir: Path, name: str, rate: str) -> Path:
    key = hashlib.sha1(name.encode()).hexdigest()[:12]
    stem = "".join(ch if ch.isalnum() else "_" for ch in Path(name).stem)[-40:]
    return cache_dir / f"{stem}_{key}_{rate}.npz"


def load_pairs(clouds: list[tuple[str, PointCloud]], rates: tuple[str, ...] = RATES,
               cache_dir: str | Path | None = None, threads: int = 2,
               progress: ProgressFn | None = None) -> list[DepthPair]:
    """Pairs of every cloud at every rate, read from ``cache_dir`` when there, else made and cached."""
    from imcodec.io.files import ensure_dir, read_bytes, write_bytes_atomic

    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        ensure_dir(cache)
    out, total = [], len(clouds) * len(rates)
    for i, (name, cloud) in enumerate(clouds):
        for j, rate in enumerate(rates):
            path = _cache_file(cache, name, rate) if cache is not None else None
            if path is not None and path.is_file():
                import io

                z = np.load(io.BytesIO(read_bytes(path, "pair cache")))
                pair = DepthPair(name, rate, *(z[k] for k in ("true0", "true1", "dec0", "dec1", "mask",
                                                              "edge", "decoded", "original")))
            else:
                pair = make_pair(name, cloud, rate, threads)
                if path is not None:
                    import io

                    buf = io.BytesIO()
                    np.savez(buf, **{k: getattr(pair, k) for k in ("true0", "true1", "dec0", "dec1", "mask",
                                                                    "edge", "decoded", "original")})
                    write_bytes_atomic(path, buf.getvalue())
            out.append(pair)
            if progress is not None:
                progress(i * len(rates) + j + 1, total, f"{Path(name).name} {rate}")
    return out


def training_clouds(data: list[str], synth: tuple[str, ...] = ("body", "torus"), seed: int = 0,
                    bits: int = 10) -> list[tuple[str, PointCloud]]:
    """(name, cloud) of the data files (PLY, directory, glob or %04d pattern) and synthetic shapes."""
    from imcodec.errors import InputError, UsageError
    from imcodec.io.ply import read_ply
    from imcodec.io.sequence import resolve_frames

    clouds = []
    for spec in data:
        for fr in resolve_frames(spec, None, None):
            pc = read_ply(fr.path)
            if len(pc) and not np.all(pc.points == np.rint(pc.points)):
                raise InputError(f"{fr.path}: training needs voxelised clouds (integer coordinates)")
            clouds.append((str(fr.path), pc))
    if synth:
        from imcodec.synth import make_cloud

        for i, shape in enumerate(synth):
            clouds.append((f"synth:{shape}:{bits}:{seed + i}", make_cloud(shape, bits=bits, seed=seed + i)))
    if not clouds:
        raise UsageError("no training data: give --data and/or keep the synthetic shapes")
    return clouds

"""V-PCC intra encoder: patches -> packing -> occupancy -> depth video -> reconstruction -> colour video.

The encoder decodes its own videos and rebuilds the frame with the decoder's functions, so colour is
transferred onto the geometry the decoder will see and the returned reconstruction is exactly the
decoder's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imcodec.errors import BitstreamError, InputError
from imcodec.io.bitstream import get_varint, put_varint
from imcodec.types import PointCloud
from imcodec.vpcc.config import StreamParams, VpccConfig
from imcodec.vpcc.depthmaps import depth_images
from imcodec.vpcc.grid import COORD_LIMIT
from imcodec.vpcc.metadata import FrameMeta, encode_meta, encode_raw, sort_raw
from imcodec.vpcc.occupancy import (
    box_blocks,
    cell_allowed,
    decode_occupancy_map,
    encode_occupancy,
    occupancy_cells,
    owner_indices,
)
from imcodec.vpcc.packing import BLOCK, block_masks, pack, padded_blocks
from imcodec.vpcc.padding import push_pull
from imcodec.vpcc.patches import PatchParams, PatchSet, generate_patches
from imcodec.vpcc.reconstruct import (
    canvas_coords,
    frame_colors,
    frame_geometry,
    raw_pixel_positions,
    raw_rows,
    rgb_to_ycbcr,
    to_yuv420,
    transfer_colors,
    ycbcr_to_rgb,
)
from imcodec.vpcc.video import VideoSpec, decode_video, encode_video

COMPONENTS = ("patches", "occupancy", "geometry_video", "attribute_video", "raw_points")
# optional: the number of distinct input voxels (varint); decoder-side artifact removal keeps that many
# points after the depth denoiser (streams without it fall back to the keep ratio)
SOURCE_COMPONENT = "source_points"


@dataclass
class EncodedFrame:
    """Components, reconstruction and intermediate images of one coded frame."""

    components: dict[str, bytes]
    recon: PointCloud
    bit_depth: int
    images: dict[str, np.ndarray] = field(default_factory=dict)


def prepare(cloud: PointCloud) -> tuple[np.ndarray, np.ndarray | None]:
    """Distinct integer positions ((N, 3) int64) and their colours ((N, 3) float64 means, or None).

    Raises InputError for non-integer or non-finite coordinates or non-8-bit colours.
    """
    pts = np.asarray(cloud.points, dtype=np.float64)
    if len(pts) and not np.all(np.isfinite(pts)):
        raise InputError("V-PCC input has non-finite coordinates")
    rounded = np.rint(pts)
    if len(pts) and not np.array_equal(rounded, pts):
        bad = pts[np.flatnonzero(np.any(rounded != pts, axis=1))[0]]
        raise InputError(f"V-PCC codes voxelised clouds: coordinates must be integers, got {bad.tolist()}")
    span = float(np.ptp(pts, axis=0).max()) if len(pts) else 0.0
    if span >= COORD_LIMIT:  # checked in float: beyond 2**63 the int64 cast below would wrap
        units = f"{int(span) + 1}" if span < 2.0 ** 53 else f"{span + 1:g}"
        raise InputError(f"V-PCC input spans {units} units; at most {COORD_LIMIT} are supported")
    if len(pts) and float(np.abs(pts).max()) >= 2.0 ** 53:
        raise InputError(f"V-PCC input coordinate {np.abs(pts).max():g} is too large (at most 2**53)")
    coords = rounded.astype(np.int64)
    cols = cloud.colors
    if cols is not None and cols.dtype != np.uint8:
        raise InputError(f"V-PCC codes 8-bit colour; the cloud has {cols.dtype.name} colours")
    if len(coords) == 0:
        return coords.reshape(0, 3), (np.zeros((0, 3)) if cols is not None else None)
    lo = coords.min(axis=0)
    rel = coords - lo
    keys = (rel[:, 0] << 42) | (rel[:, 1] << 21) | rel[:, 2]
    ukeys, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    if len(ukeys) == len(keys):
        order = np.argsort(keys, kind="stable")
        return coords[order], (cols[order].astype(np.float64) if cols is not None else None)
    mask = (1 << 21) - 1
    uniq = np.stack([(ukeys >> 42) & mask, (ukeys >> 21) & mask, ukeys & mask], axis=1) + lo
    if cols is None:
        return uniq, None
    merged = np.stack([np.bincount(inv, weights=cols[:, c], minlength=len(ukeys)) for c in range(3)], axis=1)
    return uniq, merged / counts[:, None]


def patch_params(cfg: VpccConfig) -> PatchParams:
    sp = StreamParams.from_config(cfg)
    return PatchParams(normal_k=cfg.normal_k, normal_cell=cfg.normal_cell, normal_reach=cfg.normal_reach,
                       refine_lambda=cfg.refine_lambda,
                       refine_iterations=cfg.refine_iterations, refine_grid=cfg.refine_grid,
                       min_points=cfg.min_patch_points, thickness=sp.thickness,
                       max_depth=(1 << cfg.geometry_bits) - 1,
                       missed_dist2=0 if cfg.lossless else cfg.missed_dist2,
                       max_rounds=64 if cfg.lossless else cfg.max_rounds,
                       keep_far_points=cfg.lossless or cfg.raw_points, fill=sp.fill, workers=cfg.threads)


def source_points(components: dict[str, bytes]) -> int | None:
    """The frame's number of distinct input voxels (component ``source_points``), or None when the
    stream does not carry it. BitstreamError when it is damaged."""
    data = components.get(SOURCE_COMPONENT)
    if data is None:
        return None
    value, end = get_varint(data, 0, 1 << 40, "source point count")
    if end != len(data):
        raise BitstreamError(f"V-PCC source point count has {len(data) - end} trailing bytes")
    return value


def encode_cloud(cloud: PointCloud, cfg: VpccConfig) -> EncodedFrame:
    """Code one frame; see the module docstring."""
    sp = StreamParams.from_config(cfg)
    coords, colors = prepare(cloud)
    origin = coords.min(axis=0) if len(coords) else np.zeros(3, dtype=np.int64)
    rel = coords - origin
    coord_bits = max(1, int(rel.max()).bit_length()) if len(rel) else 1
    pset = generate_patches(rel, patch_params(cfg))
    meta, pset = _pack(pset, origin, coord_bits, cfg)
    raw = sort_raw(pset.raw)
    images: dict[str, np.ndarray] = {}
    comps = {name: b"" for name in COMPONENTS}
    comps["patches"] = encode_meta(meta, sp.orient_bits)
    comps["raw_points"] = encode_raw(raw)
    comps[SOURCE_COMPONENT] = put_varint(len(coords))
    occ = owner = None
    geo_frames: list = []
    if meta.count:
        occ, owner, comps["occupancy"], py, px = _occupancy(meta, pset, sp.b0)
        frames, images = _geometry_images(meta, pset, py, px, occ, owner, rel, sp, cfg)
        spec = VideoSpec(codec=sp.geometry_codec, pix_fmt=sp.geometry_pix_fmt, qp=cfg.geometry_qp,
                         intra=not cfg.layer_prediction, preset=cfg.preset, threads=cfg.threads)
        comps["geometry_video"] = encode_video(frames, spec)
        geo_frames = decode_video(comps["geometry_video"], spec.codec, spec.pix_fmt, meta.width,
                                  meta.height, len(frames), cfg.threads)
    points, ys, xs, slot = frame_geometry(meta, occ, owner, sp, geo_frames, raw)
    points = points + origin
    out_colors = None
    if colors is not None and len(points):
        attr, imgs = _attribute_frames(meta, coords, colors, points, ys, xs, slot, len(raw), sp, cfg)
        images.update(imgs)
        spec = VideoSpec(codec="hevc", pix_fmt="yuv420p", qp=cfg.attribute_qp,
                         intra=not cfg.layer_prediction, preset=cfg.preset, threads=cfg.threads)
        comps["attribute_video"] = encode_video(attr, spec)
        height = attr[0][0].shape[0]
        dec = decode_video(comps["attribute_video"], "hevc", "yuv420p", meta.width, height, len(attr),
                           cfg.threads)
        out_colors = frame_colors(meta, ys, xs, slot, len(raw), dec)
    elif colors is not None:
        out_colors = np.zeros((0, 3), dtype=np.uint8)
    recon = PointCloud(points.astype(np.float64), out_colors)
    bit_depth = max(1, int(points.max()).bit_length()) if len(points) and points.min() >= 0 else coord_bits
    return EncodedFrame(comps, recon, bit_depth, images)


def _pack(pset: PatchSet, origin, coord_bits: int, cfg: VpccConfig) -> tuple[FrameMeta, PatchSet]:
    """Order patches largest first, pack them and build the frame metadata (patches in that order)."""
    n = pset.count
    bw, bh = padded_blocks(pset.su, pset.sv)
    order = np.lexsort((np.arange(n), -bh, -(bw * bh))).astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    pset = PatchSet(pset.plane[order], pset.u1[order], pset.v1[order], pset.offset[order],
                    pset.su[order], pset.sv[order], rank[pset.pix_patch], pset.pix_u, pset.pix_v,
                    pset.pix_d0, pset.pix_d1, pset.raw)
    ptr, mask = block_masks(pset.pix_patch, pset.pix_u, pset.pix_v, pset.su, pset.sv)
    packing = pack(pset.su, pset.sv, ptr, mask, cfg.canvas_width, cfg.orientations)
    bw, bh = padded_blocks(pset.su, pset.sv)
    s = np.where(pset.plane < 3, -1, 1)
    meta = FrameMeta(np.asarray(origin, dtype=np.int64), coord_bits, packing.width,
                     packing.height if n else 0, pset.plane, packing.orient, packing.bu, packing.bv,
                     bw, bh, pset.u1, pset.v1, s * pset.offset)
    return meta, pset


def _occupancy(meta: FrameMeta, pset: PatchSet, b0: int, ref=None):
    """Code the occupancy map (``ref``: the previous frame's decoded map in a GOF, or None); returns
    the decoder's (occ, owner), the bytes and patch pixel positions."""
    py, px = canvas_coords(meta, pset.pix_patch, pset.pix_u, pset.pix_v)
    occ = occupancy_cells(px, py, meta.width, meta.height, b0)
    wo = np.where(meta.orient & 1, meta.bh, meta.bw)
    ho = np.where(meta.orient & 1, meta.bw, meta.bh)
    ptr, idx = box_blocks(meta.bu, meta.bv, wo, ho, meta.width, meta.height)
    allowed = cell_allowed(ptr, meta.width, meta.height, b0)
    owner = np.full((meta.height // BLOCK, meta.width // BLOCK), -1, dtype=np.int64)
    owner[py // BLOCK, px // BLOCK] = pset.pix_patch
    data = encode_occupancy(occ, allowed, owner_indices(occ, owner, ptr, idx, b0), ref)
    occ_dec, owner_dec = decode_occupancy_map(data, allowed, ptr, idx, b0, ref)
    return occ_dec, owner_dec, data, py, px


def _geometry_images(meta: FrameMeta, pset: PatchSet, py, px, occ, owner, rel, sp: StreamParams,
                     cfg: VpccConfig):
    """Depth images D0 (and D1) as video frames, plus copies for --keep-intermediate."""
    maxv = (1 << cfg.geometry_bits) - 1
    dtype = np.uint16 if cfg.geometry_bits > 8 else np.uint8
    imgs = depth_images(meta, py, px, pset.pix_patch, pset.pix_d0, pset.pix_d1, occ, owner, sp.b0, rel,
                        sp.geometry_layers, sp.thickness, maxv, cfg.geometry_padding)
    frames = [(np.clip(np.rint(img), 0, maxv).astype(dtype),) for img in imgs]
    images = {}
    if cfg.keep_intermediate:
        images["occupancy"] = (np.repeat(np.repeat(occ, sp.b0, 0), sp.b0, 1) * 255).astype(np.uint8)
        for k, fr in enumerate(frames):
            images[f"geometry_d{k}"] = fr[0]
    return frames, images


def _attribute_frames(meta, coords, colors, points, ys, xs, slot, n_raw, sp: StreamParams,
                      cfg: VpccConfig):
    """Colour transfer onto the decoded geometry, then :func:`atlas_frames`."""
    col = transfer_colors(coords, colors, points, workers=cfg.threads)
    return atlas_frames(meta, col, ys, xs, slot, n_raw, sp.n_attribute_frames,
                        keep=bool(cfg.keep_intermediate))


def atlas_frames(meta, col, ys, xs, slot, n_raw: int, n_tex: int, height: int | None = None,
                 keep: bool = False):
    """T0/T1 images of per-point colours, push-pull padding, YUV 4:2:0.

    col: (K+R, 3) float64 RGB of the frame's points (patch points, then raw points); ys, xs, slot:
    (K,) pixel and texture slot of the patch points. Texture pixel k holds the mean colour of the
    points that read it (slot k). height: canvas height of the attribute video (at least the
    geometry canvas plus the raw-colour rows; None = exactly that). Returns (frames: n_tex tuples of
    YUV 4:2:0 uint8 planes, images: RGB uint8 copies when ``keep``).
    """
    k = len(slot)
    w = meta.width
    h = meta.height + raw_rows(n_raw, w)
    if height is not None:
        h = max(h, int(height))
    eff = slot.astype(np.int64) if n_tex == 2 else np.zeros(k, dtype=np.int64)
    flat = (eff * h + ys) * w + xs
    cnt = np.bincount(flat, minlength=n_tex * h * w).reshape(n_tex, h, w)
    tex = np.stack([np.bincount(flat, weights=col[:k, c], minlength=n_tex * h * w) for c in range(3)],
                   axis=-1).reshape(n_tex, h, w, 3).astype(np.float64)
    tex /= np.maximum(cnt, 1)[..., None]
    if n_tex == 2:
        # pixels without far points repeat the near colour (a free P-frame block)
        no_far = cnt[1] == 0
        tex[1][no_far] = tex[0][no_far]
    mask = cnt[0] > 0
    if n_raw:
        ry, rx = raw_pixel_positions(n_raw, w, meta.height)
        tex[:, ry, rx] = col[k:]
        mask[ry, rx] = True
    frames = []
    images = {}
    for i in range(n_tex):
        ycc = push_pull(rgb_to_ycbcr(tex[i]), mask)
        frames.append(to_yuv420(ycc, mask))
        if keep:
            images[f"attribute_t{i}"] = np.clip(np.rint(ycbcr_to_rgb(ycc)), 0, 255).astype(np.uint8)
    return frames, images

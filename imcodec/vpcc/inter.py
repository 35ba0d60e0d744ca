"""V-PCC groups of frames (GOF): temporally consistent packing, inter-coded sub-streams, 3D-motion
colour prediction.

Packing (:func:`imcodec.vpcc.gofpack.pack_gof`): patches of frame t are matched to those of frame t-1 (same projection
plane, largest overlap of their tangent-plane boxes, intersection over union >= 0.2,
one-to-one, best pairs first) and chained into tracks; each track gets one canvas box for the whole
GOF, so a tangent coordinate keeps its canvas pixel through the GOF. All frames share one canvas.

Sub-streams: every frame carries its own ``patches`` (inter-coded against frame t-1's table after the
first frame: an exactly repeated patch costs a flag and an index step), ``occupancy`` (two context
bits from frame t-1's map), ``raw_points`` and a ``gof`` record (:class:`GofRecord`). Frames after the
first need their predecessors (``FrameCode.needs_previous``), so random access decodes from the GOF
start.

Temporal padding: in frames after the first, the 8x8 blocks of a depth or colour image that the
decoder never reads repeat the previous frame's pixels (or, for colour coded against a prediction,
their layer's prediction): free skips for x265, where spatial padding would change with the
neighbourhood (:func:`imcodec.vpcc.padding.fill_from_previous`).

Video modes (geometry and colour each): ``MODE_GOF``: the videos of all frames in one x265 GOP carried
by the first frame (depth: D0/D1 of frame 0, then of frame 1, ...). ``MODE_REF``: the frame's own
video coded as P-frames after a reference frame that both sides synthesise and that is never
transmitted (:func:`imcodec.vpcc.video.encode_video_after`): for colour, the 3D motion-compensated
prediction of T0 from frame t-1's decoded colours (:mod:`imcodec.vpcc.motion`, ``motion_hints``;
one texture layer); for depth, frame t-1's decoded points projected into frame t's patches
(``depth_prediction``, off by default). ``MODE_REF_LAYERS`` (colour, two texture layers): the same
with four synthesised references: the predicted T0 and T1 (every point predicted, so that T1 too has
its own layer's prediction), then frame t-1's decoded T0 and T1, so that x265 chooses per block
between the 3D-motion prediction and its own motion search on frame t-1 (``hint_refs="all"``, the
default); ``MODE_REF_PREDICTED``: the predicted T0 and T1 only (``hint_refs="predicted"``;
``hint_refs="t0"`` gives ``MODE_REF``). ``MODE_OWN``: the frame's
own video without a reference (first frame, or when the references could not be reproduced).
``MODE_NONE``: no video (no colour, or no patches).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from imcodec.codecs import FrameCode
from imcodec.errors import BitstreamError, InputError
from imcodec.io.bitstream import get_varint, put_varint
from imcodec.types import PointCloud
from imcodec.vpcc.config import X265_PRESETS as PRESETS
from imcodec.vpcc.config import StreamParams, VpccConfig
from imcodec.vpcc.encoder import (
    SOURCE_COMPONENT,
    _geometry_images,
    _occupancy,
    atlas_frames,
    patch_params,
    prepare,
)
from imcodec.vpcc.grid import COORD_LIMIT
from imcodec.vpcc.metadata import FrameMeta, decode_meta, decode_raw, encode_meta, encode_raw, sort_raw
from imcodec.vpcc.motion import (
    DecodedFrame,
    block_hints,
    correspond,
    predict_atlas,
    predict_depth,
)
from imcodec.vpcc.occupancy import box_blocks, cell_allowed, decode_occupancy_map
from imcodec.vpcc.gofpack import pack_gof
from imcodec.vpcc.packing import BLOCK
from imcodec.vpcc.padding import fill_from_previous
from imcodec.vpcc.patches import generate_patches
from imcodec.vpcc.reconstruct import frame_colors, frame_geometry, occupied_pixels, raw_rows, transfer_colors
from imcodec.vpcc.video import VideoSpec, decode_video, decode_video_after, encode_video, encode_video_after

GOF_COMPONENT = "gof"
MODE_GOF, MODE_REF, MODE_OWN, MODE_NONE, MODE_REF_LAYERS, MODE_REF_PREDICTED = 0, 1, 2, 3, 4, 5
MAX_GOF = 1024
# colour modes with synthesised references: how many predicted texture layers they use
_REF_LAYERS = {MODE_REF: 1, MODE_REF_LAYERS: 2, MODE_REF_PREDICTED: 2}
# VpccConfig.hint_refs -> the colour mode of a hinted frame with two texture layers
_HINT_MODES = {"all": MODE_REF_LAYERS, "predicted": MODE_REF_PREDICTED, "t0": MODE_REF}


@dataclass(frozen=True)
class GofRecord:
    """The ``gof`` sub-stream of a frame: varints index, size, attribute video height, colour mode,
    geometry mode, then the x265 settings the decoder needs to synthesise reference frames exactly:
    attribute QP, geometry QP, preset number, threads, and the QPs of the synthesised colour and
    depth reference frames (:func:`reference_qp`)."""

    index: int
    size: int
    attr_height: int
    mode: int
    geo_mode: int = 0
    attr_qp: int = 0
    geo_qp: int = 0
    preset: int = 0
    threads: int = 1
    attr_ref_qp: int = 12
    geo_ref_qp: int = 12

    def pack(self) -> bytes:
        return b"".join(put_varint(v) for v in (self.index, self.size, self.attr_height, self.mode,
                                                 self.geo_mode, self.attr_qp, self.geo_qp, self.preset,
                                                 self.threads, self.attr_ref_qp, self.geo_ref_qp))

    @classmethod
    def unpack(cls, data: bytes) -> "GofRecord":
        vals, pos = [], 0
        for what, limit in (("GOF index", MAX_GOF), ("GOF size", MAX_GOF), ("attribute height", 1 << 14),
                            ("colour mode", MODE_REF_PREDICTED), ("geometry mode", MODE_NONE),
                            ("attribute QP", 51), ("geometry QP", 51), ("x265 preset", len(PRESETS) - 1),
                            ("threads", 256), ("colour reference QP", 51), ("depth reference QP", 51)):
            v, pos = get_varint(data, pos, limit, what)
            vals.append(v)
        if pos != len(data) or vals[0] >= vals[1]:
            raise BitstreamError(f"V-PCC GOF record is damaged: {bytes(data).hex()}")
        return cls(*vals)

    def spec(self, codec: str, pix_fmt: str, qp: int, ref_qp: int) -> VideoSpec:
        """The encoder's video settings for reference synthesis (reference frame at ``ref_qp``)."""
        return VideoSpec(codec=codec, pix_fmt=pix_fmt, qp=qp, preset=PRESETS[self.preset],
                         threads=self.threads, intra_qp=ref_qp)


def reference_qp(qp: int) -> int:
    """QP of a synthesised reference frame for a video at ``qp``: max(12, qp - 20). Finer references
    help little at high QPs and cost bits there (basketball 1-2, r1: a reference at QP 22 instead of 12
    takes 16% fewer bits for frame 2's colour at +0.0 dB Y); at r3 and above QP 12 measured best."""
    return max(12, qp - 20)


# ------------------------------------------------------------------------------------ validation

def check_sequence(clouds: list[PointCloud], names: list[str] | None = None) -> None:
    """InputError unless all clouds have colour or none has, and all share one bit depth (bits of the
    largest coordinate). ``names`` label the frames in messages (default: frame 0, 1, ...)."""
    names = names or [f"frame {i}" for i in range(len(clouds))]
    if not clouds:
        return
    first_col = clouds[0].colors is not None
    depths = []
    for name, c in zip(names, clouds):
        if (c.colors is not None) != first_col:
            has = "has" if c.colors is not None else "lacks"
            raise InputError(f"{name}: {has} colour while {names[0]} "
                             f"{'has' if first_col else 'lacks'} it; frames of a sequence must agree")
        pts = np.asarray(c.points)
        depths.append(int(max(1, int(np.ceil(pts.max())).bit_length())) if len(pts) and pts.min() >= 0 else None)
    known = [d for d in depths if d is not None]
    for name, d in zip(names, depths):
        if d is not None and d != known[0]:
            raise InputError(f"{name}: {d}-bit coordinates while {names[depths.index(known[0])]} has "
                             f"{known[0]}-bit ones; frames of a sequence must share one bit depth")


# -------------------------------------------------------------------------------------- encoding

def encode_group(clouds: list[PointCloud], cfg: VpccConfig, state: dict) -> list[FrameCode]:
    """Code one GOF (see the module docstring); ``cfg.motion_hints`` picks the colour modes.

    state: with ``export_hints`` true, per frame (t >= 1 of the sequence) a tuple (frame number in
    the sequence, hints (B, 6) from :func:`imcodec.vpcc.motion.block_hints`, canvas width, height)
    is appended to ``state["hints"]``; ``state["prev_decoded"]`` carries frame t-1 across GOFs.
    """
    if not 1 <= len(clouds) <= MAX_GOF:
        raise InputError(f"a GOF holds 1..{MAX_GOF} frames, got {len(clouds)}")
    base = state.get("frame", 0)
    check_sequence(clouds, [f"frame {base + i}" for i in range(len(clouds))])
    sp = StreamParams.from_config(cfg)
    prepared = [prepare(c) for c in clouds]
    nonempty = [c for c, _ in prepared if len(c)]
    origin = np.min([c.min(axis=0) for c in nonempty], axis=0) if nonempty else np.zeros(3, np.int64)
    rels = [c - origin for c, _ in prepared]
    top = max((int(r.max()) for r in rels if len(r)), default=0)
    if top >= COORD_LIMIT:
        raise InputError(f"V-PCC GOF spans {top + 1} units; at most {COORD_LIMIT} are supported")
    coord_bits = max(1, top.bit_length())
    params = patch_params(cfg)
    metas, psets = pack_gof([generate_patches(rel, params) for rel in rels], origin, coord_bits, cfg)
    width = max(m.width for m in metas)
    height = max(m.height for m in metas)
    raws = [sort_raw(p.raw) for p in psets]
    comps_list, maps = [], []
    geo_in: list = []
    prev_occ = None
    for meta in metas:
        meta.width = width
        if meta.count:
            meta.height = height
    for k, (meta, pset, rel, raw) in enumerate(zip(metas, psets, rels, raws)):
        comps = {"patches": encode_meta(meta, sp.orient_bits, metas[k - 1] if k else None),
                 "occupancy": b"", "geometry_video": b"", "attribute_video": b"",
                 "raw_points": encode_raw(raw), SOURCE_COMPONENT: put_varint(len(rel))}
        occ = owner = None
        if meta.count:
            occ, owner, comps["occupancy"], py, px = _occupancy(meta, pset, sp.b0, prev_occ)
            prev_occ = occ
            frames, _ = _geometry_images(meta, pset, py, px, occ, owner, rel, sp, cfg)
            if k and metas[k - 1].count and cfg.layer_prediction and not (cfg.motion_hints
                                                                          and cfg.depth_prediction):
                # temporal padding (MODE_GOF; see the module docstring)
                cells = np.repeat(np.repeat(occ.astype(bool), sp.b0, axis=0), sp.b0, axis=1)
                layers = sp.geometry_layers
                frames = [fill_from_previous(geo_in[(k - 1) * layers + i], fr, cells)
                          for i, fr in enumerate(frames)]
        else:
            dtype = np.uint16 if cfg.geometry_bits > 8 else np.uint8
            frames = [(np.zeros((height, width), dtype=dtype),)] * sp.geometry_layers
        geo_in += frames
        comps_list.append(comps)
        maps.append((occ, owner))
    del psets, rels  # the per-pixel patch data is no longer needed (memory: GOFs of 32 large frames)
    decoded, geo_modes = _code_geometry(metas, raws, maps, geo_in, comps_list, sp, cfg, width, height)
    attr_height = max(((m.height + raw_rows(len(r), width)) for m, r in zip(metas, raws)), default=0)
    modes = _code_colors(prepared, metas, decoded, comps_list, sp, cfg, attr_height, state)
    codes = []
    for k, (meta, dec, comps) in enumerate(zip(metas, decoded, comps_list)):
        comps[GOF_COMPONENT] = GofRecord(k, len(clouds), attr_height, modes[k], geo_modes[k],
                                         cfg.attribute_qp, cfg.geometry_qp, PRESETS.index(cfg.preset),
                                         cfg.threads, reference_qp(cfg.attribute_qp),
                                         reference_qp(cfg.geometry_qp)).pack()
        recon = PointCloud(dec.points.astype(np.float64), dec.colors)
        pts = dec.points
        bit_depth = max(1, int(pts.max()).bit_length()) if len(pts) and pts.min() >= 0 else coord_bits
        codes.append(FrameCode(comps, recon, needs_previous=k > 0, bit_depth=bit_depth))
        _export(state, dec, base + k)
    state["frame"] = base + len(clouds)
    return codes


def _code_geometry(metas, raws, maps, geo_in, comps_list, sp: StreamParams, cfg: VpccConfig, width: int,
                   height: int) -> tuple[list[DecodedFrame], list[int]]:
    """Geometry videos of a GOF (modes as for colour); returns the decoded frames and the modes."""
    layers = sp.geometry_layers
    spec = VideoSpec(codec=sp.geometry_codec, pix_fmt=sp.geometry_pix_fmt, qp=cfg.geometry_qp,
                     intra=not cfg.layer_prediction, preset=cfg.preset, threads=cfg.threads)
    use_ref = cfg.motion_hints and cfg.depth_prediction and spec.codec == "hevc" and not spec.intra
    rspec = replace(spec, intra_qp=reference_qp(cfg.geometry_qp))
    decoded: list[DecodedFrame] = []
    modes: list[int] = []
    if height and not use_ref:
        comps_list[0]["geometry_video"] = encode_video(geo_in, spec)
        geo_out = decode_video(comps_list[0]["geometry_video"], spec.codec, spec.pix_fmt, width, height,
                               len(geo_in), cfg.threads)
    for k, (meta, raw, (occ, owner)) in enumerate(zip(metas, raws, maps)):
        if not meta.count:
            geo = []
            modes.append(MODE_GOF if height and not use_ref else MODE_NONE)
        elif not use_ref:
            geo = geo_out[k * layers:(k + 1) * layers]
            modes.append(MODE_GOF)
        else:
            frames = geo_in[k * layers:(k + 1) * layers]
            data = None
            if k > 0 and len(decoded[k - 1].points):
                ref = _depth_reference(meta, occ, owner, sp, decoded[k - 1].points, cfg.geometry_bits)
                data = encode_video_after([ref], frames, rspec)
            if data is not None:
                comps_list[k]["geometry_video"] = data
                geo = decode_video_after([ref], data, rspec, width, height, layers)
                modes.append(MODE_REF)
            else:
                comps_list[k]["geometry_video"] = encode_video(frames, spec)
                geo = decode_video(comps_list[k]["geometry_video"], spec.codec, spec.pix_fmt, width, height,
                                   layers, cfg.threads)
                modes.append(MODE_OWN)
        decoded.append(_decoded_frame(meta, occ, owner, sp, geo, raw))
    return decoded, modes


def _depth_reference(meta: FrameMeta, occ, owner, sp: StreamParams, prev_points, bits: int):
    """The synthesised reference frame of a frame's depth video (:func:`predict_depth` of D0)."""
    ys, xs, patch = occupied_pixels(meta, occ, owner, sp.b0)
    maxv = (1 << bits) - 1
    pred = predict_depth(meta, ys, xs, patch, prev_points, 1, sp.thickness, maxv)[0]
    return (np.clip(np.rint(pred), 0, maxv).astype(np.uint16 if bits > 8 else np.uint8),)


def _decoded_frame(meta: FrameMeta, occ, owner, sp: StreamParams, geo: list, raw) -> DecodedFrame:
    points, ys, xs, slot = frame_geometry(meta, occ, owner, sp, geo, raw)
    plane = meta.plane[owner[ys // BLOCK, xs // BLOCK]] if len(ys) else np.zeros(0, dtype=np.int64)
    return DecodedFrame(points + meta.origin, None, ys, xs, slot, plane, meta.width, meta.height)


def _code_colors(prepared, metas, decoded, comps_list, sp, cfg: VpccConfig, attr_height: int,
                 state: dict) -> list[int]:
    """Colour videos of a GOF; sets each DecodedFrame's colours; returns the per-frame modes."""
    n = len(metas)
    if prepared[0][1] is None or attr_height == 0:
        for dec in decoded:
            dec.colors = None if prepared[0][1] is None else np.zeros((len(dec.points), 3), np.uint8)
        return [MODE_NONE] * n
    n_tex = sp.n_attribute_frames
    spec = VideoSpec(codec="hevc", pix_fmt="yuv420p", qp=cfg.attribute_qp,
                     intra=not cfg.layer_prediction, preset=cfg.preset, threads=cfg.threads)
    rspec = replace(spec, intra_qp=reference_qp(cfg.attribute_qp))
    atlases = []
    for (coords, colors), meta, dec in zip(prepared, metas, decoded):
        col = transfer_colors(coords, colors, dec.points, workers=cfg.threads)
        atlases.append(atlas_frames(meta, col, dec.ys, dec.xs, dec.slot, len(dec.points) - len(dec.ys),
                                    n_tex, height=attr_height)[0])
    modes = []
    masks = [_read_pixels(meta, dec, attr_height) for meta, dec in zip(metas, decoded)]
    if not cfg.motion_hints:
        for k in range(1, n):
            atlases[k] = [fill_from_previous(p, c, masks[k]) for p, c in zip(atlases[k - 1], atlases[k])]
        comps_list[0]["attribute_video"] = encode_video([f for a in atlases for f in a], spec)
        out = decode_video(comps_list[0]["attribute_video"], "hevc", "yuv420p", metas[0].width,
                           attr_height, n * n_tex, cfg.threads)
        for k, dec in enumerate(decoded):
            dec.colors = _colors(metas[k], dec, out[k * n_tex:(k + 1) * n_tex])
            modes.append(MODE_GOF)
        return modes
    ref_mode = _HINT_MODES[cfg.hint_refs] if n_tex == 2 else MODE_REF
    out = None
    for k, (meta, dec) in enumerate(zip(metas, decoded)):
        data = None
        if k > 0 and not spec.intra and len(dec.points) and len(decoded[k - 1].points):
            preds = predict_atlas(meta, dec, decoded[k - 1], n_tex, attr_height, cfg.threads,
                                  layers=_REF_LAYERS[ref_mode])
            # unread blocks of T0 / T1 repeat their own layer's prediction
            frames = [fill_from_previous(preds[min(i, len(preds) - 1)], a, masks[k])
                      for i, a in enumerate(atlases[k])]
            refs = _references(ref_mode, preds, out)
            data = encode_video_after(refs, frames, rspec)
        if data is not None:
            comps_list[k]["attribute_video"] = data
            out = decode_video_after(refs, data, rspec, meta.width, attr_height, n_tex)
            modes.append(ref_mode)
        else:
            comps_list[k]["attribute_video"] = encode_video(atlases[k], spec)
            out = decode_video(comps_list[k]["attribute_video"], "hevc", "yuv420p", meta.width,
                               attr_height, n_tex, cfg.threads)
            modes.append(MODE_OWN)
        dec.colors = _colors(meta, dec, out)
    return modes


def _references(mode: int, preds: list, prev_pictures: list | None) -> list:
    """Synthesised reference pictures of a colour video in ``mode``: the predicted T0 (MODE_REF), the
    predicted T0 and T1 (MODE_REF_PREDICTED), or those followed by frame t-1's decoded T0 and T1
    (MODE_REF_LAYERS), so that x265 chooses per block between the 3D-motion prediction and its own
    motion search on frame t-1."""
    if mode != MODE_REF_LAYERS:
        return list(preds)
    if prev_pictures is None or len(prev_pictures) != 2 or prev_pictures[0][0].shape != preds[0][0].shape:
        raise BitstreamError("V-PCC colour predicted from a previous frame without decoded colour pictures "
                             "of the same size")
    return list(preds) + list(prev_pictures)


def _read_pixels(meta: FrameMeta, dec: DecodedFrame, height: int) -> np.ndarray:
    """(height, width) bool: the attribute-video pixels the decoder reads (patch points, raw rows)."""
    mask = np.zeros((height, meta.width), dtype=bool)
    mask[dec.ys, dec.xs] = True
    mask[meta.height if meta.count else 0:] = len(dec.points) > len(dec.ys)
    return mask


def _colors(meta: FrameMeta, dec: DecodedFrame, attr: list) -> np.ndarray:
    if len(dec.points) == 0:
        return np.zeros((0, 3), dtype=np.uint8)
    return frame_colors(meta, dec.ys, dec.xs, dec.slot, len(dec.points) - len(dec.ys), attr)


def _export(state: dict, dec: DecodedFrame, number: int) -> None:
    """Block hints of frame ``number`` against the previous decoded frame (state["export_hints"])."""
    if state.get("export_hints"):
        prev = state.get("prev_decoded")
        if prev is not None:
            idx, dist = correspond(dec, prev)
            hints = block_hints(dec, prev, idx, dist, int(state.get("hint_block", BLOCK)))
            state.setdefault("hints", []).append((number, hints, dec.width, dec.height))
        state["prev_decoded"] = dec


# -------------------------------------------------------------------------------------- decoding

def decode_gof_frame(components: dict[str, bytes], sp: StreamParams, state: dict, threads: int = 2,
                     denoiser=None) -> PointCloud:
    """Decode one frame of a GOF-coded stream; frames come in order from their GOF's first frame.

    state keeps the GOF's decoded videos and the previous decoded frame; ``state["export_hints"]``
    collects block hints as :func:`encode_group` does.
    """
    missing = [name for name in ("patches", "occupancy", "geometry_video", "attribute_video",
                                 "raw_points", GOF_COMPONENT) if name not in components]
    if missing:
        raise BitstreamError(f"V-PCC GOF frame lacks sub-stream(s) {', '.join(missing)}")
    rec = GofRecord.unpack(components[GOF_COMPONENT])
    gof = state.get("gof")
    if rec.index == 0:
        gof = {"size": rec.size, "next": 0, "geo": None, "geo_data": b"", "attr": None, "prev": None,
               "pictures": None, "occ": None, "meta": None}
    if gof is None or gof["next"] != rec.index or gof["size"] != rec.size:
        raise BitstreamError(f"V-PCC frame {rec.index} of a GOF of {rec.size} must be decoded after its "
                             f"predecessors (decode from the GOF's first frame)")
    meta = decode_meta(components["patches"], sp.orient_bits, gof["meta"])
    gof["meta"] = meta
    raw = decode_raw(components["raw_points"])
    data = components["geometry_video"]
    if rec.index > 0 and rec.geo_mode == MODE_GOF and data:
        raise BitstreamError("V-PCC GOF frame after the first carries the GOF's geometry video")
    if rec.index == 0:
        gof["geo_data"] = data if rec.geo_mode == MODE_GOF else b""
    occ = owner = None
    geo: list = []
    if meta.count:
        wo = np.where(meta.orient & 1, meta.bh, meta.bw)
        ho = np.where(meta.orient & 1, meta.bw, meta.bh)
        ptr, idx = box_blocks(meta.bu, meta.bv, wo, ho, meta.width, meta.height)
        allowed = cell_allowed(ptr, meta.width, meta.height, sp.b0)
        ref_occ = gof["occ"]
        if ref_occ is not None and ref_occ.shape != allowed.shape:
            raise BitstreamError(f"V-PCC GOF frame canvas {meta.width}x{meta.height} differs from the "
                                 f"previous frame's")
        occ, owner = decode_occupancy_map(components["occupancy"], allowed, ptr, idx, sp.b0, ref_occ)
        gof["occ"] = occ
        geo = _decode_geometry(data, rec, meta, occ, owner, gof, sp, threads)
    elif components["occupancy"] or (data and rec.geo_mode != MODE_GOF):
        raise BitstreamError("V-PCC frame without patches carries occupancy or geometry data")
    dec = _decoded_frame(meta, occ, owner, sp, geo, raw)
    dec.colors = _decode_colors(components, rec, meta, dec, gof, sp, threads)
    gof["prev"] = dec  # the encoder's reconstruction: what the next frame's predictions start from
    gof["next"] = rec.index + 1
    state["gof"] = gof
    if state.get("export_hints"):
        _export(state, dec, state.get("decoded", 0))
        state["decoded"] = state.get("decoded", 0) + 1
    out = dec
    if denoiser is not None and meta.count:
        # the denoised frame is output only; predictions keep using the plain one, as the encoder did
        out = _decoded_frame(meta, occ, owner, sp, denoiser(geo, meta, occ, owner, sp), raw)
        out.colors = _pixel_colors(dec, out, sp.n_attribute_frames)
    return PointCloud(out.points.astype(np.float64), out.colors)


def _pixel_colors(dec: DecodedFrame, out: DecodedFrame, n_tex: int) -> np.ndarray | None:
    """Colours of ``out`` (the same atlas pixels as ``dec``, other depths) from ``dec``: each patch point
    takes the colour of its pixel and texture layer (layer 0 when ``dec`` has no point there), as
    the attribute video gives it; raw points keep theirs."""
    if dec.colors is None:
        return None
    k_dec, k_out = len(dec.ys), len(out.ys)
    if k_dec == 0:
        return dec.colors
    layer = lambda f: f.slot.astype(np.int64) if n_tex == 2 else np.zeros(len(f.ys), dtype=np.int64)
    key_dec = (dec.ys * dec.width + dec.xs) * 2 + layer(dec)
    key_out = (out.ys * out.width + out.xs) * 2 + layer(out)
    order = np.argsort(key_dec, kind="stable")
    sorted_keys = key_dec[order]
    pos = np.minimum(np.searchsorted(sorted_keys, key_out), k_dec - 1)
    near = np.minimum(np.searchsorted(sorted_keys, key_out - layer(out)), k_dec - 1)
    pick = order[np.where(sorted_keys[pos] == key_out, pos, near)]
    return np.concatenate([dec.colors[:k_dec][pick], dec.colors[k_dec:]]) if k_out else dec.colors[k_dec:]


def _decode_geometry(data: bytes, rec: GofRecord, meta: FrameMeta, occ, owner, gof: dict, sp: StreamParams,
                     threads: int) -> list:
    layers = sp.geometry_layers
    if rec.geo_mode == MODE_GOF:
        if gof["geo"] is None:
            if not gof["geo_data"]:
                raise BitstreamError("V-PCC GOF lacks its geometry video")
            gof["geo"] = decode_video(gof["geo_data"], sp.geometry_codec, sp.geometry_pix_fmt, meta.width,
                                      meta.height, rec.size * layers, threads)
        if gof["geo"][0][0].shape != (meta.height, meta.width):
            raise BitstreamError(f"V-PCC GOF frame canvas {meta.width}x{meta.height} differs from its "
                                 f"geometry video's")
        return gof["geo"][rec.index * layers:(rec.index + 1) * layers]
    if rec.geo_mode == MODE_REF:
        prev = gof["prev"]
        if prev is None or len(prev.points) == 0 or sp.geometry_codec != "hevc":
            raise BitstreamError("V-PCC depth video predicted from a frame without points")
        bits = 10 if sp.geometry_pix_fmt == "gray10le" else 8
        ref = _depth_reference(meta, occ, owner, sp, prev.points, bits)
        spec = rec.spec(sp.geometry_codec, sp.geometry_pix_fmt, rec.geo_qp, rec.geo_ref_qp)
        return decode_video_after([ref], data, spec, meta.width, meta.height, layers)
    if rec.geo_mode == MODE_OWN:
        return decode_video(data, sp.geometry_codec, sp.geometry_pix_fmt, meta.width, meta.height, layers,
                            threads)
    raise BitstreamError("V-PCC frame with patches has no geometry video")


def _decode_colors(components, rec: GofRecord, meta: FrameMeta, dec: DecodedFrame, gof: dict,
                   sp: StreamParams, threads: int):
    n_tex = sp.n_attribute_frames
    data = components["attribute_video"]
    if rec.mode == MODE_NONE:
        if data:
            raise BitstreamError("V-PCC GOF frame without colour carries an attribute video")
        gof["pictures"] = None
        return None
    if len(dec.points) and rec.attr_height < meta.height + raw_rows(len(dec.points) - len(dec.ys), meta.width):
        raise BitstreamError(f"V-PCC GOF attribute height {rec.attr_height} is too small")
    if rec.mode == MODE_GOF:
        if gof["attr"] is None:
            if rec.index or not data:
                raise BitstreamError("V-PCC GOF lacks its attribute video")
            gof["attr"] = decode_video(data, "hevc", "yuv420p", meta.width, rec.attr_height,
                                       rec.size * n_tex, threads)
        elif data:
            raise BitstreamError("V-PCC GOF frame after the first carries an attribute video")
        out = gof["attr"][rec.index * n_tex:(rec.index + 1) * n_tex]
    elif rec.mode in _REF_LAYERS:
        prev = gof["prev"]
        if prev is None or prev.colors is None or len(prev.points) == 0 or len(dec.points) == 0:
            raise BitstreamError("V-PCC colour predicted from or for a frame without coloured points")
        if _REF_LAYERS[rec.mode] > n_tex:
            raise BitstreamError(f"V-PCC colour predicted in two texture layers for a stream with {n_tex}")
        spec = rec.spec("hevc", "yuv420p", rec.attr_qp, rec.attr_ref_qp)
        preds = predict_atlas(meta, dec, prev, n_tex, rec.attr_height, threads, layers=_REF_LAYERS[rec.mode])
        refs = _references(rec.mode, preds, gof.get("pictures"))
        out = decode_video_after(refs, data, spec, meta.width, rec.attr_height, n_tex)
    else:
        out = decode_video(data, "hevc", "yuv420p", meta.width, rec.attr_height, n_tex, threads)
    gof["pictures"] = out  # the next frame's references in MODE_REF_LAYERS
    return _colors(meta, dec, out)

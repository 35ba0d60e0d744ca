"""The V-PCC codec ("vpcc", codec id 2): video-based intra coding of voxelised point clouds.

Sub-streams per frame: ``patches`` (frame header and patch table), ``occupancy`` (occupancy map and
block-to-patch indices), ``geometry_video`` (depth layers D0/D1, HEVC or lossless), ``attribute_video``
(colour layers T0/T1, HEVC 4:2:0; empty without colour) and ``raw_points``. See
:mod:`imcodec.vpcc.encoder` for the pipeline; this module decodes and registers the codec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imcodec.codecs import FrameCode, register_codec
from imcodec.errors import BitstreamError
from imcodec.types import PointCloud
from imcodec.vpcc.config import StreamParams, VpccConfig, config_from_options
from imcodec.vpcc.encoder import COMPONENTS, encode_cloud
from imcodec.vpcc.metadata import decode_meta, decode_raw
from imcodec.vpcc.occupancy import box_blocks, cell_allowed, decode_occupancy_map
from imcodec.vpcc.reconstruct import frame_colors, frame_geometry, raw_rows
from imcodec.vpcc.video import decode_video


@register_codec("vpcc", codec_id=2)
class VpccCodec:
    """V-PCC intra codec (see the module docstring)."""

    config_type = VpccConfig
    # every frame carries it; empty without colour, and in a GOF's later frames whose colour video
    # rides on the GOF's first frame (MODE_GOF, imcodec.vpcc.inter)
    color_components = frozenset({"attribute_video"})

    @classmethod
    def make_config(cls, options: dict[str, Any]) -> VpccConfig:
        """Config from CLI/API options: rate (r1..r5), geometry_qp, attribute_qp, lossless,
        keep_intermediate, threads (None = not given); UsageError for anything else."""
        return config_from_options(options)

    def stream_params(self, config: VpccConfig) -> bytes:
        return StreamParams.from_config(config).pack()

    def encode_frame(self, cloud: PointCloud, config: VpccConfig, state: dict) -> FrameCode:
        frame = encode_cloud(cloud, config)
        index = state.get("frame", 0)
        state["frame"] = index + 1
        if config.keep_intermediate:
            ext = "nut" if config.geometry_codec == "ffv1" else "hevc"
            _keep(Path(config.keep_intermediate), index, frame.images, frame.components, ext)
        return FrameCode(frame.components, frame.recon, bit_depth=frame.bit_depth)

    def encode_group(self, clouds: list[PointCloud], config: VpccConfig, state: dict) -> list[FrameCode]:
        """Code a group of frames with inter prediction (:mod:`imcodec.vpcc.inter`); one frame is
        coded as :meth:`encode_frame` does (intra)."""
        if len(clouds) == 1:
            return [self.encode_frame(clouds[0], config, state)]
        from imcodec.vpcc.inter import encode_group

        return encode_group(clouds, config, state)

    def decode_frame(self, components: dict[str, bytes], header: Any, state: dict) -> PointCloud:
        params = header.params if hasattr(header, "params") else bytes(header)
        sp = StreamParams.unpack(params)
        colors = getattr(header, "has_colors", None)
        if "gof" in components:
            from imcodec.vpcc.inter import decode_gof_frame

            cloud = decode_gof_frame(components, sp, state, denoiser=state.get("depth_denoiser"))
        else:
            state.pop("gof", None)
            cloud = decode_components(components, sp, denoiser=state.get("depth_denoiser"), has_colors=colors)
        if colors and cloud.colors is None and len(cloud) == 0:
            # a frame without points in a colour stream: empty colours, as the encoder's recon has
            cloud = cloud.with_(colors=np.zeros((0, 3), dtype=np.uint8))
        return cloud


def decode_components(components: dict[str, bytes], sp: StreamParams, threads: int = 2,
                      denoiser=None, has_colors: bool | None = None) -> PointCloud:
    """Rebuild a frame from its sub-streams (BitstreamError when one is missing or damaged).

    ``denoiser(geo_frames, meta, occ, owner, sp) -> geo_frames`` (optional, e.g.
    :class:`imcodec.learned.denoiser.DepthDenoiser`) filters the decoded depth frames. ``has_colors``: the
    stream header declares colour (True: a frame with points needs a non-empty attribute video;
    None: not known)."""
    missing = [name for name in COMPONENTS if name not in components]
    if missing:
        raise BitstreamError(f"V-PCC frame lacks sub-stream(s) {', '.join(missing)}")
    meta = decode_meta(components["patches"], sp.orient_bits)
    raw = decode_raw(components["raw_points"])
    occ = owner = None
    geo: list = []
    if meta.count:
        wo = np.where(meta.orient & 1, meta.bh, meta.bw)
        ho = np.where(meta.orient & 1, meta.bw, meta.bh)
        ptr, idx = box_blocks(meta.bu, meta.bv, wo, ho, meta.width, meta.height)
        allowed = cell_allowed(ptr, meta.width, meta.height, sp.b0)
        occ, owner = decode_occupancy_map(components["occupancy"], allowed, ptr, idx, sp.b0)
        geo = decode_video(components["geometry_video"], sp.geometry_codec, sp.geometry_pix_fmt,
                           meta.width, meta.height, sp.geometry_layers, threads)
        if denoiser is not None:
            geo = denoiser(geo, meta, occ, owner, sp)
    elif components["geometry_video"] or components["occupancy"]:
        raise BitstreamError("V-PCC frame without patches carries geometry video or occupancy data")
    points, ys, xs, slot = frame_geometry(meta, occ, owner, sp, geo, raw)
    points = points + meta.origin
    if has_colors and len(points) and not components["attribute_video"]:
        raise BitstreamError(f"V-PCC frame of {len(points)} points has an empty attribute video although "
                             "the stream header declares colour")
    colors = None
    if components["attribute_video"]:
        n_frames = sp.n_attribute_frames
        height = meta.height + raw_rows(len(raw), meta.width)
        if height == 0:
            raise BitstreamError("V-PCC frame without points carries an attribute video")
        attr = decode_video(components["attribute_video"], "hevc", "yuv420p", meta.width, height,
                            n_frames, threads)
        colors = frame_colors(meta, ys, xs, slot, len(raw), attr)
    return PointCloud(points.astype(np.float64), colors)


def _keep(folder: Path, index: int, images: dict[str, np.ndarray], comps: dict[str, bytes],
          geometry_ext: str) -> None:
    """Write the packed images (PNG) and the videos of frame ``index`` into ``folder``."""
    from imcodec.io.files import ensure_dir, write_bytes_atomic
    from imcodec.io.images import write_png

    ensure_dir(folder)
    for name, img in images.items():
        write_png(folder / f"frame{index:04d}_{name}.png", img)
    for name, ext in (("geometry_video", geometry_ext), ("attribute_video", "hevc")):
        if comps.get(name):
            write_bytes_atomic(folder / f"frame{index:04d}_{name}.{ext}", comps[name])

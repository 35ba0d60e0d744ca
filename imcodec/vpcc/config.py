"""V-PCC codec settings and the stream parameters the decoder needs."""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any

from imcodec.errors import BitstreamError, UsageError
from imcodec.vpcc.video import CODECS, PIX_FMT_IDS

# MPEG V-PCC common test conditions, all-intra: rate -> (geometry QP, attribute QP)
CTC_RATES = {"r1": (32, 42), "r2": (28, 37), "r3": (24, 32), "r4": (20, 27), "r5": (16, 22)}
DEFAULT_RATE = "r3"


def ctc_rate_of(geometry_qp: int) -> str | None:
    """The CTC rate (r1..r5) coded with this geometry QP, or None (0 = lossless / unknown, other QPs)."""
    return next((rate for rate, (gq, _) in CTC_RATES.items() if geometry_qp and gq == geometry_qp), None)
# 2: the decoder re-codes synthesised references with full RDO (video.LOSSY_RDO) and predicts colour
# from every point within the radius (motion.predict_colors); version 1 streams with motion hints
# would decode to wrong colours, so they are refused
STREAM_VERSION = 3  # 3: + geometry QP (the depth denoiser's tables depend on it); 2 is still read
X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")
# synthesised references of hinted colour videos, most bits saved (and slowest to decode) first
HINT_REFS = ("all", "predicted", "t0")


@dataclass(frozen=True)
class VpccConfig:
    """Options of the V-PCC codec.

    geometry_qp / attribute_qp: HEVC QPs of the depth and colour videos (CTC rate r3 by default).
    lossless: lossless geometry (exact depths, occupancy precision 1, every missed point coded raw:
      the decoded point set equals the input's); colour stays lossy.
    occupancy_precision: B0, side of the occupancy cells (1, 2, 4, 8 or 16); None = 2 (1 when
      lossless). B0 = 4 (TMC2's default) costs less occupancy but puts points off the surface at patch
      edges; on the shared frames it measured 5-10% more bits at equal D1 than 2, at every CTC rate.
    surface_thickness: depth range of the far layer D1 above the near layer D0.
    geometry_layers / attribute_layers: 1 (D0/T0 only) or 2 (D0+D1, T0+T1).
    geometry_bits: 8 or 10-bit depth video.
    lossless_video: "hevc_lossless" or "ffv1" for the lossless geometry video.
    layer_prediction: code frame 2 of each video (far layer) as a P-frame from frame 1.
    fill_layers: the decoder also rebuilds the depths between D0 and D1 (on the shared frames more
      than 95% of them hold an input point); lossless coding then ends D1 at the first gap.
    geometry_padding: "push_pull" (mip-map fill, about 30% fewer depth-video bits than dilation on
      the shared frames) or "dilate" (ring-wise average dilation).
    smoothing_radius: decoder-side geometry smoothing (0 = off): points at patch boundaries (all
      points with smoothing_all) move by smoothing_weight (1/16 .. 1) toward the centroid of the
      points within this Chebyshev radius (1..8). Off by default: on soldier 0536 it gains 0.2-0.7 dB
      D1 at r1 and loses up to 0.4 dB at r5.
    canvas_width: canvas width in pixels (multiple of 16; grows if a patch needs it).
    orientations: patch orientations tried by packing (1, 2, 4 or 8).
    normal_cell, normal_reach: normals by PCA over the (2 * reach + 1)^3 cells of this side around
      each point (default 3 and 2: a 15^3 neighbourhood; on the shared frames both faster and better
      in rate-distortion than k-nearest-neighbour normals); normal_cell 0 uses the normal_k nearest
      neighbours (TMC2's nnNormalEstimation, 16) instead.
    refine_*, min_patch_points, missed_dist2, max_rounds: patch generation
      (see :class:`imcodec.vpcc.patches.PatchParams`); refine_lambda 20 and 30 iterations (TMC2's CTC
      uses 3 and 10) and 80-point minimum components measured 10-15% fewer bits at equal D1.
    raw_points: in lossy mode, code points farther than missed_dist2 from every patch as raw points.
    preset: x265 preset; threads: threads for ffmpeg and neighbour searches.
    keep_intermediate: directory to write the packed images (PNG) and the videos into, or None.
    gof: frames per group of frames for sequences (1 = every frame intra, today's one-frame format;
      see :mod:`imcodec.vpcc.inter`).
    motion_hints: in a GOF, code each later frame's colour video against the 3D motion-compensated
      prediction from the previous decoded frame (:mod:`imcodec.vpcc.motion`).
    hint_refs: with motion_hints and two texture layers, the synthesised references of a later
      frame's colour video (:data:`HINT_REFS`): "all" (default) the predicted T0 and T1 and the previous
      frame's decoded T0 and T1, "predicted" the predicted T0 and T1, "t0" the predicted T0 only; fewer
      references decode faster and cost more colour bits (README, V-PCC sequences).
    depth_prediction: with motion_hints, also code each later frame's depth video against the
      previous decoded points projected into its patches (off: on soldier 0536-0538 at r3 it cost
      about 25% more depth-video bits than the GOF's own inter coding).
    """

    geometry_qp: int = CTC_RATES[DEFAULT_RATE][0]
    attribute_qp: int = CTC_RATES[DEFAULT_RATE][1]
    lossless: bool = False
    occupancy_precision: int | None = None
    surface_thickness: int = 4
    geometry_layers: int = 2
    attribute_layers: int = 2
    geometry_bits: int = 8
    lossless_video: str = "hevc_lossless"
    layer_prediction: bool = True
    fill_layers: bool = True
    geometry_padding: str = "push_pull"
    smoothing_radius: int = 0
    smoothing_weight: float = 0.5
    smoothing_all: bool = False
    canvas_width: int = 1280
    orientations: int = 2
    normal_k: int = 16
    normal_cell: int = 3
    normal_reach: int = 2
    refine_lambda: float = 20.0
    refine_iterations: int = 30
    refine_grid: int = 4
    min_patch_points: int = 80
    missed_dist2: int = 9
    max_rounds: int = 8
    raw_points: bool = True
    preset: str = "slow"
    threads: int = 2
    keep_intermediate: str | None = None
    gof: int = 32
    motion_hints: bool = True
    hint_refs: str = "all"
    depth_prediction: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.gof <= 1024:
            raise UsageError(f"--gof must be in 1..1024, got {self.gof}")
        if self.hint_refs not in HINT_REFS:
            raise UsageError(f"--hint-refs must be one of {', '.join(HINT_REFS)}, got {self.hint_refs!r}")
        if self.preset not in X265_PRESETS:
            raise UsageError(f"x265 preset must be one of {', '.join(X265_PRESETS)}, got {self.preset!r}")
        for name in ("geometry_qp", "attribute_qp"):
            v = getattr(self, name)
            if not 0 <= v <= 51:
                raise UsageError(f"{name.replace('_', '-')} must be in 0..51, got {v}")
        if self.occupancy_precision not in (None, 1, 2, 4, 8, 16):
            raise UsageError(f"occupancy precision must be 1, 2, 4, 8 or 16, got {self.occupancy_precision}")
        if self.geometry_layers not in (1, 2) or self.attribute_layers not in (1, 2):
            raise UsageError("geometry and attribute layers must be 1 or 2")
        if self.geometry_bits not in (8, 10):
            raise UsageError(f"geometry bits must be 8 or 10, got {self.geometry_bits}")
        if self.lossless_video not in ("hevc_lossless", "ffv1"):
            raise UsageError(f"lossless video must be hevc_lossless or ffv1, got {self.lossless_video!r}")
        if self.geometry_padding not in ("push_pull", "dilate"):
            raise UsageError(f"geometry padding must be push_pull or dilate, got {self.geometry_padding!r}")
        if not 0 <= self.smoothing_radius <= 8:
            raise UsageError(f"smoothing radius must be in 0..8, got {self.smoothing_radius}")
        if not 1 <= round(self.smoothing_weight * 16) <= 16:
            raise UsageError(f"smoothing weight must be in 1/16..1, got {self.smoothing_weight}")
        if self.canvas_width < 16 or self.canvas_width % 16:
            raise UsageError(f"canvas width must be a positive multiple of 16, got {self.canvas_width}")
        if self.orientations not in (1, 2, 4, 8):
            raise UsageError(f"orientations must be 1, 2, 4 or 8, got {self.orientations}")
        if not 0 <= self.surface_thickness <= 16:
            raise UsageError(f"surface thickness must be in 0..16, got {self.surface_thickness}")

    @property
    def b0(self) -> int:
        """The occupancy precision actually used."""
        if self.lossless:
            return 1
        if self.occupancy_precision is not None:
            return self.occupancy_precision
        return 2

    @property
    def geometry_codec(self) -> str:
        return self.lossless_video if self.lossless else "hevc"

    @property
    def geometry_pix_fmt(self) -> str:
        return "gray10le" if self.geometry_bits == 10 else "gray"


def config_from_options(options: dict[str, Any]) -> VpccConfig:
    """VpccConfig from CLI/API options (None = not given): rate, geometry_qp, attribute_qp (alias
    attr_qp), lossless, keep_intermediate, threads, gof, motion_hints (bool or "on"/"off"), hint_refs
    (one of :data:`HINT_REFS`; needs motion hints); QPs given explicitly override the rate's. With
    lossless the rate only sets the attribute QP, and a geometry QP is a usage error."""
    from imcodec.codecs import reject_unsupported

    supported = {"rate", "geometry_qp", "attribute_qp", "attr_qp", "lossless", "keep_intermediate",
                 "threads", "gof", "motion_hints", "hint_refs"}
    reject_unsupported("vpcc", options, supported)
    if options.get("lossless") and options.get("geometry_qp") is not None:
        raise UsageError("--lossless and --geometry-qp exclude each other (lossless geometry has no QP)")
    cfg = VpccConfig()
    rate = options.get("rate")
    if rate is not None:
        key = str(rate).lower()
        if key not in CTC_RATES:
            raise UsageError(f"--rate {rate!r} is not one of {', '.join(CTC_RATES)}")
        gq, aq = CTC_RATES[key]
        cfg = replace(cfg, geometry_qp=gq, attribute_qp=aq)
    gq = options.get("geometry_qp")
    aq = options.get("attribute_qp")
    alias = options.get("attr_qp")
    if aq is not None and alias is not None and aq != alias:
        raise UsageError(f"--attribute-qp {aq} and its alias --attr-qp {alias} disagree")
    if aq is None:
        aq = alias
    if gq is not None:
        cfg = replace(cfg, geometry_qp=int(gq))
    if aq is not None:
        cfg = replace(cfg, attribute_qp=int(aq))
    if options.get("lossless"):
        cfg = replace(cfg, lossless=True)
    if options.get("keep_intermediate") is not None:
        cfg = replace(cfg, keep_intermediate=str(options["keep_intermediate"]))
    if options.get("gof") is not None:
        cfg = replace(cfg, gof=int(options["gof"]))
    hints = options.get("motion_hints")
    if hints is not None:
        if isinstance(hints, str):
            if hints.lower() not in ("on", "off"):
                raise UsageError(f"--motion-hints must be on or off, got {hints!r}")
            hints = hints.lower() == "on"
        cfg = replace(cfg, motion_hints=bool(hints))
    if options.get("hint_refs") is not None:
        if not cfg.motion_hints:
            raise UsageError(f"--hint-refs {options['hint_refs']} needs --motion-hints on")
        cfg = replace(cfg, hint_refs=str(options["hint_refs"]).lower())
    if options.get("threads") is not None:
        threads = int(options["threads"])
        if threads < 1:
            raise UsageError(f"--threads must be at least 1, got {threads}")
        cfg = replace(cfg, threads=threads)
    return cfg


# --------------------------------------------------------------------------------- stream params

_PARAMS = struct.Struct("<BBBBBBBBBBBB")
_PARAMS_V2 = struct.Struct("<BBBBBBBBBBB")  # version 2: no geometry QP
_FLAG_FILL, _FLAG_SMOOTH_ALL = 1, 2


@dataclass(frozen=True)
class StreamParams:
    """What the decoder needs from the global header.

    smooth_radius 0 means no geometry smoothing; smooth_weight is stored in sixteenths.
    """

    geometry_codec: str
    geometry_pix_fmt: str
    b0: int
    thickness: int
    geometry_layers: int
    attribute_layers: int
    orientations: int
    fill: bool = True
    smooth_radius: int = 0
    smooth_weight16: int = 8
    smooth_all: bool = False
    geometry_qp: int = 0  # x265 QP of the geometry video; 0 for lossless codecs and version-2 streams

    @property
    def n_attribute_frames(self) -> int:
        return 2 if self.attribute_layers == 2 and self.geometry_layers == 2 else 1

    @property
    def orient_bits(self) -> int:
        return {1: 0, 2: 1, 4: 2, 8: 3}[self.orientations]

    def pack(self) -> bytes:
        flags = (_FLAG_FILL if self.fill else 0) | (_FLAG_SMOOTH_ALL if self.smooth_all else 0)
        return _PARAMS.pack(STREAM_VERSION, CODECS.index(self.geometry_codec),
                            PIX_FMT_IDS.index(self.geometry_pix_fmt), self.b0, self.thickness,
                            self.geometry_layers, self.attribute_layers, self.orientations, flags,
                            self.smooth_radius, self.smooth_weight16, self.geometry_qp)

    @classmethod
    def from_config(cls, cfg: VpccConfig) -> "StreamParams":
        thickness = cfg.surface_thickness if cfg.geometry_layers == 2 else 0
        return cls(cfg.geometry_codec, cfg.geometry_pix_fmt, cfg.b0, thickness,
                   cfg.geometry_layers, cfg.attribute_layers, cfg.orientations,
                   cfg.fill_layers and cfg.geometry_layers == 2, cfg.smoothing_radius,
                   int(round(cfg.smoothing_weight * 16)), cfg.smoothing_all,
                   cfg.geometry_qp if cfg.geometry_codec == "hevc" else 0)

    @classmethod
    def unpack(cls, data: bytes) -> "StreamParams":
        ver = data[0] if data else None
        layout = {STREAM_VERSION: _PARAMS, 2: _PARAMS_V2}.get(ver)
        if layout is None:
            raise BitstreamError(f"V-PCC stream parameters of version {ver} are not supported (this imcodec "
                                 f"reads versions 2 and {STREAM_VERSION})")
        if len(data) != layout.size:
            raise BitstreamError(f"V-PCC stream parameters (version {ver}) have {len(data)} bytes, expected "
                                 f"{layout.size}")
        ver, gc, gp, b0, th, gl, al, orient, flags, radius, weight, *rest = layout.unpack(data)
        qp = rest[0] if rest else 0
        if (gc >= len(CODECS) or gp >= 2 or b0 not in (1, 2, 4, 8, 16) or th > 16 or gl not in (1, 2)
                or al not in (1, 2) or orient not in (1, 2, 4, 8) or flags > 3 or radius > 8
                or not 1 <= weight <= 16 or qp > 51):
            raise BitstreamError(f"V-PCC stream parameters are damaged: {data.hex()}")
        return cls(CODECS[gc], PIX_FMT_IDS[gp], b0, th, gl, al, orient, bool(flags & _FLAG_FILL), radius,
                   weight, bool(flags & _FLAG_SMOOTH_ALL), qp)

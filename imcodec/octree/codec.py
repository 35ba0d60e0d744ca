"""The octree codec ("octree", id 1): G-PCC-style geometry (:mod:`imcodec.octree.geometry`) and RAHT
colour (:mod:`imcodec.octree.attributes`).

Positions are quantised as TMC13's positionQuantizationScale does: ``q = round((p - origin) * scale)``
(halves away from zero) and decoded as ``q / scale + origin``. Lossless mode keeps integer positions
exactly, duplicates included; lossy mode merges the points that fall into one voxel (their colours
are averaged). Components per frame: ``geometry`` and, for clouds with colour, ``attribute``.

Sequences: within a group of ``gof`` frames, the geometry of every frame after the first is coded
with contexts from the previous frame's octree (the ``state`` dict carries it from frame to frame on
both sides) and its index entry says it needs the previous frame; colour stays intra.
"""

from __future__ import annotations

import math
import numbers
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from imcodec.codecs import FrameCode, register_codec, reject_unsupported
from imcodec.errors import BitstreamError, InputError, UsageError
from imcodec.octree.morton import MAX_BITS
from imcodec.types import PointCloud

DEFAULT_ATTR_QP = 28
_PARAMS = struct.Struct("<BBB")  # version, flags, attribute QP
_PARAMS_VERSION = 1
_FLAG_LOSSLESS, _FLAG_LOSSLESS_COLOR = 1, 2
_OPTIONS = {"lossless", "scale", "attr_qp", "lossless_color", "bit_depth", "gof"}
DEFAULT_GOF = 8
MAX_GOF = 1024


@dataclass(frozen=True)
class OctreeConfig:
    """Options of the octree codec.

    lossless: exact integer positions, duplicates kept (scale must be 1).
    scale: positionQuantizationScale for lossy geometry (0 < scale <= 16).
    attr_qp: colour QP (G-PCC scale, 4..51; step 2**((QP - 4) / 6)); lossless_color codes colour exactly.
    bit_depth: declared input bit depth (coordinates must be < 2**bit_depth), None = from the data.
    origin: subtracted before quantisation; coordinates below it are an input error.
    gof: frames per group in a sequence: the first is coded alone, each later one against the
    previous decoded frame's octree (inter contexts); 1 = every frame intra.
    """

    lossless: bool = True
    scale: float = 1.0
    attr_qp: int = DEFAULT_ATTR_QP
    lossless_color: bool = False
    bit_depth: int | None = None
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gof: int = DEFAULT_GOF

    def __post_init__(self) -> None:
        if not (isinstance(self.scale, numbers.Real) and math.isfinite(self.scale) and 0 < self.scale <= 16):
            raise UsageError(f"--scale must be a number in (0, 16], got {self.scale!r}")
        if self.lossless and self.scale != 1:
            raise UsageError(f"--lossless keeps positions exactly; it cannot be combined with --scale {self.scale}")
        if isinstance(self.attr_qp, bool) or not isinstance(self.attr_qp, numbers.Integral) or not 4 <= self.attr_qp <= 51:
            raise UsageError(f"--attr-qp must be an integer in 4..51, got {self.attr_qp!r}")
        if isinstance(self.gof, bool) or not isinstance(self.gof, numbers.Integral) or not 1 <= self.gof <= MAX_GOF:
            raise UsageError(f"--gof must be an integer in 1..{MAX_GOF}, got {self.gof!r}")
        if self.bit_depth is not None and not (isinstance(self.bit_depth, numbers.Integral) and 1 <= self.bit_depth <= MAX_BITS):
            raise UsageError(f"--bits must be in 1..{MAX_BITS}, got {self.bit_depth!r}")


@register_codec("octree", codec_id=1)
class OctreeCodec:
    """Octree geometry (intra, or inter within a group of frames) + RAHT colour."""

    config_type = OctreeConfig
    reference_components = frozenset({"geometry"})  # what a later frame's decoding needs of this one
    color_components = frozenset({"attribute"})  # present in every frame of a colour stream

    @classmethod
    def make_config(cls, options: dict[str, Any]) -> OctreeConfig:
        """Config from CLI/API options; UsageError for options this codec does not have."""
        reject_unsupported("octree", options, _OPTIONS)
        scale = options.get("scale")
        lossless = options.get("lossless")
        if scale is not None and lossless:
            raise UsageError("--lossless and --scale exclude each other")
        if options.get("lossless_color") and options.get("attr_qp") is not None:
            raise UsageError(f"--lossless-color and --attr-qp {options['attr_qp']} exclude each other "
                             f"(lossless colour has no QP)")
        kw: dict[str, Any] = {"lossless": scale is None}
        if scale is not None:
            kw["scale"] = float(scale)
        if options.get("attr_qp") is not None:
            kw["attr_qp"] = options["attr_qp"]
        if options.get("lossless_color"):
            kw["lossless_color"] = True
        if options.get("bit_depth") is not None:
            kw["bit_depth"] = options["bit_depth"]
        if options.get("gof") is not None:
            kw["gof"] = options["gof"]
        return OctreeConfig(**kw)

    def stream_params(self, config: OctreeConfig) -> bytes:
        flags = (_FLAG_LOSSLESS if config.lossless else 0) | (_FLAG_LOSSLESS_COLOR if config.lossless_color else 0)
        return _PARAMS.pack(_PARAMS_VERSION, flags, int(config.attr_qp))

    def encode_frame(self, cloud: PointCloud, config: OctreeConfig, state: dict) -> FrameCode:
        from imcodec.octree.geometry import encode_geometry_ref, is_inter

        q, depth = quantize(cloud.points, config)
        n = state.get("octree_frame", 0)
        reference = state.get("octree_ref") if n % config.gof else None
        payload, order, mult, levels = encode_geometry_ref(q, config.lossless, reference)
        state["octree_frame"], state["octree_ref"] = n + 1, levels
        starts = np.cumsum(mult) - mult
        vox = q[order][starts] if len(q) else np.zeros((0, 3), np.int64)
        pos = np.repeat(vox, mult, axis=0) if config.lossless else vox
        components = {"geometry": payload}
        colors = None
        if cloud.colors is not None:
            from imcodec.octree.attributes import encode_colors_and_reconstruct

            if cloud.colors.dtype != np.uint8:
                raise InputError(f"the octree codec codes 8-bit colour; this cloud has {cloud.colors.dtype} colours")
            col = cloud.colors[order]
            if not config.lossless and len(col):
                sums = np.add.reduceat(col.astype(np.int64), starts, axis=0)
                col = ((2 * sums + mult[:, None]) // (2 * mult[:, None])).astype(np.uint8)  # rounded mean
            components["attribute"], colors = encode_colors_and_reconstruct(
                pos, col, config.attr_qp, config.lossless_color)
        recon = PointCloud(points=dequantize(pos, config.scale, config.origin), colors=colors,
                           point_dtype="float32" if config.lossless else "float64")
        return FrameCode(components, recon, needs_previous=is_inter(payload), bit_depth=depth)

    def decode_frame(self, components: dict[str, bytes], header: Any, state: dict) -> PointCloud:
        from imcodec.octree.geometry import decode_geometry_ref

        if len(header.params) != _PARAMS.size or header.params[0] != _PARAMS_VERSION:
            raise BitstreamError(f"octree stream parameters ({len(header.params)} bytes) are not version "
                                 f"{_PARAMS_VERSION}")
        extra = set(components) - {"geometry", "attribute"}
        if "geometry" not in components or extra:
            raise BitstreamError(f"octree frame has components {sorted(components)}; expected geometry "
                                 "(+ attribute)")
        if not 1 <= header.bit_depth <= MAX_BITS:
            raise BitstreamError(f"octree stream header declares bit depth {header.bit_depth}; the octree "
                                 f"codec codes 1..{MAX_BITS}")
        lossless = bool(header.params[1] & _FLAG_LOSSLESS)
        if not 0 < header.scale <= 16 or (lossless and header.scale != 1):
            raise BitstreamError(f"octree stream header has scale {header.scale}; the codec writes (0, 16], "
                                 f"and 1 for lossless geometry")
        vox, counts, state["octree_ref"] = decode_geometry_ref(components["geometry"], header.max_points,
                                                               state.get("octree_ref"))
        # the encoder quantised coordinates below 2**bit_depth: q <= round(2**bit_depth * scale)
        top = int(vox.max()) if len(vox) else 0
        if top > (1 << header.bit_depth) * header.scale + 1:
            raise BitstreamError(f"octree frame has coordinate {top}, beyond the header's bit depth "
                                 f"{header.bit_depth} at scale {header.scale}")
        pos = np.repeat(vox, counts, axis=0)
        colors = None
        if "attribute" in components:
            from imcodec.octree.attributes import decode_colors

            colors = decode_colors(pos, components["attribute"])
        return PointCloud(points=dequantize(pos, header.scale, header.origin), colors=colors,
                          point_dtype="float32" if lossless else "float64")


def quantize(points: np.ndarray, config: OctreeConfig) -> tuple[np.ndarray, int]:
    """Integer positions (N, 3) int64 of (N, 3) float64 ``points`` and the input's bit depth.

    InputError for non-finite or negative (below the origin) coordinates, coordinates beyond the
    declared bit depth, and non-integer coordinates in lossless mode.
    """
    pts = np.asarray(points, dtype=np.float64)
    if any(config.origin):
        pts = pts - np.asarray(config.origin, dtype=np.float64)
    if len(pts) == 0:
        return np.zeros((0, 3), np.int64), config.bit_depth or 1
    low, top = float(pts.min()), float(pts.max())  # NaN or inf anywhere shows in one of them
    if not (math.isfinite(low) and math.isfinite(top)):
        i = int(np.argmax(~np.isfinite(pts).all(axis=1)))
        raise InputError(f"point {i} has a non-finite coordinate {points[i].tolist()}")
    if low < 0:
        i = int(np.argmin(pts.min(axis=1)))
        raise InputError(f"point {i} has a negative coordinate {points[i].tolist()}; the octree codec "
                         "needs coordinates >= 0")
    limit = 1 << (config.bit_depth or MAX_BITS)
    if top >= limit:
        i = int(np.argmax(pts.max(axis=1)))
        what = f"the declared bit depth {config.bit_depth}" if config.bit_depth else f"{MAX_BITS} bits"
        raise InputError(f"point {i} at {points[i].tolist()} lies beyond {what} (coordinates must be < {limit})")
    depth = max(1, int(math.floor(top)).bit_length())
    if config.lossless:
        q = pts.astype(np.int64)  # truncation: equal to pts exactly when every coordinate is an integer
        if not np.array_equal(q, pts):
            i = int(np.argmax((q != pts).any(axis=1)))
            raise InputError(f"lossless geometry needs integer coordinates; point {i} is {points[i].tolist()} "
                             "(use --scale to quantise)")
        return q, depth
    q = np.floor(pts * config.scale + 0.5).astype(np.int64)
    if q.max() >= 1 << MAX_BITS:
        raise InputError(f"scaled coordinates reach {int(q.max())}, beyond {MAX_BITS} bits")
    return q, depth


def dequantize(q: np.ndarray, scale: float, origin) -> np.ndarray:
    """Decoded positions ``q / scale + origin`` as (N, 3) float64 (exactly the same on both sides)."""
    out = q.astype(np.float64)
    if scale != 1:
        out /= scale
    if any(origin):
        out += np.asarray(origin, dtype=np.float64)
    return out

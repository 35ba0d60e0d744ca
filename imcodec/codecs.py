"""The one codec interface and its registry.

Every codec is a class registered by name with :func:`register_codec`. It codes one frame at a time
into named components (``geometry``, ``attribute``, ``occupancy``, ...); the container
(:mod:`imcodec.io.bitstream`) stores each component as a CRC-checked chunk of its frame, so codecs
never see files and never import each other.

    @register_codec("octree", codec_id=1)
    class OctreeCodec:
        config_type = OctreeConfig            # frozen dataclass of the codec's options
        @classmethod
        def make_config(cls, options: dict) -> OctreeConfig: ...  # UsageError for unsupported options
        def stream_params(self, config) -> bytes: ...           # codec part of the global header
        def encode_frame(self, cloud, config, state) -> FrameCode: ...
        def decode_frame(self, components, header, state) -> PointCloud: ...

``make_config`` turns the CLI/API options dict (keys such as ``lossless``, ``scale``, ``attr_qp``,
``rate``, ``gof``; a value of None means "not given") into the codec's config and raises
:class:`UsageError` naming any option the codec does not support. The container's global header
takes ``origin`` (3 floats, default 0), ``scale`` (float, default 1) and ``bit_depth`` (int or None)
from the config when it has them; with no declared bit depth the header holds the largest
``FrameCode.bit_depth``. ``decode_frame`` receives the parsed
:class:`imcodec.io.bitstream.StreamHeader` (``header.params`` are the codec's own bytes).

``state`` is a per-stream dict the codec may use to carry decoded data between frames (inter coding);
the decoder is given the same frames in the same order as the encoder, so both sides can mirror it.
When frames are decoded out of order (``--frames 10:20``), ``state`` starts empty at the first
requested frame; a codec that needs earlier frames says so with ``FrameCode.needs_previous``. A codec
may set ``reference_components`` (a set of component names): frames decoded only as references for
later ones are then given just those components (the octree codec: its geometry, not its colour).

A codec names the components that carry colour in ``color_components``. When the stream header
declares colour (``FLAG_COLORS``), the container requires them in every frame
(:func:`imcodec.io.bitstream.read_frame`), and :func:`register_codec` wraps ``decode_frame`` so that
a frame given its colour components that still decodes points without colours is a
:class:`BitstreamError` (:func:`check_decoded_colors`), whatever the codec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Protocol

from imcodec.errors import BitstreamError, UsageError
from imcodec.types import PointCloud


@dataclass(frozen=True, eq=False)
class FrameCode:
    """What a codec produces for one frame.

    components: component name -> payload bytes (each becomes one chunk).
    recon: the decoder's exact reconstruction (the decoder must return the same cloud).
    needs_previous: True when decoding this frame needs the previous frame's state (inter coding).
    bit_depth: bits of the frame's coordinate grid (coded positions < 2**bit_depth), for the header.
    """

    components: dict[str, bytes]
    recon: PointCloud
    needs_previous: bool = False
    bit_depth: int = 0


class Codec(Protocol):
    name: str
    codec_id: int
    config_type: type
    color_components: frozenset[str]  # the components that carry colour

    @classmethod
    def make_config(cls, options: dict[str, Any]) -> Any: ...

    def stream_params(self, config: Any) -> bytes: ...

    def encode_frame(self, cloud: PointCloud, config: Any, state: dict) -> FrameCode: ...

    def decode_frame(self, components: dict[str, bytes], header: Any, state: dict) -> PointCloud: ...


@dataclass
class _Registry:
    by_name: dict[str, type] = field(default_factory=dict)
    by_id: dict[int, type] = field(default_factory=dict)


_REGISTRY = _Registry()
# codec modules imported on first use (name -> module), so the CLI stays fast
_MODULES = {
    "octree": "imcodec.octree.codec",
    "vpcc": "imcodec.vpcc.codec",
}


def check_decoded_colors(codec: Any, components: dict[str, bytes], header: Any, cloud: PointCloud) -> None:
    """BitstreamError when the stream header declares colour, the frame was given its colour
    components (``codec.color_components``) and ``cloud`` still has points but no colours.

    A caller that leaves the colour components out on purpose (a frame decoded only as a reference
    for later ones, see ``reference_components``) gets no colours and no error."""
    if not getattr(header, "has_colors", False) or cloud.colors is not None or len(cloud) == 0:
        return
    if not all(name in components for name in getattr(codec, "color_components", ())):
        return
    raise BitstreamError(f"a frame of {len(cloud)} points decodes without colour although the stream "
                         "header declares colour (its colour component is empty or inconsistent)")


def _checked_decode(decode):
    @functools.wraps(decode)
    def decode_frame(self, components, header, state):
        cloud = decode(self, components, header, state)
        check_decoded_colors(self, components, header, cloud)
        return cloud

    decode_frame._colour_checked = True
    return decode_frame


def register_codec(name: str, codec_id: int):
    """Class decorator: register a codec under ``name`` and a stable numeric id (stored in streams).

    The class's ``decode_frame`` is wrapped with :func:`check_decoded_colors`."""

    def deco(cls):
        if name in _REGISTRY.by_name or codec_id in _REGISTRY.by_id:
            raise RuntimeError(f"codec {name!r} / id {codec_id} registered twice")
        cls.name = name
        cls.codec_id = codec_id
        decode = cls.__dict__.get("decode_frame")
        if decode is not None and not getattr(decode, "_colour_checked", False):
            cls.decode_frame = _checked_decode(decode)
        _REGISTRY.by_name[name] = cls
        _REGISTRY.by_id[codec_id] = cls
        return cls

    return deco


def _load_all() -> None:
    import importlib

    for name, module in _MODULES.items():
        if name not in _REGISTRY.by_name:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise


def codec_names() -> list[str]:
    """Names of the available codecs."""
    _load_all()
    return sorted(_REGISTRY.by_name)


def get_codec(name: str) -> Codec:
    """A codec instance by name; UsageError naming the choices for an unknown name."""
    _load_all()
    cls = _REGISTRY.by_name.get(name)
    if cls is None:
        raise UsageError(f"unknown codec {name!r}; available: {', '.join(codec_names())}")
    return cls()


def codec_by_id(codec_id: int) -> Codec:
    """A codec instance by the id stored in a stream; BitstreamError for an unknown id."""
    _load_all()
    cls = _REGISTRY.by_id.get(codec_id)
    if cls is None:
        raise BitstreamError(f"stream uses unknown codec id {codec_id}; this imcodec knows "
                             f"{sorted(_REGISTRY.by_id)}")
    return cls()


def color_components(codec_id: int) -> frozenset[str]:
    """The components that carry colour in frames of codec ``codec_id`` (empty for an unknown id)."""
    _load_all()
    cls = _REGISTRY.by_id.get(codec_id)
    return frozenset(getattr(cls, "color_components", ())) if cls is not None else frozenset()


def codec_name_for_id(codec_id: int) -> str:
    """The registered name of a codec id, or ``"unknown (id N)"`` (for describing streams)."""
    _load_all()
    cls = _REGISTRY.by_id.get(codec_id)
    return cls.name if cls is not None else f"unknown (id {codec_id})"


_FLAGS = {"bit_depth": "--bits"}  # option keys whose command-line flag is not the key's spelling


def reject_unsupported(codec: str, options: dict[str, Any], supported: set[str]) -> None:
    """UsageError naming the options (given, i.e. not None/False) that ``codec`` does not support."""
    bad = sorted(k for k, v in options.items() if v is not None and v is not False and k not in supported)
    if bad:
        flags = ", ".join(_FLAGS.get(k, "--" + k.replace("_", "-")) for k in bad)
        raise UsageError(f"codec {codec!r} does not support {flags}")

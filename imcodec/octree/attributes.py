"""Colour coding for the octree codec: the encoder/decoder entry points.

``encode_colors(positions, colors, qp, lossless) -> bytes`` and ``decode_colors(positions, data)``
code the RGB colours of a point set whose positions both sides already know (the geometry
decoder's output). Positions are put in Morton order (kept when already sorted; a stable sort
otherwise, so duplicates keep their order), the octree is built over them, and then

* lossy (``lossless=False``): BT.709 YCbCr, RAHT with G-PCC-style transform-domain prediction,
  uniform quantisation with step ``2**((QP - 4) / 6)`` (G-PCC's QP scale: the step doubles every 6
  QP, QP 4 is step 1; on Owlii basketball QP 22 lands near TMC13's CTC r06), chroma at
  ``QP + chroma_qp_offset``, rate-distortion optimised quantisation in the encoder; see
  :mod:`imcodec.octree.attr_lossy`;
* lossless: YCoCg-R and integer RAHT lifting with prediction; see :mod:`imcodec.octree.attr_lossless`.

Duplicate points (several points at one position) each keep their own colour: they are merged by
one extra chain of transform steps under their leaf.

Payload layout (little endian): ``u8 version (1) | u8 mode (0 lossy, 1 lossless) | u8 qp |
i8 chroma qp offset | u32 point count | range-coded body``. The decoder checks every header field
and that the body decodes to exactly its end; damaged data raises :class:`BitstreamError`.
"""

from __future__ import annotations

import struct

import numpy as np

from imcodec.entropy.rangecoder import (
    D_POS,
    dec_init,
    dec_overrun,
    enc_finish,
    new_decoder_state,
    new_encoder_state,
)
from imcodec.errors import BitstreamError, InputError, UsageError
from imcodec.octree.attr_coding import DECODE, ENCODE, new_lossless_models, new_lossy_models
from imcodec.octree.attr_lossless import lossless_pass
from imcodec.octree.attr_lossy import OK, lossy_pass
from imcodec.octree.raht import (
    MAX_COORD_BITS,
    build_tree,
    is_sorted,
    morton_encode,
    node_means,
    rgb_to_ycbcr,
    rgb_to_ycocg,
    tree_forward,
    tree_inverse,
    ycbcr_to_rgb_u8,
    ycocg_to_rgb,
)

FORMAT_VERSION = 1
QP_MIN, QP_MAX = 4, 51
CHROMA_OFFSET_MAX = 12
DEFAULT_CHROMA_QP_OFFSET = 0
# Encoder-only quantisation choices (not part of the format). RDO_LAMBDA: Lagrangian (in squared
# quantiser steps per bit) of the rate-distortion choice among 0, floor and ceil for each RAHT
# coefficient, with bit costs from the live context models; 0.08 sits on the flat optimum
# (0.08..0.12) and well below the ~0.17 where the adaptive models start to feed a runaway dead
# zone. ROUNDING_OFFSET: plain dead-zone rounding, used for duplicate chains and when lambda is 0.
ROUNDING_OFFSET = 0.33
RDO_LAMBDA = 0.08
_HEADER = struct.Struct("<BBBbI")
_MODE_LOSSY, _MODE_LOSSLESS = 0, 1
_STEP_BASE = (1.0, 1.122462048309373, 1.2599210498948732, 1.4142135623730951,
              1.5874010519681994, 1.7817974362806785)  # 2**(i/6), literal so every machine agrees


def qp_to_step(qp: int) -> float:
    """Quantiser step of an attribute QP: 2**((qp - 4) / 6) (G-PCC's scale; QP 4 -> step 1)."""
    qp = _check_qp(qp)
    return _STEP_BASE[(qp - 4) % 6] * float(2 ** ((qp - 4) // 6))


def _check_qp(qp) -> int:
    if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)) or not QP_MIN <= qp <= QP_MAX:
        raise UsageError(f"attribute QP {qp!r} is invalid: expected an integer in {QP_MIN}..{QP_MAX}")
    return int(qp)


def _check_positions(positions) -> np.ndarray:
    pos = np.asarray(positions)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise InputError(f"positions must be an (N, 3) array, got shape {pos.shape}")
    if pos.size and not np.issubdtype(pos.dtype, np.integer):
        if not np.all(np.isfinite(pos)) or not np.all(pos == np.rint(pos)):
            raise InputError("positions must be integer voxel coordinates")
    pos = np.ascontiguousarray(pos, dtype=np.int64)
    if pos.size and (pos.min() < 0 or pos.max() >= 1 << MAX_COORD_BITS):
        raise InputError(f"positions must lie in 0..{(1 << MAX_COORD_BITS) - 1}, got "
                         f"{int(pos.min())}..{int(pos.max())}")
    return pos


def _tree(pos: np.ndarray):
    """(order or None, tree) for (N, 3) int64 positions, N >= 1."""
    codes = morton_encode(pos)
    order = None
    if not is_sorted(codes):
        order = np.argsort(codes, kind="stable")
        codes = np.ascontiguousarray(codes[order])
    return order, build_tree(codes)


def _run_encoder(kernel, n_points: int, per_point: int):
    """Run ``kernel(st, buf)`` with a buffer that grows until the whole body fits."""
    cap = per_point * n_points + 64
    while True:
        st = new_encoder_state()
        buf = np.empty(cap, dtype=np.uint8)
        status = kernel(st, buf)
        n = int(enc_finish(st, buf))
        if status != OK:  # the encoder only sees valid data: this is a bug, not bad input
            raise RuntimeError(f"colour encoder kernel failed with status {status}")
        if n <= cap:
            return buf[:n].tobytes()
        cap = n


def encode_colors(positions, colors, qp: int, lossless: bool,
                  *, chroma_qp_offset: int = DEFAULT_CHROMA_QP_OFFSET) -> bytes:
    """Code the colours of a point set whose positions the decoder will know.

    positions: (N, 3) integer coordinates in 0..2**21-1 (any order; duplicates allowed).
    colors: (N, 3) uint8 RGB. qp: attribute QP 4..51 (ignored by the lossless mode but checked).
    Returns the payload for :func:`decode_colors`.
    """
    return encode_colors_and_reconstruct(positions, colors, qp, lossless,
                                         chroma_qp_offset=chroma_qp_offset)[0]


def encode_colors_and_reconstruct(positions, colors, qp: int, lossless: bool,
                                  *, chroma_qp_offset: int = DEFAULT_CHROMA_QP_OFFSET,
                                  rounding: float = ROUNDING_OFFSET,
                                  rdo_lambda: float = RDO_LAMBDA) -> tuple[bytes, np.ndarray]:
    """:func:`encode_colors` plus the encoder's own reconstruction ((N, 3) uint8, input order)."""
    qp = _check_qp(qp)
    if isinstance(chroma_qp_offset, bool) or not isinstance(chroma_qp_offset, (int, np.integer)) \
            or abs(chroma_qp_offset) > CHROMA_OFFSET_MAX:
        raise UsageError(f"chroma QP offset {chroma_qp_offset!r} is invalid: expected an integer "
                         f"in -{CHROMA_OFFSET_MAX}..{CHROMA_OFFSET_MAX}")
    pos = _check_positions(positions)
    col = np.asarray(colors)
    if col.shape != pos.shape:
        raise InputError(f"colors must be ({len(pos)}, 3) like the positions, got {col.shape}")
    if col.dtype != np.uint8:
        raise InputError(f"colors must be uint8 RGB, got {col.dtype}")
    n = len(pos)
    header = _HEADER.pack(FORMAT_VERSION, _MODE_LOSSLESS if lossless else _MODE_LOSSY, qp,
                          int(chroma_qp_offset), n)
    if n == 0:
        return header, np.zeros((0, 3), dtype=np.uint8)
    order, tree = _tree(pos)
    srt = np.ascontiguousarray(col if order is None else col[order])
    if lossless:
        pvals = rgb_to_ycocg(srt)
        out = np.zeros((n, 3), dtype=np.int64)

        def kernel(st, buf):
            return lossless_pass(ENCODE, *tree, pvals, st, buf, new_lossless_models(), out)

        body = _run_encoder(kernel, n, 2)
        rec = srt
    else:
        steps = _steps(qp, int(chroma_qp_offset))
        pvals = rgb_to_ycbcr(srt)
        mean = node_means(tree[1], tree[2], tree[3], tree[4], pvals)
        out = np.zeros((n, 3), dtype=np.float64)

        def kernel(st, buf):
            return lossy_pass(ENCODE, *tree, mean, pvals, steps, float(rounding),
                              float(rdo_lambda), st, buf,
                              new_lossy_models(), out)

        body = _run_encoder(kernel, n, 1)
        rec = ycbcr_to_rgb_u8(out)
    return header + body, _unsort(rec, order)


def _steps(qp: int, chroma_offset: int) -> np.ndarray:
    qc = min(QP_MAX, max(QP_MIN, qp + chroma_offset))
    return np.array([qp_to_step(qp), qp_to_step(qc), qp_to_step(qc)], dtype=np.float64)


def _unsort(sorted_values: np.ndarray, order) -> np.ndarray:
    if order is None:
        return np.ascontiguousarray(sorted_values)
    out = np.empty_like(sorted_values)
    out[order] = sorted_values
    return out


def decode_colors(positions, data: bytes) -> np.ndarray:
    """Decode :func:`encode_colors` output for the same positions: (N, 3) uint8 RGB in input order."""
    pos = _check_positions(positions)
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise BitstreamError(f"colour payload of {len(data)} bytes is shorter than its "
                             f"{_HEADER.size}-byte header")
    version, mode, qp, coff, n = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise BitstreamError(f"colour payload version {version} is not supported (expected "
                             f"{FORMAT_VERSION})")
    if mode not in (_MODE_LOSSY, _MODE_LOSSLESS):
        raise BitstreamError(f"colour payload mode {mode} is unknown")
    if not QP_MIN <= qp <= QP_MAX or abs(coff) > CHROMA_OFFSET_MAX:
        raise BitstreamError(f"colour payload has an invalid QP {qp} / chroma offset {coff}")
    if n != len(pos):
        raise BitstreamError(f"colour payload is for {n} points but the geometry has {len(pos)}")
    body = np.frombuffer(data, dtype=np.uint8, offset=_HEADER.size).copy()  # writable: one kernel type
    if n == 0:
        if len(body):
            raise BitstreamError(f"colour payload of an empty cloud has {len(body)} extra bytes")
        return np.zeros((0, 3), dtype=np.uint8)
    order, tree = _tree(pos)
    st = new_decoder_state()
    dec_init(st, body)
    if mode == _MODE_LOSSLESS:
        out = np.zeros((n, 3), dtype=np.int64)
        status = lossless_pass(DECODE, *tree, out, st, body, new_lossless_models(), out)
    else:
        out = np.zeros((n, 3), dtype=np.float64)
        status = lossy_pass(DECODE, *tree, np.zeros((1, 3)), out, _steps(qp, coff), 0.5, 0.0,
                            st, body, new_lossy_models(), out)
    if status != OK or dec_overrun(st) > 0 or st[D_POS] != len(body):
        raise BitstreamError(f"colour payload of {len(body)} bytes is truncated or damaged "
                             f"(decoder stopped at byte {int(st[D_POS])})")
    if mode == _MODE_LOSSLESS:
        rgb = ycocg_to_rgb(out)
        if rgb.min() < 0 or rgb.max() > 255:
            raise BitstreamError("lossless colour payload decodes to values outside 0..255")
        rgb = rgb.astype(np.uint8)
    else:
        rgb = ycbcr_to_rgb_u8(out)
    return _unsort(rgb, order)


# ------------------------------------------------------------------------- the plain transform


def raht_forward(positions, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain RAHT (no prediction, no quantisation) of (N, 3) float ``values`` at ``positions``.

    Returns ``(dc, coefs, gains)``: dc (3,) = sqrt(N)·mean, coefs (N - 1, 3) the orthonormal
    high-pass coefficients (root first, then level by level down, then duplicate chains), gains
    (N - 1,) their g = sqrt(wa·wb / (wa + wb)). Energy is preserved: sum(values**2) ==
    sum(dc**2) + sum(coefs**2) per channel.
    """
    pos = _check_positions(positions)
    vals = np.asarray(values, dtype=np.float64)
    if vals.shape != pos.shape or len(pos) == 0:
        raise InputError(f"values must be (N, 3) like the positions with N >= 1, got {vals.shape}")
    order, tree = _tree(pos)
    srt = np.ascontiguousarray(vals if order is None else vals[order])
    coefs = np.zeros((len(pos) - 1, 3), dtype=np.float64)
    gains = np.zeros(len(pos) - 1, dtype=np.float64)
    mean = node_means(tree[1], tree[2], tree[3], tree[4], srt)
    dc = tree_forward(*tree, mean, srt, coefs, gains)
    return dc, coefs, gains


def raht_inverse(positions, dc, coefs) -> np.ndarray:
    """Inverse of :func:`raht_forward`: (N, 3) float64 values in the order of ``positions``."""
    pos = _check_positions(positions)
    coefs = np.ascontiguousarray(coefs, dtype=np.float64)
    if len(pos) == 0 or coefs.shape != (len(pos) - 1, 3):
        raise InputError(f"expected ({len(pos) - 1}, 3) coefficients, got {coefs.shape}")
    order, tree = _tree(pos)
    out = np.zeros((len(pos), 3), dtype=np.float64)
    tree_inverse(*tree, np.ascontiguousarray(dc, dtype=np.float64), coefs, out)
    return _unsort(out, order)

"""Video coding through ffmpeg: the only module of imcodec that starts processes.

Frames go to ffmpeg as raw planes on stdin and the coded stream comes back on stdout (no temporary
files): HEVC (libx265, raw Annex-B stream) with a fixed QP, lossless HEVC, or FFV1 (in a NUT
container). Every process runs through :func:`run_command`, which turns a missing binary, a
non-zero exit or a time-out into a :class:`~imcodec.errors.ToolError` carrying the binary, the
command line and the tail of its stderr.

The binary: ``$IMCODEC_FFMPEG`` if set, else ``ffmpeg`` on ``PATH`` when it has libx265, else the
one bundled in the ``imageio-ffmpeg`` wheel.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from imcodec.errors import BitstreamError, ToolError

ENV_VAR = "IMCODEC_FFMPEG"
# Time limits of one ffmpeg run: a base plus so many seconds per megapixel of video (frames x width x
# height / 1e6), about 50x (encode) and 100x (decode) what x265/ffmpeg take on a slow 2-core VM, so a
# hung ffmpeg is stopped within a minute or two on small streams instead of hanging the pipeline.
# $IMCODEC_FFMPEG_TIMEOUT (seconds) replaces the computed limit, e.g. on a very slow machine.
TIMEOUT_ENV = "IMCODEC_FFMPEG_TIMEOUT"
TIMEOUT_BASE_S = 60.0
ENCODE_S_PER_MP = 60.0
DECODE_S_PER_MP = 10.0
_STDERR_TAIL = 2000

# x265 rate-distortion settings added to every lossy HEVC stream, above the preset's: full RDO
# (rd 6) and RDO quantisation at level 2. On basketball 1-2 at r5 they raise the P-frames' D1 by
# 0.1-0.2 dB and Y by 0.2 dB at the same QP for about 1% fewer bits (the I-frames gain 0.05-0.1 dB), which
# is what lets a GOF keep the all-intra quality at equal QPs (benchmarks/vpcc_inter.py).
LOSSY_RDO = ["rd=6", "rdoq-level=2"]

# codec kinds stored in streams (stable numbers)
CODECS = ("hevc", "hevc_lossless", "ffv1")
# pixel formats: name -> bytes per sample; PIX_FMT_IDS gives their numbers in streams
PIX_FMTS = {"gray": 1, "gray10le": 2, "yuv420p": 1, "yuv420p10le": 2}
PIX_FMT_IDS = ("gray", "gray10le", "yuv420p", "yuv420p10le")


@dataclass(frozen=True)
class VideoSpec:
    """How one video sub-stream is coded.

    codec: "hevc" (lossy, fixed QP), "hevc_lossless" or "ffv1".
    pix_fmt: "gray" / "gray10le" (one plane) or "yuv420p" / "yuv420p10le" (three planes).
    qp: HEVC QP (0..51), ignored by the lossless codecs.
    intra: every frame an I-frame; else frame k>0 is a P-frame predicted from frame k-1.
    preset: x265 preset (speed / efficiency trade-off); always tuned for PSNR (no psycho-visual
      optimisations), every frame at ``qp`` (ipratio = pbratio = 1, as the CTC QPs mean), with
      :data:`LOSSY_RDO` on top of the preset.
    threads: worker threads given to the encoder and decoder.
    keyint: GOP length (None: the number of frames coded, or 1 with ``intra``).
    intra_qp: QP of the I-frame (None: ``qp``); used for reference frames that are synthesised by
      both sides and never transmitted (see :func:`encode_video_after`).
    references: with ``intra_qp``, how many leading frames are coded at it: the I-frame and the
      P-frames after it up to frame ``references - 1`` (an x265 zone, whose end frame is exclusive),
      so that a stream can start with more than one synthesised reference picture.
    """

    codec: str = "hevc"
    pix_fmt: str = "gray"
    qp: int = 32
    intra: bool = False
    preset: str = "slow"
    threads: int = 1
    keyint: int | None = None
    intra_qp: int | None = None
    references: int = 1

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"video codec must be one of {CODECS}, got {self.codec!r}")
        if self.pix_fmt not in PIX_FMTS:
            raise ValueError(f"pixel format must be one of {tuple(PIX_FMTS)}, got {self.pix_fmt!r}")
        if not 0 <= self.qp <= 51:
            raise ValueError(f"QP must be in 0..51, got {self.qp}")
        if self.references < 1:
            raise ValueError(f"references must be at least 1, got {self.references}")


# ------------------------------------------------------------------------------------ processes

def time_limit(megapixels: float = 0.0, per_mp: float = ENCODE_S_PER_MP) -> float:
    """Seconds one ffmpeg run may take: $IMCODEC_FFMPEG_TIMEOUT when set (ToolError unless a positive
    number), else ``TIMEOUT_BASE_S + per_mp * megapixels``."""
    env = os.environ.get(TIMEOUT_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            value = 0.0
        if not 0 < value < float("inf"):  # also refuses nan
            raise ToolError(f"${TIMEOUT_ENV}={env!r}: expected a positive number of seconds")
        return value
    return TIMEOUT_BASE_S + per_mp * megapixels


def run_command(cmd: list[str], stdin: bytes | None = None, error: type = ToolError,
                timeout: float | None = None) -> bytes:
    """Run ``cmd`` feeding ``stdin``; return its stdout. ``timeout``: seconds (default :func:`time_limit`).

    A missing or unrunnable binary and a time-out raise ToolError; a non-zero exit raises ``error``
    (ToolError by default; the decoder passes BitstreamError, since there the input is to blame).
    The message names the binary, the command and the tail of stderr.
    """
    binary = cmd[0]
    shown = shlex.join(cmd)
    timeout = time_limit() if timeout is None else timeout
    try:
        proc = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise ToolError(f"{binary!r}: no such program (command: {shown}); install ffmpeg or point "
                        f"${ENV_VAR} at one") from None
    except PermissionError:
        raise ToolError(f"{binary!r}: not executable (command: {shown})") from None
    except OSError as exc:
        raise ToolError(f"{binary!r}: cannot start ({exc.strerror}) (command: {shown})") from None
    except subprocess.TimeoutExpired as exc:
        tail = _tail(exc.stderr)
        raise ToolError(f"{binary!r} timed out after {timeout:g} s (command: {shown}; ${TIMEOUT_ENV} "
                        f"sets the limit); stderr: {tail}") from None
    if proc.returncode != 0:
        raise error(f"{binary!r} failed with exit code {proc.returncode} (command: {shown}); "
                    f"stderr: {_tail(proc.stderr)}")
    return proc.stdout


def _tail(data: bytes | None) -> str:
    text = (data or b"").decode("utf-8", "replace").strip()
    if not text:
        return "(empty)"
    return text[-_STDERR_TAIL:].replace("\n", " | ")


def ffmpeg_binary() -> str:
    """The ffmpeg to use: $IMCODEC_FFMPEG, else a system ffmpeg with libx265, else imageio-ffmpeg's."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    system = shutil.which("ffmpeg")
    if system and "libx265" in _encoders(system):
        return system
    try:
        import imageio_ffmpeg
    except ImportError:
        if system:
            return system
        raise ToolError("no ffmpeg found: none on PATH, $IMCODEC_FFMPEG unset and imageio-ffmpeg "
                        "not installed (pip install 'imcodec[video]')") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise ToolError(f"imageio-ffmpeg has no usable ffmpeg binary: {exc}") from None


@functools.lru_cache(maxsize=8)
def _encoders(binary: str) -> str:
    """The text of ``ffmpeg -encoders`` (cached per binary)."""
    return run_command([binary, "-hide_banner", "-encoders"]).decode("utf-8", "replace")


def _check_encoder(binary: str, name: str) -> None:
    if f" {name} " not in _encoders(binary):
        raise ToolError(f"{binary!r} has no {name} encoder (see '{binary} -encoders'); install an "
                        f"ffmpeg built with it or point ${ENV_VAR} at one")


# ---------------------------------------------------------------------------------- frame bytes

def frames_to_bytes(frames: list[tuple[np.ndarray, ...]], pix_fmt: str) -> bytes:
    """Raw video bytes of frames given as plane tuples: gray (Y,), yuv420p (Y, U, V).

    Y: (H, W), U/V: (H/2, W/2); uint8 for 8-bit formats, uint16 (values < 1024) for 10-bit.
    """
    dtype = np.dtype("<u2") if PIX_FMTS[pix_fmt] == 2 else np.dtype(np.uint8)
    parts = [np.ascontiguousarray(p, dtype=dtype).tobytes() for fr in frames for p in fr]
    return b"".join(parts)


def bytes_to_frames(data: bytes, pix_fmt: str, width: int, height: int) -> list[tuple[np.ndarray, ...]]:
    """Inverse of :func:`frames_to_bytes`; BitstreamError when the size is not whole frames."""
    dtype = np.dtype("<u2") if PIX_FMTS[pix_fmt] == 2 else np.dtype(np.uint8)
    shapes = [(height, width)]
    if pix_fmt.startswith("yuv420p"):
        shapes += [(height // 2, width // 2)] * 2
    frame_samples = sum(h * w for h, w in shapes)
    frame_bytes = frame_samples * dtype.itemsize
    if frame_bytes == 0 or len(data) % frame_bytes:
        raise BitstreamError(f"decoded video has {len(data)} bytes, not a whole number of "
                             f"{width}x{height} {pix_fmt} frames")
    arr = np.frombuffer(data, dtype=dtype)
    frames = []
    pos = 0
    for _ in range(len(data) // frame_bytes):
        planes = []
        for h, w in shapes:
            planes.append(arr[pos:pos + h * w].reshape(h, w))
            pos += h * w
        frames.append(tuple(planes))
    return frames


# ------------------------------------------------------------------------------ encode / decode

def _ffmpeg_python():
    """The ffmpeg-python module (builds command lines); ToolError when it is not installed."""
    try:
        import ffmpeg
    except ImportError:
        raise ToolError("ffmpeg-python is not installed (pip install 'imcodec[video]')") from None
    return ffmpeg


def encode_video(frames: list[tuple[np.ndarray, ...]], spec: VideoSpec) -> bytes:
    """Code frames (plane tuples, see :func:`frames_to_bytes`) into one video stream."""
    ffmpeg = _ffmpeg_python()
    if not frames:
        raise ValueError("no frames to encode")
    height, width = frames[0][0].shape
    if width % 2 or height % 2:
        raise ValueError(f"frame size must be even, got {width}x{height}")
    binary = ffmpeg_binary()
    src = ffmpeg.input("pipe:", format="rawvideo", pix_fmt=spec.pix_fmt, s=f"{width}x{height}")
    if spec.codec == "ffv1":
        _check_encoder(binary, "ffv1")
        out = src.output("pipe:", format="nut", vcodec="ffv1", level=3, g=1, pix_fmt=spec.pix_fmt,
                         threads=spec.threads, slicecrc=0, fflags="+bitexact")
    else:
        _check_encoder(binary, "libx265")
        # every frame at the given QP (ipratio/pbratio 1), no SEI/AUD/hash overhead, one GOP
        keyint = 1 if spec.intra else (spec.keyint or max(2, len(frames)))
        ipratio = 1.0 if spec.intra_qp is None else 2.0 ** ((spec.qp - spec.intra_qp) / 6.0)
        params = ["log-level=error", f"pools={spec.threads}", "frame-threads=1", "bframes=0",
                  f"ipratio={ipratio:g}", "pbratio=1", "info=0", "aud=0", "hash=0", "open-gop=0", "scenecut=0",
                  "min-keyint=1", f"keyint={keyint}",
                  "lossless=1" if spec.codec == "hevc_lossless" else f"qp={spec.qp}"]
        if spec.codec == "hevc":
            params += LOSSY_RDO
        if spec.intra_qp is not None and spec.references > 1:
            params.append(f"zones=1,{spec.references},q={spec.intra_qp}")  # end exclusive
        out = src.output("pipe:", format="hevc", vcodec="libx265", preset=spec.preset, tune="psnr",
                         pix_fmt=spec.pix_fmt, **{"x265-params": ":".join(params)})
    cmd = out.global_args("-hide_banner", "-nostdin", "-loglevel", "error").compile(cmd=binary)
    data = run_command(cmd, frames_to_bytes(frames, spec.pix_fmt),
                       timeout=time_limit(len(frames) * width * height / 1e6, ENCODE_S_PER_MP))
    if not data:
        raise ToolError(f"{binary!r} produced an empty stream (command: {shlex.join(cmd)})")
    return data


def decode_video(data: bytes, codec: str, pix_fmt: str, width: int, height: int,
                 n_frames: int, threads: int = 1) -> list[tuple[np.ndarray, ...]]:
    """Decode a stream made by :func:`encode_video` into ``n_frames`` plane tuples.

    A stream ffmpeg cannot decode, or one with the wrong number or size of frames, raises
    BitstreamError; a missing or broken ffmpeg raises ToolError.
    """
    ffmpeg = _ffmpeg_python()
    if codec not in CODECS or pix_fmt not in PIX_FMTS:
        raise BitstreamError(f"unknown video coding {codec!r} / pixel format {pix_fmt!r}")
    if not data:
        raise BitstreamError("empty video sub-stream")
    binary = ffmpeg_binary()
    fmt = "nut" if codec == "ffv1" else "hevc"
    src = ffmpeg.input("pipe:", format=fmt, threads=threads, err_detect="explode")
    out = src.output("pipe:", format="rawvideo", pix_fmt=pix_fmt)
    cmd = out.global_args("-hide_banner", "-nostdin", "-loglevel", "error", "-xerror").compile(cmd=binary)
    raw = run_command(cmd, data, error=BitstreamError,
                      timeout=time_limit(n_frames * width * height / 1e6, DECODE_S_PER_MP))
    frames = bytes_to_frames(raw, pix_fmt, width, height)
    if len(frames) != n_frames:
        raise BitstreamError(f"video sub-stream decoded to {len(frames)} frames of {width}x{height}, "
                             f"expected {n_frames}")
    return frames


# ------------------------------------------------------------------- synthesised reference frames

_VCL = range(0, 32)  # HEVC NAL unit types of slices (VCL NAL units)


def _split_at_picture(data: bytes, n: int) -> int:
    """Byte offset of the start code of the ``n``-th (0-based) slice NAL unit of an Annex-B stream
    (x265 codes one slice per picture, so: where picture ``n`` starts), or len(data) when there
    are not that many."""
    pos, seen = 0, 0
    while True:
        k = data.find(b"\x00\x00\x01", pos)
        if k < 0 or k + 3 >= len(data):
            return len(data)
        if (data[k + 3] >> 1) & 0x3F in _VCL:
            if seen == n:
                return k - 1 if k > 0 and data[k - 1] == 0 else k
            seen += 1
        pos = k + 3


def _reference_spec(spec: VideoSpec, n_frames: int, n_refs: int) -> VideoSpec:
    if spec.codec != "hevc" or spec.intra:
        raise ValueError("reference synthesis needs lossy HEVC with inter frames")
    if n_refs < 1:
        raise ValueError("reference synthesis needs at least one reference picture")
    ref_qp = spec.intra_qp if spec.intra_qp is not None else min(spec.qp, 12)
    return VideoSpec(spec.codec, spec.pix_fmt, spec.qp, False, spec.preset, spec.threads,
                     keyint=n_frames + n_refs, intra_qp=ref_qp, references=n_refs)


def encode_video_after(references: list[tuple[np.ndarray, ...]], frames: list[tuple[np.ndarray, ...]],
                       spec: VideoSpec) -> bytes | None:
    """Code ``frames`` as P-frames predicted from ``references``, which are not transmitted.

    x265 through ffmpeg takes no external reference pictures, so the references are coded as the
    first pictures of the stream (an I-frame, then P-frames; all at ``spec.intra_qp``, default
    min(qp, 12)) and their bytes are dropped: the decoder, which can build the same references,
    codes them again with the same deterministic settings (:func:`decode_video_after`). ``frames``
    may use any of them (x265's reference list, the preset's ``ref`` pictures deep). Returns the
    bytes after the references, or None when coding the references alone does not reproduce the
    same leading bytes (then the caller must code the frames without them).
    """
    rspec = _reference_spec(spec, len(frames), len(references))
    full = encode_video(list(references) + list(frames), rspec)
    cut = _split_at_picture(full, len(references))
    prefix = encode_video(list(references), rspec)
    if cut == len(full) or prefix != full[:cut]:
        return None
    return full[cut:]


def decode_video_after(references: list[tuple[np.ndarray, ...]], data: bytes, spec: VideoSpec, width: int,
                       height: int, n_frames: int) -> list[tuple[np.ndarray, ...]]:
    """Inverse of :func:`encode_video_after`: the ``n_frames`` frames after the synthesised references
    (``spec`` must be the encoder's: codec, pixel format, QP, preset and threads)."""
    if not data:
        raise BitstreamError("empty video sub-stream")
    n_refs = len(references)
    prefix = encode_video(list(references), _reference_spec(spec, n_frames, n_refs))
    frames = decode_video(prefix + data, spec.codec, spec.pix_fmt, width, height, n_frames + n_refs,
                          spec.threads)
    return frames[n_refs:]

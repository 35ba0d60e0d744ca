"""ffmpeg wrapper: lossless and lossy round trips, missing or failing binaries, damaged streams."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from imcodec.errors import BitstreamError, ToolError
from imcodec.vpcc.video import ENV_VAR, VideoSpec, decode_video, encode_video, ffmpeg_binary


def _frames(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    d0 = ((x * 3 + y * 2) % 200).astype(np.uint8)
    d1 = np.minimum(d0.astype(int) + (x % 3), 255).astype(np.uint8)
    return [(d0,), (d1,)]


@pytest.mark.parametrize("codec", ["hevc_lossless", "ffv1"])
def test_lossless_video_round_trip(codec):
    frames = _frames()
    data = encode_video(frames, VideoSpec(codec=codec))
    out = decode_video(data, codec, "gray", 64, 48, 2)
    for a, b in zip(frames, out):
        assert np.array_equal(a[0], b[0])


def test_ten_bit_lossless_round_trip():
    frames = [(f[0].astype(np.uint16) * 4 + 3,) for f in _frames()]
    data = encode_video(frames, VideoSpec(codec="hevc_lossless", pix_fmt="gray10le"))
    out = decode_video(data, "hevc_lossless", "gray10le", 64, 48, 2)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(frames, out))


def test_lossy_video_is_close_and_smaller_at_higher_qp():
    frames = _frames(96, 128)
    sizes = []
    for qp in (40, 20):
        data = encode_video(frames, VideoSpec(qp=qp))
        out = decode_video(data, "hevc", "gray", 128, 96, 2)
        err = np.abs(out[0][0].astype(int) - frames[0][0]).mean()
        assert err < (6.0 if qp == 40 else 1.5)
        sizes.append(len(data))
    assert sizes[0] < sizes[1]


def test_yuv420_round_trip_shapes():
    y = np.full((32, 48), 100, np.uint8)
    u = np.full((16, 24), 90, np.uint8)
    v = np.full((16, 24), 160, np.uint8)
    out = decode_video(encode_video([(y, u, v)], VideoSpec(pix_fmt="yuv420p", qp=10)), "hevc", "yuv420p",
                       48, 32, 1)
    assert [p.shape for p in out[0]] == [(32, 48), (16, 24), (16, 24)]
    assert abs(int(out[0][2].mean()) - 160) <= 1


def test_missing_ffmpeg_names_the_binary(monkeypatch, tmp_path):
    missing = str(tmp_path / "no-such-ffmpeg")
    monkeypatch.setenv(ENV_VAR, missing)
    assert ffmpeg_binary() == missing
    with pytest.raises(ToolError, match="no-such-ffmpeg"):
        encode_video(_frames(), VideoSpec())


def test_failing_ffmpeg_reports_command_and_stderr(monkeypatch, tmp_path):
    fake = tmp_path / "broken-ffmpeg"
    fake.write_text("#!/bin/sh\necho 'codec exploded here' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(ENV_VAR, str(fake))
    with pytest.raises(ToolError) as info:
        encode_video(_frames(), VideoSpec())
    msg = str(info.value)
    assert "broken-ffmpeg" in msg and "exit code 3" in msg and "codec exploded here" in msg
    assert "-encoders" in msg  # the command line


def test_damaged_video_raises_bitstream_error():
    data = encode_video(_frames(), VideoSpec())
    for bad in (data[:10], b"\x00\x00\x01garbage" * 8, data[: len(data) // 2]):
        with pytest.raises(BitstreamError):
            decode_video(bad, "hevc", "gray", 64, 48, 2)
    with pytest.raises(BitstreamError, match="frames"):
        decode_video(data, "hevc", "gray", 64, 48, 3)
    with pytest.raises(BitstreamError):
        decode_video(b"", "hevc", "gray", 64, 48, 2)



def test_leading_reference_frames_take_the_reference_qp():
    """``references=2`` codes frame 1 (a P-frame) at ``intra_qp`` too; with 1 only the I-frame is."""
    rng = np.random.default_rng(3)
    frames = [(rng.integers(0, 256, (64, 96)).astype(np.uint8),) for _ in range(3)]
    err = {}
    for refs in (1, 2):
        spec = VideoSpec(qp=44, keyint=4, intra_qp=4, references=refs)
        out = decode_video(encode_video(frames, spec), "hevc", "gray", 96, 64, 3)
        err[refs] = [np.abs(o[0].astype(int) - f[0]).mean() for o, f in zip(out, frames)]
    assert err[1][0] < 2 and err[2][0] < 2  # the I-frame at QP 4 either way
    assert err[2][1] < 2 < err[1][1]  # frame 1: QP 4 with two references, QP 44 with one
    assert err[2][2] > 2  # frame 2 at QP 44 either way
    with pytest.raises(ValueError, match="references must be at least 1, got 0"):
        VideoSpec(references=0)

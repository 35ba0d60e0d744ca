"""Frame sequences: a directory, a glob, a printf pattern, or a single file, ordered by frame number.

Examples::

    resolve_frames("data/")                                   # every *.ply in the directory
    resolve_frames("data/soldier_*.ply")                      # a glob
    resolve_frames("soldier_q08_%04d.ply", start=536, count=3)  # a printf pattern
"""

from __future__ import annotations

import glob as _glob
import os
import re
from pathlib import Path

from imcodec.errors import InputError, UsageError
from imcodec.types import Frame

_NUM = re.compile(r"(\d+)")
_PRINTF = re.compile(r"%0?\d*d")
_MAX_PROBE = 1_000_000


def frame_number(path: str | os.PathLike) -> int | None:
    """The frame number in a file's stem: its longest run of digits, the last one on a tie
    (``soldier_q08_0536.ply`` -> 536, ``basketball_player_00000001_vox10.ply`` -> 1), or None."""
    nums = _NUM.findall(Path(path).stem)
    if not nums:
        return None
    longest = max(len(n) for n in nums)
    return int([n for n in nums if len(n) == longest][-1])


def _varying_numbers(paths: list[Path]) -> list[int | None]:
    """Frame numbers of several files: the digit run that differs between the names when the names
    have the same shape (``a_08_0001``, ``a_08_0002``), else each name's :func:`frame_number`."""
    runs = [_NUM.findall(p.stem) for p in paths]
    if len(paths) > 1 and runs[0] and all(len(r) == len(runs[0]) for r in runs):
        varying = [i for i in range(len(runs[0])) if len({int(r[i]) for r in runs}) > 1]
        if len(varying) == 1:
            return [int(r[varying[0]]) for r in runs]
    return [frame_number(p) for p in paths]


def _ordered(paths: list[Path]) -> list[Frame]:
    keyed = list(zip(_varying_numbers(paths), paths))
    if all(k is not None for k, _ in keyed) and len({k for k, _ in keyed}) == len(keyed):
        keyed.sort(key=lambda kp: (kp[0], str(kp[1])))
        return [Frame(p, k) for k, p in keyed]
    # no usable numbers: natural order by name, frame index = position
    keyed.sort(key=lambda kp: [int(t) if t.isdigit() else t for t in _NUM.split(kp[1].name)])
    return [Frame(p, i) for i, (_, p) in enumerate(keyed)]


def _window(frames: list[Frame], start: int | None, count: int | None) -> list[Frame]:
    if start is not None:
        frames = [f for f in frames if f.index >= start]
    if count is not None:
        frames = frames[:count]
    return frames


def resolve_frames(spec: str | os.PathLike, start: int | None = None, count: int | None = None,
                   suffix: str = ".ply") -> list[Frame]:
    """Resolve a sequence spec to frames ordered by frame number.

    spec: a file, a directory (its ``*suffix`` files), a glob (``*``/``?``/``[``), or a printf
    pattern with one ``%d``-style field (``%04d``). ``start``/``count`` select a window; for a printf
    pattern ``start`` defaults to the first existing number in 0..9 and frames are probed until one
    is missing (or ``count`` are found).
    Raises UsageError for a malformed pattern or window, InputError when nothing matches.
    """
    if count is not None and count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    if start is not None and start < 0:
        raise UsageError(f"--start must be non-negative, got {start}")
    text = str(spec)
    if not text.strip():
        raise UsageError("empty input path")
    if "%" in text:
        fields = _PRINTF.findall(text)
        if len(fields) != 1 or text.count("%") != 1:
            raise UsageError(f"{text!r}: a frame pattern needs exactly one %d-style field such as %04d")
        first = start
        if first is None:
            first = next((i for i in range(10) if Path(text % i).is_file()), 0)
        frames = []
        i = first
        while count is None or len(frames) < count:
            p = Path(text % i)
            if not p.is_file():
                break
            frames.append(Frame(p, i))
            i += 1
            if i - first > _MAX_PROBE:
                break
        if not frames:
            raise InputError(f"{text!r}: no frame found (first tried {text % first!r})")
        if count is not None and len(frames) < count:
            raise InputError(f"{text!r}: asked for {count} frames from {first}, found {len(frames)} "
                             f"({text % (first + len(frames))!r} is missing)")
        return frames
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(suffix))
        if not files:
            raise InputError(f"{path}: directory has no {suffix} files")
        return _checked(_window(_ordered(files), start, count), text)
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in _glob.glob(text) if Path(p).is_file()]
        if not files:
            raise InputError(f"{text!r}: no file matches the pattern")
        return _checked(_window(_ordered(files), start, count), text)
    if path.exists():  # a file, or a pipe such as <(...) or /dev/stdin
        if start is not None or count is not None:
            raise UsageError(f"{text}: --start/--count select frames of a sequence, not of a single file")
        return [Frame(path, frame_number(path) or 0)]
    raise InputError(f"{text}: no such file, directory or pattern")


def _checked(frames: list[Frame], text: str) -> list[Frame]:
    if not frames:
        raise InputError(f"{text!r}: no frame in the requested --start/--count window")
    return frames

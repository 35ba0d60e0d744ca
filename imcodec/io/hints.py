"""Motion-hint files written by ``imcodec motion`` (format: README, "Motion hints").

One CSV text file per frame: ``#`` comment lines (format version, frame numbers, atlas size, block
size, MV convention), then the header ``x,y,dx,dy,confidence,pixels`` and one row per block: block
corner (pixels), motion vector (pixels; position in the previous frame's atlas minus position in
this frame's atlas), confidence (0..1, 4 decimals) and occupied near-layer pixels of the block.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imcodec.errors import InputError
from imcodec.io.files import read_bytes, write_text_atomic

HEADER = "x,y,dx,dy,confidence,pixels"
VERSION_LINE = "# imcodec motion hints v1"


def write_hints(path: str | os.PathLike, hints: np.ndarray, frame: int, previous: int, width: int,
                height: int, block: int) -> None:
    """Write (B, 6) hint rows (x, y, dx, dy, confidence, pixels) of ``frame`` against ``previous``."""
    lines = [VERSION_LINE,
             f"# frame {frame} from {previous}; atlas {width}x{height}; block {block}",
             "# MV = (position in the previous frame's atlas) - (position in this frame's atlas), pixels",
             HEADER]
    for x, y, dx, dy, conf, n in np.asarray(hints, dtype=np.float64).reshape(-1, 6):
        lines.append(f"{int(x)},{int(y)},{int(dx)},{int(dy)},{conf:.4f},{int(n)}")
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_hints(path: str | os.PathLike) -> np.ndarray:
    """(B, 6) float64 rows of a hint file; InputError naming the file for anything malformed."""
    text = read_bytes(path, what="hint file").decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    if not text.startswith(VERSION_LINE) or not lines or lines[0] != HEADER:
        raise InputError(f"{Path(path)}: not an imcodec motion-hint file (expected {VERSION_LINE!r} and "
                         f"the header {HEADER!r})")
    rows = []
    for k, ln in enumerate(lines[1:], start=2):
        parts = ln.split(",")
        try:
            if len(parts) != 6:
                raise ValueError
            rows.append([float(v) for v in parts])
        except ValueError:
            raise InputError(f"{Path(path)}: row {k} {ln!r} is not six numbers") from None
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)

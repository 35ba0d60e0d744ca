"""Types shared by the API modules."""

from __future__ import annotations

import os
from pathlib import Path

from imcodec.errors import UsageError

PathLike = str | os.PathLike

MAX_THREADS = 256


def check_threads(threads: int | None) -> None:
    """UsageError unless ``threads`` is None or 1..MAX_THREADS."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be 1..{MAX_THREADS}, got {threads}")


def check_not_input(src: PathLike, dst: PathLike) -> None:
    """UsageError when writing ``dst`` would replace the input file ``src``."""
    src, dst = Path(src), Path(dst)
    if src.is_file() and dst.resolve() == src.resolve():
        raise UsageError(f"{dst}: output would overwrite its input")

"""Types shared by the API modules."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from imcodec.errors import BitstreamError, UsageError

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


@contextlib.contextmanager
def stream_errors(path: PathLike):
    """Re-raise a BitstreamError from inside the block with the stream's path in front of its message
    (the container and codec parsers work on bytes and do not know the file)."""
    try:
        yield
    except BitstreamError as exc:
        msg = str(exc)
        if msg.startswith(f"{path}:") or msg.startswith(f"{path} "):
            raise
        raise BitstreamError(f"{path}: {msg}") from exc

"""The header every imcodec weights file carries, without PyTorch (see :mod:`imcodec.learned.zoo`).

PyTorch weights files hold it as the top-level dict of ``torch.save``; the look-up-table depth
denoiser's NumPy archive holds it as JSON (:mod:`imcodec.learned.depth_lut`). Both are checked here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imcodec.errors import InputError

FORMAT = "imcodec-weights"
FORMAT_VERSION = 1
TASK_DENOISE = "denoise-depth"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def check_header(path: str | os.PathLike, header: Any, required: tuple[str, ...]) -> None:
    """InputError naming ``path`` unless ``header`` is an imcodec header of this format version
    with the ``required`` fields."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InputError(f"{path}: not an imcodec weights file (no '{FORMAT}' header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: weights format version {header.get('format_version')!r}, "
                         f"this imcodec reads version {FORMAT_VERSION}")
    for key in required:
        if key not in header:
            raise InputError(f"{path}: weights file lacks the {key!r} field")

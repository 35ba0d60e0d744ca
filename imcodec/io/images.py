"""Writing images (PNG, through Pillow) for inspecting intermediate codec data; atomic like every output."""

from __future__ import annotations

import os

import numpy as np

from imcodec.errors import InputError
from imcodec.io.files import atomic_output


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``image`` as PNG: (H, W) uint8/uint16 grey or (H, W, 3) uint8 RGB."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError(f"{path}: writing PNG needs Pillow (pip install 'imcodec[video]')") from None
    arr = np.ascontiguousarray(image)
    if arr.ndim == 2 and arr.dtype == np.uint16:
        img = Image.fromarray(arr.astype(np.uint16), mode="I;16")
    elif arr.ndim == 2:
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    elif arr.ndim == 3 and arr.shape[2] == 3:
        img = Image.fromarray(arr.astype(np.uint8), mode="RGB")
    else:
        raise ValueError(f"cannot write an image of shape {arr.shape} as PNG")
    with atomic_output(path) as tmp:
        img.save(tmp, format="PNG")

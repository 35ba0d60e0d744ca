"""Loading the V-PCC depth denoiser and the decoder hook that runs it.

Two denoisers exist (see the README): the look-up tables of :mod:`imcodec.learned.depth_lut` (the
default; a NumPy archive, read without importing PyTorch, so ``imcodec decode --denoise-depth`` starts
fast) and the dual-path CNN of :mod:`imcodec.learned.depth_denoise` (a PyTorch weights file). The
file says which.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imcodec.errors import InputError
from imcodec.learned.zoo_header import TASK_DENOISE, WEIGHTS_DIR

SHIPPED = {"lut": "denoise_depth.npz", "cnn": "denoise_depth_cnn.pt"}  # the default first
THREADS = 2  # decoder threads (torch for the CNN, row bands for the tables); the output does not depend on it


def shipped_denoiser(name: str = "lut") -> Path:
    """Path of a shipped denoiser: "lut" (the default) or "cnn"."""
    path = WEIGHTS_DIR / SHIPPED[name]
    if not path.is_file():
        raise InputError(f"no shipped depth-denoising weights ({path} missing); train some with "
                         f"`imcodec train denoise-depth` and pass --weights FILE")
    return path


def load_denoiser(weights: str | os.PathLike | None = None) -> tuple[Any, dict[str, Any]]:
    """(model, info): the depth denoiser from ``weights`` — a file, or a shipped name ("lut", "cnn");
    default the shipped tables. The model is a :class:`imcodec.learned.depth_lut.LutDenoiser` or a
    :class:`imcodec.learned.depth_denoise.DualDenoiser` (eval mode, CPU), as the file says. InputError
    for a file of another tool or architecture."""
    from imcodec.io.files import read_bytes
    from imcodec.learned import depth_lut

    if weights is None or (str(weights) in SHIPPED and not Path(weights).exists()):
        path = shipped_denoiser("lut" if weights is None else str(weights))
    else:
        path = Path(weights)
    found = depth_lut.read_lut(path, read_bytes(path, "weights file"))
    if found is not None:
        model, header = found
        if header["task"] != TASK_DENOISE:
            raise InputError(f"{path}: weights are for task {header['task']!r}, expected {TASK_DENOISE!r}")
        if header["arch"] != depth_lut.ARCH:
            raise InputError(f"{path}: weights are for architecture {header['arch']!r}, expected {depth_lut.ARCH!r}")
        return model, {"weights": str(path), "arch": depth_lut.ARCH, "config": header["config"],
                       "meta": header.get("meta", {})}
    from imcodec.learned import depth_denoise
    from imcodec.learned.zoo import read_weights

    payload = read_weights(path)
    if payload["task"] != TASK_DENOISE:
        raise InputError(f"{path}: weights are for task {payload['task']!r}, expected {TASK_DENOISE!r}")
    if payload["arch"] != depth_denoise.ARCH:
        raise InputError(f"{path}: weights are for architecture {payload['arch']!r}, expected "
                         f"{depth_denoise.ARCH!r} or {depth_lut.ARCH!r}")
    return depth_denoise.load_cnn(path, payload)


class DepthDenoiser:
    """Decoder hook: ``denoiser(geo_frames, meta, occ, owner, sp) -> geo_frames`` with the occupied
    pixels of the depth frames (D0, and D1 when present) replaced by the denoiser's output (see
    :func:`load_denoiser`).

    Lossless geometry streams are returned unchanged (their depths are exact).
    """

    def __init__(self, weights: str | os.PathLike | None = None, threads: int = THREADS):
        self.model, self.info = load_denoiser(weights)
        self.threads = threads

    @property
    def is_lut(self) -> bool:
        from imcodec.learned.depth_lut import LutDenoiser

        return isinstance(self.model, LutDenoiser)

    def __call__(self, geo_frames: list, meta, occ, owner, sp) -> list:
        if sp.geometry_codec != "hevc" or not geo_frames:
            return geo_frames
        maxv = 1023 if sp.geometry_pix_fmt == "gray10le" else 255
        d0 = geo_frames[0][0]
        d1 = geo_frames[1][0] if len(geo_frames) > 1 else None
        if self.is_lut:
            from imcodec.learned.enhance_data import pixel_mask

            self.model.threads = self.threads
            n0, n1 = self.model.denoise(d0, d1, pixel_mask(meta, occ, owner, sp.b0), maxv, sp.geometry_qp)
        else:
            import torch

            from imcodec.learned.depth_denoise import denoise_images
            from imcodec.learned.enhance_data import pixel_maps

            mask, edge = pixel_maps(meta, occ, owner, sp.b0)
            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                n0, n1 = denoise_images(self.model, d0, d1, mask, edge, maxv)
            finally:
                torch.set_num_threads(before)
        out = [(n0,) + tuple(geo_frames[0][1:])]
        if n1 is not None:
            out.append((n1,) + tuple(geo_frames[1][1:]))
        return out + list(geo_frames[len(out):])

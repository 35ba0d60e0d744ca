"""Weights files of the learned tools: the shipped ones and those ``imcodec train`` writes.

A weights file is a ``torch.save`` dict (loaded with ``weights_only=True``) with a format header::

    format="imcodec-weights", format_version=1, task="upsample", arch="pudense-slim",
    factor=4, config={UpsamplerConfig fields}, state_dict={...}, meta={how it was trained}

so a file for another task, architecture or factor is refused with a message naming the file,
what it holds and what was expected. Files written by this version also carry ``digest``: the SHA-256 of
the state dict (names, dtypes, shapes and tensor bytes, :func:`state_digest`). torch's zip reader checks
no CRCs, so without it a flipped byte inside a tensor loads silently; a file whose digest does not match
is refused as damaged (files without the field, from older versions, load unchecked). The V-PCC enhancement tools use the same header through
:func:`read_weights`: task "denoise-depth" (arch "dualpath-lut", :mod:`imcodec.learned.depth_lut`,
shipped as the NumPy archive ``denoise_depth.npz``; arch "dualpath-cnn", :mod:`imcodec.learned.depth_denoise`, shipped as
``denoise_depth_cnn.pt``) and task "restore" with a ``rate`` field (:mod:`imcodec.learned.restore`,
shipped as ``restore.pt`` for all rates and ``restore_r1.pt`` / ``restore_r2.pt`` fine-tuned for one
rate each; :func:`imcodec.learned.restore.shipped_restorer` picks the rate's own file when there is one).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from imcodec.errors import InputError
from imcodec.io.files import read_bytes, write_bytes_atomic
from imcodec.learned.models import ARCH, FACTORS, PUDenseUpsampler, UpsamplerConfig, build_model
from imcodec.learned.zoo_header import FORMAT, FORMAT_VERSION, WEIGHTS_DIR, check_header

TASK = "upsample"


def shipped_weights(factor: int) -> Path:
    """Path of the packaged weights for ``factor``x upsampling (InputError if none are shipped)."""
    path = WEIGHTS_DIR / f"upsample_x{factor}.pt"
    if not path.is_file():
        shipped = sorted(p.name for p in WEIGHTS_DIR.glob("upsample_x*.pt")) if WEIGHTS_DIR.is_dir() else []
        raise InputError(f"no shipped weights for {factor}x upsampling ({path} missing; shipped: "
                         f"{', '.join(shipped) or 'none'}); train some with `imcodec train upsample "
                         f"--factor {factor}` and pass --weights FILE")
    return path


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 (hex) of a state dict: every entry's name, dtype, shape and bytes, in name order."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        if not torch.is_tensor(value):
            h.update(f"{name}={value!r};".encode())
            continue
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        h.update(tensor_bytes(value))
    return h.hexdigest()


def tensor_bytes(t: torch.Tensor) -> bytes:
    """A tensor's raw bytes (on the CPU, contiguous), for digests."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()  # reshape: 0-dim too


def payload_bytes(payload: dict[str, Any]) -> bytes:
    """``torch.save`` bytes of a weights payload, with the state dict's ``digest`` added."""
    payload = {**payload, "digest": state_digest(payload["state_dict"])}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def weights_bytes(model: PUDenseUpsampler, meta: dict[str, Any] | None = None) -> bytes:
    """Serialise a model with its format header (tensors moved to CPU)."""
    cfg = model.config
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": TASK,
        "arch": cfg.arch,
        "factor": cfg.factor,
        "config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        # plain JSON types only, so the file loads with torch.load(weights_only=True)
        "meta": json.loads(json.dumps(meta or {}, default=str)),
    }
    return payload_bytes(payload)


def save_weights(path: str | os.PathLike, model: PUDenseUpsampler, meta: dict[str, Any] | None = None) -> None:
    write_bytes_atomic(path, weights_bytes(model, meta))


def read_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The checked header and payload of a weights file (InputError when missing or corrupt)."""
    data = read_bytes(path, "weights file")
    from imcodec.learned.depth_lut import lut_header

    header = lut_header(data)
    if header is not None:  # the depth denoiser's tables (a NumPy archive): its header says what it is for
        check_header(path, header, ("task", "arch", "factor", "config"))
        return {**header, "state_dict": {}}
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of every kind mean the same thing here
        # (torch's own text advises weights_only=False, i.e. running code from the file: not quoted)
        raise InputError(f"{path}: not a readable imcodec weights file ({type(exc).__name__})") from None
    check_header(path, payload, ("task", "arch", "factor", "config", "state_dict"))
    state = payload["state_dict"]
    if isinstance(state, dict) and "digest" in payload and payload["digest"] != state_digest(state):
        raise InputError(f"{path}: weights file is damaged (its tensors do not match the SHA-256 digest it "
                         f"carries)")
    if isinstance(state, dict):
        for name, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise InputError(f"{path}: weights hold non-finite values (in {name!r}); the file is damaged "
                                 f"or came from a diverged training run")
    return payload


def _migrate_state(payload: dict[str, Any]) -> dict[str, Any]:
    """State dict in the current layout: the first format kept its single head convolution as
    ``refine.*`` (config ``head_conv: true``); it is now ``refine.0.*`` (``head_convs: 1``)."""
    state = dict(payload["state_dict"])
    if "head_conv" in payload["config"]:
        for name in ("weight", "bias"):
            if f"refine.{name}" in state:
                state[f"refine.0.{name}"] = state.pop(f"refine.{name}")
    return state


def load_upsampler(factor: int, weights: str | os.PathLike | None = None,
                   device: torch.device | str = "cpu") -> tuple[PUDenseUpsampler, dict[str, Any]]:
    """The upsampling network for ``factor`` from ``weights`` (default: the shipped file), in eval mode.

    Returns (model, info) where info has the file path, architecture, config and training meta.
    """
    if factor not in FACTORS:
        raise InputError(f"factor must be one of {', '.join(map(str, FACTORS))}, got {factor}")
    path = Path(weights) if weights is not None else shipped_weights(factor)
    payload = read_weights(path)
    if payload["task"] != TASK:
        raise InputError(f"{path}: weights are for task {payload['task']!r}, expected {TASK!r}")
    if payload["arch"] != ARCH:
        raise InputError(f"{path}: weights are for architecture {payload['arch']!r}, expected {ARCH!r}")
    if payload["factor"] != factor:
        raise InputError(f"{path}: weights are for {payload['factor']}x upsampling, expected {factor}x")
    try:
        config = UpsamplerConfig.from_dict(payload["config"])
        model = build_model(config)
        model.load_state_dict(_migrate_state(payload), strict=True)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: weights do not fit the {ARCH} architecture ({first})") from None
    model.eval().to(device)
    info = {"weights": str(path), "arch": payload["arch"], "config": payload["config"],
            "meta": payload.get("meta", {})}
    return model, info

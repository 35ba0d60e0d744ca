"""Joint near/far depth-field denoising for the V-PCC decoder (a small 2D CNN, CPU).

After Jia, Li, Li, Liu, "Deep learning geometry compression artifacts removal for video-based point
cloud compression", IJCV 129, 2021: the decoded near (D0) and far (D1) depth images are filtered by
a CNN before the points are rebuilt. Dual path: the near-field network sees the decoded D0; the
far-field network sees the decoded D1 *and the denoised D0* (the paper's pseudo motion compensation:
D1 is D0 plus a small thickness), and is trained with an extra loss on the D1 - D0 gap.

Both networks are residual: conv 3x3 (in -> C), dilated conv 3x3 (C -> C, dilations 2, 4, 2), conv
3x3 (C -> 1), ReLU between, receptive field 21 pixels. Inputs are made independent of the patch's
depth offset: each depth image enters as (d - r) / 8 with r the 9x9 mean of the decoded D0 over
occupied pixels (clipped to +-4), next to the occupancy mask and the patch-boundary mask. The output
is d + residual, rounded to integers and clipped to the video's range, and only occupied pixels
change, so the decoder stays integer and deterministic (CPU, a fixed thread count).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from imcodec.errors import InputError
from imcodec.learned.zoo_header import TASK_DENOISE as TASK

ARCH = "dualpath-cnn"
SCALE = 8.0  # depth units per input unit
CLAMP = 4.0
REF = 9  # side of the window of the local reference depth
TILE = 256  # output tile edge of the decoder's tiled inference (:func:`denoise_images`)


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of both networks (stored in the weights file)."""

    channels: int = 16
    dilations: tuple[int, ...] = (2, 4, 2)
    arch: str = ARCH

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DenoiserConfig":
        d = dict(d)
        d["dilations"] = tuple(d["dilations"])
        return cls(**d)


class DepthNet(nn.Module):
    """Residual CNN: forward(x (B, in_ch, H, W) float32) -> (B, 1, H, W) residual in input units."""

    def __init__(self, in_ch: int, cfg: DenoiserConfig):
        super().__init__()
        c = cfg.channels
        layers: list[nn.Module] = [nn.Conv2d(in_ch, c, 3, padding=1)]
        for d in cfg.dilations:
            layers += [nn.ReLU(), nn.Conv2d(c, c, 3, padding=d, dilation=d)]
        layers += [nn.ReLU(), nn.Conv2d(c, 1, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DualDenoiser(nn.Module):
    """Near net (inputs D0, mask, edge) and far net (inputs D1, denoised D0, mask, edge)."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.config = cfg
        self.near = DepthNet(3, cfg)
        self.far = DepthNet(4, cfg)

    def forward(self, d0: torch.Tensor, d1: torch.Tensor, mask: torch.Tensor, edge: torch.Tensor):
        """d0, d1: (B, 1, H, W) decoded depths (float, depth units); mask, edge: (B, 1, H, W) 0/1.
        Returns the denoised (d0, d1) as floats (not rounded)."""
        ref = local_reference(d0, mask)
        a0 = ((d0 - ref) / SCALE).clamp(-CLAMP, CLAMP) * mask
        n0 = d0 + SCALE * self.near(torch.cat([a0, mask, edge], 1))
        a1 = ((d1 - ref) / SCALE).clamp(-CLAMP, CLAMP) * mask
        b0 = ((n0 - ref) / SCALE).clamp(-CLAMP, CLAMP) * mask
        n1 = d1 + SCALE * self.far(torch.cat([a1, b0, mask, edge], 1))
        return n0, n1


def local_reference(d: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) mean of ``d`` over the occupied pixels of each REF x REF window (d where none).

    Both window sums go through one separable box filter (a 1 x REF then a REF x 1 mean, about 4x
    faster than a REF x REF pool): the ratio of the two means is the ratio of the window sums, since
    both carry the same border divisor."""
    both = F.avg_pool2d(torch.cat([d * mask, mask], 1), (1, REF), stride=1, padding=(0, REF // 2),
                        count_include_pad=False)
    both = F.avg_pool2d(both, (REF, 1), stride=1, padding=(REF // 2, 0), count_include_pad=False)
    s, n = both[:, :1], both[:, 1:]
    return torch.where(n > 0, s / n.clamp_min(1e-6), d)


# ------------------------------------------------------------------------------------------ weights

def weights_bytes(model: DualDenoiser, meta: dict[str, Any] | None = None) -> bytes:
    """The model as an imcodec weights file (task "denoise-depth"; see :mod:`imcodec.learned.zoo`)."""
    from imcodec.learned.zoo import FORMAT, FORMAT_VERSION, payload_bytes

    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "task": TASK, "arch": ARCH,
               "factor": 1, "config": model.config.to_dict(),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "meta": json.loads(json.dumps(meta or {}, default=str))}
    return payload_bytes(payload)


def load_cnn(path: Path, payload: dict) -> tuple["DualDenoiser", dict[str, Any]]:
    """The CNN denoiser of a checked weights payload (arch "dualpath-cnn"), in eval mode on the CPU."""
    try:
        model = DualDenoiser(DenoiserConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: weights do not fit the {ARCH} architecture ({first})") from None
    model.eval().to(memory_format=torch.channels_last)  # about 2x faster convolutions on CPU, same output
    return model, {"weights": str(path), "arch": ARCH, "config": payload["config"], "meta": payload.get("meta", {})}


# ---------------------------------------------------------------------------------------- decoding

@torch.inference_mode()
def denoise_images(model: DualDenoiser, d0: np.ndarray, d1: np.ndarray | None, mask: np.ndarray,
                   edge: np.ndarray, max_value: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Denoised integer depth images of the same dtype as ``d0``/``d1`` ((H, W) each); pixels outside
    ``mask`` are unchanged. Without a far layer (d1 None) only the near network runs."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    h, w = mask.shape
    halo = halo_pixels(model.config)
    p0 = np.zeros((h, w), dtype=np.float32)
    p1 = np.zeros((h, w), dtype=np.float32) if d1 is not None else None
    # tiles of TILE x TILE output pixels, each computed from its window widened by the networks' reach
    # (the same values as one pass over the canvas, in cache-sized pieces); tiles without an occupied
    # pixel are skipped: their pixels are not changed anyway
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            if not mask[y:y + TILE, x:x + TILE].any():
                continue
            ya, yb, xa, xb = max(0, y - halo), min(h, y + TILE + halo), max(0, x - halo), min(w, x + TILE + halo)
            win = (slice(ya, yb), slice(xa, xb))
            m, e, x0 = t(mask[win]), t(edge[win]), t(d0[win])
            core = (slice(y - ya, y - ya + TILE), slice(x - xa, x - xa + TILE))
            if d1 is not None:
                n0, n1 = model(x0, t(d1[win]), m, e)
                p1[y:y + TILE, x:x + TILE] = n1[0, 0].numpy()[core]
            else:
                n0 = near_only(model, x0, m, e)
            p0[y:y + TILE, x:x + TILE] = n0[0, 0].numpy()[core]

    def back(pred, orig):
        out = np.clip(np.rint(pred), 0, max_value).astype(orig.dtype)
        return np.where(mask, out, orig)
    return back(p0, d0), (back(p1, d1) if p1 is not None else None)


def halo_pixels(cfg: DenoiserConfig) -> int:
    """How far (pixels) the denoised D1 reaches into the inputs: the far network (3x3, the dilated
    convolutions, 3x3) over the near network's output (the same reach) over the REF-window reference."""
    reach = 2 + sum(cfg.dilations)
    return 2 * reach + REF // 2


def near_only(model: DualDenoiser, d0: torch.Tensor, m: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """The near network alone: denoised (B, 1, H, W) float D0 (first training stage, single-layer streams)."""
    ref = local_reference(d0, m)
    a0 = ((d0 - ref) / SCALE).clamp(-CLAMP, CLAMP) * m
    return d0 + SCALE * model.near(torch.cat([a0, m, e], 1))


# the loader and the decoder hook live in imcodec.learned.denoiser (no PyTorch needed for the tables)
from imcodec.learned.denoiser import DepthDenoiser, load_denoiser, shipped_denoiser  # noqa: E402,F401

"""Padding of unoccupied canvas pixels so that the video codec spends few bits on them.

Occupied pixels are never changed. Geometry: average dilation (each unoccupied pixel takes the mean
of its already-filled 4-neighbours, growing outward from the patches one ring at a time, as TMC2's
geometry dilation). Colour: push-pull mip-map fill (occupancy-weighted averages down to 1x1, then
holes filled from the coarser level on the way back up, bilinearly; TMC2 ``pushPull`` padding).
"""

from __future__ import annotations

import numpy as np
from imcodec.jit import njit


def pad_dilate(img: np.ndarray, mask: np.ndarray, empty_value: float = 0.0) -> np.ndarray:
    """Fill pixels where ``mask`` is False by ring-wise average dilation.

    img: (H, W) numeric; mask: (H, W) bool (True = occupied). Returns (H, W) float64; occupied
    pixels are copied unchanged. A canvas without occupied pixels becomes ``empty_value``.
    """
    img = np.ascontiguousarray(img, dtype=np.float64)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    if img.shape != mask.shape or img.ndim != 2:
        raise ValueError(f"image {img.shape} and mask {mask.shape} must be equal 2-D shapes")
    if not mask.any():
        return np.full(img.shape, float(empty_value))
    return _dilate(img, mask)


@njit(cache=True)
def _dilate(img, mask):
    h, w = img.shape
    out = img.copy()
    filled = mask.copy()
    queued = mask.copy()
    front = np.empty(h * w, dtype=np.int64)
    nxt = np.empty(h * w, dtype=np.int64)
    nf = 0
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                if (x > 0 and mask[y, x - 1]) or (x + 1 < w and mask[y, x + 1]) or \
                        (y > 0 and mask[y - 1, x]) or (y + 1 < h and mask[y + 1, x]):
                    front[nf] = y * w + x
                    nf += 1
                    queued[y, x] = True
    vals = np.empty(h * w)
    while nf > 0:
        for k in range(nf):
            q = front[k]
            y = q // w
            x = q - y * w
            s = 0.0
            c = 0
            if x > 0 and filled[y, x - 1]:
                s += out[y, x - 1]
                c += 1
            if x + 1 < w and filled[y, x + 1]:
                s += out[y, x + 1]
                c += 1
            if y > 0 and filled[y - 1, x]:
                s += out[y - 1, x]
                c += 1
            if y + 1 < h and filled[y + 1, x]:
                s += out[y + 1, x]
                c += 1
            vals[k] = s / c
        nn = 0
        for k in range(nf):
            q = front[k]
            y = q // w
            x = q - y * w
            out[y, x] = vals[k]
            filled[y, x] = True
        for k in range(nf):
            q = front[k]
            y = q // w
            x = q - y * w
            for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0)):
                yy = y + dy
                xx = x + dx
                if 0 <= yy < h and 0 <= xx < w and not queued[yy, xx]:
                    queued[yy, xx] = True
                    nxt[nn] = yy * w + xx
                    nn += 1
        front, nxt = nxt, front
        nf = nn
    return out


def push_pull(img: np.ndarray, mask: np.ndarray, empty_value: float = 128.0) -> np.ndarray:
    """Fill pixels where ``mask`` is False by push-pull (mip-map) interpolation.

    img: (H, W) or (H, W, C) numeric; mask: (H, W) bool. Returns float64 of img's shape with the
    occupied pixels unchanged; without any occupied pixel everything becomes ``empty_value``.
    """
    arr = np.asarray(img, dtype=np.float64)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[:, :, None]
    mask = np.asarray(mask, dtype=bool)
    if arr.shape[:2] != mask.shape:
        raise ValueError(f"image {arr.shape} and mask {mask.shape} differ in size")
    if not mask.any():
        out = np.full(arr.shape, float(empty_value))
        return out[:, :, 0] if squeeze else out
    wt = mask.astype(np.float64)
    levels = [(np.ascontiguousarray(arr * wt[:, :, None]), wt)]
    # push: occupancy-weighted sums down to one pixel
    while max(levels[-1][1].shape) > 1:
        levels.append(_push(*levels[-1]))
    # pull: fill empty cells of each level from the filled level above (bilinear)
    s, w = levels[-1]
    filled = s / np.maximum(w, 1e-12)[:, :, None]
    for s, w in reversed(levels[:-1]):
        filled = _pull(s, w, filled)
    out = np.where(mask[:, :, None], arr, filled)
    return out[:, :, 0] if squeeze else out


@njit(cache=True)
def _push(s, w):
    """Half-resolution sums of values (s (h, w, C)) and weights (w (h, w)); odd edges padded with 0."""
    h, wd = w.shape
    ch = s.shape[2]
    hh, hw = (h + 1) // 2, (wd + 1) // 2
    s2 = np.zeros((hh, hw, ch))
    w2 = np.zeros((hh, hw))
    for y in range(h):
        for x in range(wd):
            if w[y, x] > 0:
                w2[y // 2, x // 2] += w[y, x]
                for c in range(ch):
                    s2[y // 2, x // 2, c] += s[y, x, c]
    return s2, w2


@njit(cache=True)
def _pull(s, w, coarse):
    """Level values: weighted means where w > 0, else bilinear samples of the filled coarse level."""
    h, wd = w.shape
    ch = s.shape[2]
    coh, cow = coarse.shape[0], coarse.shape[1]
    out = np.empty((h, wd, ch))
    for y in range(h):
        fy = (y + 0.5) / 2.0 - 0.5
        y0 = int(np.floor(fy))
        ty = fy - y0
        y1 = min(max(y0 + 1, 0), coh - 1)
        y0 = min(max(y0, 0), coh - 1)
        for x in range(wd):
            if w[y, x] > 0:
                for c in range(ch):
                    out[y, x, c] = s[y, x, c] / w[y, x]
                continue
            fx = (x + 0.5) / 2.0 - 0.5
            x0 = int(np.floor(fx))
            tx = fx - x0
            x1 = min(max(x0 + 1, 0), cow - 1)
            x0 = min(max(x0, 0), cow - 1)
            for c in range(ch):
                top = coarse[y0, x0, c] * (1.0 - tx) + coarse[y0, x1, c] * tx
                bot = coarse[y1, x0, c] * (1.0 - tx) + coarse[y1, x1, c] * tx
                out[y, x, c] = top * (1.0 - ty) + bot * ty
    return out


def fill_from_previous(prev: tuple[np.ndarray, ...], cur: tuple[np.ndarray, ...], mask: np.ndarray,
                       block: int = 8) -> tuple[np.ndarray, ...]:
    """``cur`` with every ``block`` x ``block`` luma block that holds no occupied pixel (and its
    chroma) copied from ``prev`` (temporal padding for inter frames).

    The decoder never reads those pixels, so any value is valid; the previous frame's makes the
    block a free skip for the video codec, where spatial padding of a changed neighbourhood would
    change too and cost residual bits. prev / cur: plane tuples of equal shapes (Y first, chroma at
    half resolution); mask: (H, W) bool, True where the decoder reads the pixel.
    """
    h, w = cur[0].shape
    if mask.shape != (h, w) or len(prev) != len(cur) or any(p.shape != c.shape for p, c in zip(prev, cur)):
        raise ValueError(f"frames {[p.shape for p in cur]} / {[p.shape for p in prev]} and mask "
                         f"{mask.shape} do not match")
    nby, nbx = -(-h // block), -(-w // block)
    full = np.zeros((nby * block, nbx * block), dtype=np.bool_)
    full[:h, :w] = mask
    empty = ~full.reshape(nby, block, nbx, block).any(axis=(1, 3))
    luma = np.repeat(np.repeat(empty, block, axis=0), block, axis=1)[:h, :w]
    out = []
    for p, c in zip(prev, cur):
        sel = luma
        if p.shape != (h, w):  # 4:2:0 chroma: a sample is unread when its four luma pixels are
            sel = luma[:2 * p.shape[0], :2 * p.shape[1]].reshape(p.shape[0], 2, p.shape[1], 2).all(axis=(1, 3))
        out.append(np.where(sel, p, c))
    return tuple(out)

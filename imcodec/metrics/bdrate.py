"""Bjontegaard delta rate (BD-rate, %) and delta quality (BD-PSNR, dB) between two RD curves.

Two interpolation methods:

- ``pchip`` (default): piecewise cubic Hermite interpolation (Fritsch-Carlson monotone slopes with
  the Fritsch-Butland weighted harmonic mean inside and the shape-preserving three-point formula at
  the ends), as in the JCT-VC/JVET common-test-condition spreadsheets (JCTVC-L1100, JVET-T2010)
  that MPEG's point-cloud CTC reuse. The piecewise cubics are integrated exactly.
- ``cubic``: the classic VCEG-M33 method (G. Bjontegaard, "Calculation of average PSNR differences
  between RD-curves", 2001): a least-squares third-order polynomial (exact through 4 points).

BD-rate interpolates log10(rate) as a function of quality and averages the difference over the
overlapping quality range: ``100 * (10**mean(log10 r_test - log10 r_anchor) - 1)``. BD-PSNR
interpolates quality as a function of log10(rate) and averages over the overlapping log-rate range.
Negative BD-rate / positive BD-PSNR mean the test codec is better.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imcodec.errors import InputError, UsageError

METHODS = ("pchip", "cubic")
MIN_POINTS = 4

ArrayLike = Sequence[float] | np.ndarray


def bd_rate(r_anchor: ArrayLike, q_anchor: ArrayLike, r_test: ArrayLike, q_test: ArrayLike,
            method: str = "pchip") -> float:
    """Average rate difference (%) of the test curve against the anchor at equal quality.

    r_*: (N,) positive rates (any unit, e.g. bpp); q_*: (N,) finite qualities (e.g. D1 PSNR, dB),
    strictly increasing with rate (the points may come in any order; they are sorted by rate).
    Raises InputError for fewer than 4 points, bad values, non-monotonic curves or no overlap.
    """
    la, qa = _curve(r_anchor, q_anchor, "anchor")
    lt, qt = _curve(r_test, q_test, "test")
    lo, hi = _overlap(qa, qt, "quality", "dB")
    avg = (_integral(qt, lt, lo, hi, method) - _integral(qa, la, lo, hi, method)) / (hi - lo)
    return float((10.0 ** avg - 1.0) * 100.0)


def bd_psnr(r_anchor: ArrayLike, q_anchor: ArrayLike, r_test: ArrayLike, q_test: ArrayLike,
            method: str = "pchip") -> float:
    """Average quality difference (dB, or the quality's unit) of test minus anchor at equal rate.

    Same inputs and errors as :func:`bd_rate`; averages over the overlapping log10-rate range.
    """
    la, qa = _curve(r_anchor, q_anchor, "anchor")
    lt, qt = _curve(r_test, q_test, "test")
    lo, hi = _overlap(la, lt, "log10(rate)", "")
    return float((_integral(lt, qt, lo, hi, method) - _integral(la, qa, lo, hi, method)) / (hi - lo))


# ------------------------------------------------------------------------------------ validation

def _curve(rate: ArrayLike, quality: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(log10 rate, quality), both (N,) float64 sorted by rate, after checking the curve."""
    try:
        r = np.asarray(rate, dtype=np.float64)
        q = np.asarray(quality, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} curve: rates and qualities must be numbers") from None
    if r.ndim != 1 or q.ndim != 1 or r.shape != q.shape:
        raise InputError(f"{name} curve: need two 1-D sequences of equal length, got shapes "
                         f"{r.shape} and {q.shape}")
    if len(r) < MIN_POINTS:
        raise InputError(f"{name} curve: has {len(r)} points, BD metrics need at least {MIN_POINTS}")
    bad = ~np.isfinite(r) | (r <= 0)
    if bad.any():
        raise InputError(f"{name} curve: rates must be positive and finite, got {float(r[bad][0])!r}")
    if not np.isfinite(q).all():
        v = float(q[~np.isfinite(q)][0])
        raise InputError(f"{name} curve: quality {v!r} is not finite (drop lossless/infinite-PSNR points)")
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    dup = np.flatnonzero(np.diff(r) == 0)
    if len(dup):
        raise InputError(f"{name} curve: rate {float(r[dup[0]])!r} appears twice")
    drop = np.flatnonzero(np.diff(q) <= 0)
    if len(drop):
        i = drop[0]
        raise InputError(f"{name} curve: not monotonic: quality must increase with rate, but rate "
                         f"{float(r[i])!r} -> {float(r[i + 1])!r} gives quality {float(q[i])!r} -> {float(q[i + 1])!r}")
    return np.log10(r), q


def _overlap(a: np.ndarray, b: np.ndarray, what: str, unit: str) -> tuple[float, float]:
    lo = max(float(a[0]), float(b[0]))
    hi = min(float(a[-1]), float(b[-1]))
    if not hi > lo:
        u = f" {unit}" if unit else ""
        raise InputError(f"the curves do not overlap in {what}: anchor spans {a[0]:.6g}..{a[-1]:.6g}{u}, "
                         f"test spans {b[0]:.6g}..{b[-1]:.6g}{u}")
    return lo, hi


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Integral over [lo, hi] of the curve y(x) interpolated with ``method``; x strictly increasing."""
    if method == "pchip":
        return _pchip_integral(x, y, lo, hi)
    if method == "cubic":
        poly = np.polynomial.Polynomial.fit(x, y, 3).integ()
        return float(poly(hi) - poly(lo))
    raise UsageError(f"unknown BD method {method!r}; expected one of {', '.join(METHODS)}")


# ----------------------------------------------------------------------------------------- pchip

def _end_slope(h0: float, h1: float, d0: float, d1: float) -> float:
    """Shape-preserving three-point end slope (non-centred difference, clipped)."""
    s = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    if s * d0 <= 0.0:
        return 0.0
    if d0 * d1 < 0.0 and abs(s) > abs(3.0 * d0):
        return 3.0 * d0
    return s


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Node derivatives (N,) of the monotone piecewise cubic Hermite interpolant; N >= 3.

    Interior: weighted harmonic mean of the neighbouring secants (0 at a local extremum);
    ends: the three-point formula, clipped to keep the shape (Fritsch & Carlson 1980, Moler 2004).
    """
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros_like(y)
    dl, dr = delta[:-1], delta[1:]
    hl, hr = h[:-1], h[1:]
    w1, w2 = 2.0 * hr + hl, hr + 2.0 * hl
    same = dl * dr > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (w1 + w2) / (w1 / dl + w2 / dr)
    d[1:-1] = np.where(same, mean, 0.0)
    d[0] = _end_slope(h[0], h[1], delta[0], delta[1])
    d[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over [lo, hi] (inside [x0, xN-1]) of the pchip interpolant of y(x)."""
    d = pchip_slopes(x, y)
    h = np.diff(x)
    delta = np.diff(y) / h
    # on segment k, with s = x - x_k:  y_k + d_k s + c_k s^2 + b_k s^3
    c = (3.0 * delta - 2.0 * d[:-1] - d[1:]) / h
    b = (d[:-1] - 2.0 * delta + d[1:]) / (h * h)
    s0 = np.clip(x[:-1], lo, hi) - x[:-1]
    s1 = np.clip(x[1:], lo, hi) - x[:-1]
    terms = (y[:-1] * (s1 - s0) + d[:-1] * (s1**2 - s0**2) / 2.0
             + c * (s1**3 - s0**3) / 3.0 + b * (s1**4 - s0**4) / 4.0)
    return float(terms.sum())

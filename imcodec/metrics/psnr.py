"""D1/D2/colour PSNR between two point clouds with the conventions of MPEG pc_error.

Reproduces mpeg-pcc-dmetric 0.14.2 run as ``pc_error --dropdups=2 --neighborsProc=1`` (with its
defaults ``--averageNormals=1 --mseSpace=1``):

1. Both clouds are read as float32 and duplicate positions merged (colours averaged with integer
   division, normals of the first duplicate kept), see dedup.py. ``points_a``/``points_b`` are the
   counts after merging, as pc_error prints them.
2. Each point of A finds its nearest point(s) in B and vice versa, equidistant neighbours included
   (ties.py); distances use float32 coordinate differences summed in float64, as pc_error does.
3. A's normals come from the caller (in A's point order; ``api.metrics`` matches a normals file to A
   by position, as pc_error does) or are estimated (PCA over 12 nearest neighbours; a note says
   so). B's normals are derived from A's the way pc_error's scaleNormals does it (normals.py).
4. A->B loops over A using B's normals, B->A loops over B using A's normals (distortion.py).
   MSE is the mean over the looping cloud; PSNR = 10*log10(3*peak**2/MSE) for geometry and
   10*log10(1/MSE) for colour (Y'CbCr in [0, 1], BT.709); MSE 0 gives inf.
5. Symmetric values are the worse direction: the larger MSE and the smaller PSNR, per metric and
   per colour channel.

Differences from pc_error, all outside its defined behaviour: with more than 30 equidistant
neighbours pc_error keeps an arbitrary 30, we keep the 30 with the smallest indices; a Hausdorff
distance of 0 is reported as 0 (pc_error prints DBL_MIN) with PSNR inf; 16-bit colours are
normalised by 65535 (pc_error reads only 8-bit colour).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from imcodec.errors import InputError
from imcodec.types import PointCloud

_NAMES = {"a": "A (reference)", "b": "B (test)"}


def psnr(mse: float, peak: float, factor: float = 1.0) -> float:
    """10*log10(factor*peak**2/mse); inf when mse is 0."""
    if mse <= 0.0:
        return math.inf
    return float(10.0 * math.log10(factor * peak * peak / mse))


def _check(cloud: PointCloud, which: str) -> None:
    if len(cloud) == 0:
        raise InputError(f"cloud {_NAMES[which]} is empty: metrics need at least one point")
    if not np.all(np.isfinite(cloud.points)):
        raise InputError(f"cloud {_NAMES[which]} has non-finite (NaN or inf) coordinates")


def _is_integer(p32: np.ndarray) -> bool:
    return bool(np.all(p32 == np.rint(p32)) and np.all(np.abs(p32) < (1 << 24)))


def compute_metrics(a: PointCloud, b: PointCloud, peak: float, normals_a: np.ndarray | None = None,
                    color: bool = False, hausdorff: bool = False) -> dict[str, Any]:
    """pc_error metrics of B (test) against A (reference); see the module docstring.

    peak: geometry PSNR peak (e.g. 1023 for 10-bit). normals_a: (len(a), 3) normals of A in A's point
    order, or None to estimate them. color: also Y/Cb/Cr (both clouds need colours of one type).
    hausdorff: also the per-direction maximum squared D1/D2 distances (and RGB ones with color).

    Returns a dict with the symmetric values d1_mse, d1_psnr, d2_mse, d2_psnr, y_psnr, cb_psnr,
    cr_psnr (None when not computed), points_a, points_b (after duplicate merging), a_to_b and b_to_a
    (per-direction dicts) and notes (list of strings).
    """
    from imcodec.metrics.dedup import merge_duplicates
    from imcodec.metrics.distortion import direction_errors
    from imcodec.metrics.grid import build_grid
    from imcodec.metrics.normals import NORMAL_NEIGHBOURS, estimate_normals, transfer_normals
    from imcodec.metrics.ties import nearest_with_ties

    _check(a, "a")
    _check(b, "b")
    if not (peak > 0 and math.isfinite(peak)):
        raise InputError(f"PSNR peak must be a positive number, got {peak}")
    if normals_a is not None:
        normals_a = np.asarray(normals_a)
        if normals_a.shape != (len(a), 3):
            raise InputError(f"normals of A have shape {normals_a.shape}, expected ({len(a)}, 3)")
    cmax = 255.0
    if color:
        for cloud, which in ((a, "a"), (b, "b")):
            if cloud.colors is None:
                raise InputError(f"cloud {_NAMES[which]} has no red/green/blue colours (needed for colour PSNR)")
        if a.colors.dtype != b.colors.dtype:
            raise InputError(f"colour types differ: A has {a.colors.dtype.name}, B has {b.colors.dtype.name}")
        cmax = float(np.iinfo(a.colors.dtype).max)
    notes: list[str] = []

    pa = np.ascontiguousarray(a.points, dtype=np.float32)
    pb = np.ascontiguousarray(b.points, dtype=np.float32)
    integer = _is_integer(pa) and _is_integer(pb)
    ma = merge_duplicates(pa, a.colors if color else None, normals_a, integer)
    mb = merge_duplicates(pb, b.colors if color else None, None, integer)
    for m, which in ((ma, "A"), (mb, "B")):
        if m.duplicates:
            notes.append(f"{m.duplicates} duplicate points of {which} merged (pc_error --dropdups=2)")
    if color and cmax != 255.0:
        notes.append(f"colours are {a.colors.dtype.name}: Y'CbCr normalised by {cmax:g} "
                     "(pc_error reads 8-bit colour only)")

    grid_a = build_grid(ma.points, integer)
    grid_b = build_grid(mb.points, integer)
    ab = nearest_with_ties(ma.points, grid_b, integer)
    ba = nearest_with_ties(mb.points, grid_a, integer)

    if ma.normals is not None:
        na = ma.normals
    else:
        na = estimate_normals(grid_a, NORMAL_NEIGHBOURS)
        notes.append(f"normals of A estimated (PCA over {NORMAL_NEIGHBOURS} nearest neighbours, largest component "
                     "positive); D2 depends on them (A->B also on their signs, which pc_error averages): "
                     "give the normals file pc_error used (--normals) to match it exactly")
    nb = transfer_normals(na, ab, ba)

    ea = direction_errors(ma.points, mb.points, nb, ab, ma.colors, mb.colors, cmax)
    eb = direction_errors(mb.points, ma.points, na, ba, mb.colors, ma.colors, cmax)
    a_to_b = _direction_dict(ea, peak, color, hausdorff, cmax)
    b_to_a = _direction_dict(eb, peak, color, hausdorff, cmax)

    def worse(key: str) -> tuple[float | None, float | None]:
        m1, m2 = a_to_b.get(f"{key}_mse"), b_to_a.get(f"{key}_mse")
        if m1 is None or m2 is None:
            return None, None
        return max(m1, m2), min(a_to_b[f"{key}_psnr"], b_to_a[f"{key}_psnr"])

    d1_mse, d1_psnr = worse("d1")
    d2_mse, d2_psnr = worse("d2")
    return {
        "d1_mse": d1_mse,
        "d1_psnr": d1_psnr,
        "d2_mse": d2_mse,
        "d2_psnr": d2_psnr,
        "y_psnr": worse("y")[1],
        "cb_psnr": worse("cb")[1],
        "cr_psnr": worse("cr")[1],
        "points_a": int(len(ma.points)),
        "points_b": int(len(mb.points)),
        "a_to_b": a_to_b,
        "b_to_a": b_to_a,
        "notes": notes,
    }


def _direction_dict(e: dict, peak: float, color: bool, hausdorff: bool, cmax: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "d1_mse": float(e["d1_mse"]),
        "d1_psnr": psnr(float(e["d1_mse"]), peak, 3.0),
        "d2_mse": float(e["d2_mse"]),
        "d2_psnr": psnr(float(e["d2_mse"]), peak, 3.0),
    }
    for ch in ("y", "cb", "cr"):
        mse = float(e[f"{ch}_mse"]) if color else None
        out[f"{ch}_mse"] = mse
        out[f"{ch}_psnr"] = None if mse is None else psnr(mse, 1.0)
    if hausdorff:
        out["d1_hausdorff"] = float(e["d1_max"])
        out["d1_hausdorff_psnr"] = psnr(float(e["d1_max"]), peak, 3.0)
        out["d2_hausdorff"] = float(e["d2_max"])
        out["d2_hausdorff_psnr"] = psnr(float(e["d2_max"]), peak, 3.0)
        if color:
            rgb = [float(v) for v in e["rgb_max"]]
            out["rgb_hausdorff"] = rgb
            out["rgb_hausdorff_psnr"] = [psnr(v, cmax) for v in rgb]
    out["peak"] = float(peak)
    return out

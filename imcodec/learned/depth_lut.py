"""Look-up-table depth denoiser: the fast variant of the V-PCC decoder's depth denoising.

The dual-path CNN (:mod:`imcodec.learned.depth_denoise`) costs 3-5x the plain decoder on a 2-core
CPU. This variant keeps its structure (near layer first; the far layer sees the denoised near layer)
but replaces each network by a cascade of three learned look-up tables, in the spirit of SR-LUT
(Jo and Kim, CVPR 2021), whose tables are fitted directly instead of cached from a network:

* a stage maps every occupied pixel to a key made of its quantised neighbourhood (four neighbours
  relative to the pixel, the pixel relative to its local occupied-pixel mean, and for the far layer
  its gap to the denoised near layer; :mod:`imcodec.vpcc.depthlut` has the exact digits) and adds
  that key's correction;
* each table entry is the mean of (true depth - current depth) over the training pixels with that
  key (the least-squares optimum), over the 8 flips/transposes of every training canvas, entries
  seen fewer than ``min_count`` times stay 0; stages are fitted one after the other, each on the
  previous one's output, as the decoder runs them;
* one set of tables per geometry QP of the CTC rates r1..r5; a stream's QP (in its header) picks the
  nearest set, since the right correction depends on how coarse the video codec quantised.

Depths are held in fixed point between stages and rounded once at the end, so corrections below
half a depth unit add up instead of being rounded away; everything is integer, so the output is the
same on every machine.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from imcodec.errors import InputError, UsageError

ARCH = "dualpath-lut"

_CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAG = ((-1, -1), (1, 1), (1, -1), (-1, 1))
_CROSS2 = ((-2, 0), (2, 0), (0, -2), (0, 2))


@dataclass(frozen=True)
class Stage:
    """One table's key (see :mod:`imcodec.vpcc.depthlut`): neighbour offsets, their levels and step
    (fixed-point units), local-mean window radius (0: none), its scale and levels, gap digit."""

    offsets: tuple[tuple[int, int], ...]
    levels: int = 3
    step: int = 256
    radius: int = 0
    mq: int = 2
    mlevels: int = 8
    gap: bool = False

    def __post_init__(self):
        if self.step < 2 or self.step & (self.step - 1) or self.levels < 1 or self.radius < 0 or self.mq < 1:
            raise ValueError(f"invalid LUT stage {self}")

    @property
    def size(self) -> int:
        from imcodec.vpcc.depthlut import GAP_HI, GAP_LO

        n = (2 * self.levels + 2) ** len(self.offsets)
        if self.radius > 0:
            n *= 2 * self.mlevels + 1
        if self.gap:
            n *= GAP_HI - GAP_LO + 1
        return n

    def to_dict(self) -> dict:
        d = asdict(self)
        d["offsets"] = [list(o) for o in self.offsets]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Stage":
        d = dict(d)
        d["offsets"] = tuple(tuple(int(v) for v in o) for o in d["offsets"])
        return cls(**d)


NEAR_STAGES = (Stage(_CROSS, step=256, radius=4, mq=2), Stage(_DIAG, step=128, radius=8, mq=2),
               Stage(_CROSS2, step=128, radius=2, mq=4))
FAR_STAGES = (Stage(_CROSS, step=256, gap=True), Stage(_DIAG, step=128, radius=4, mq=2),
              Stage(_CROSS2, step=128, gap=True))


def _args(stage: Stage, y: np.ndarray, mask: np.ndarray, guide: np.ndarray | None) -> tuple:
    g = guide if guide is not None else y
    return (y, mask, g, np.asarray(stage.offsets, dtype=np.int64), stage.levels, stage.step.bit_length() - 1,
            stage.radius, stage.mq, stage.mlevels, stage.gap)


def _run(stage: Stage, y: np.ndarray, mask: np.ndarray, guide: np.ndarray | None) -> np.ndarray:
    """The key image of one stage (training)."""
    from imcodec.vpcc.depthlut import stage_keys

    return stage_keys(*_args(stage, y, mask, guide))


_POOLS: dict[int, Any] = {}


def _pool(n: int):
    """A process-wide thread pool of ``n`` workers (made on first use)."""
    if n not in _POOLS:
        from concurrent.futures import ThreadPoolExecutor

        _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="imcodec-lut")
    return _POOLS[n]


class LutDenoiser:
    """Tables ``near[s][stage]`` and ``far[s][stage]`` (int64 corrections in fixed point) per QP
    ``qps[s]``; :meth:`denoise` filters one frame's depth images."""

    def __init__(self, qps: tuple[int, ...], near: list[list[np.ndarray]], far: list[list[np.ndarray]],
                 near_stages: tuple[Stage, ...] = NEAR_STAGES, far_stages: tuple[Stage, ...] = FAR_STAGES):
        if not qps or len(near) != len(qps) or len(far) != len(qps):
            raise ValueError("one near and one far table set per QP")
        for sets, stages in ((near, near_stages), (far, far_stages)):
            for tables in sets:
                if [len(t) for t in tables] != [s.size for s in stages]:
                    raise ValueError("table sizes do not match the stages")
        self.qps, self.near, self.far = tuple(int(q) for q in qps), near, far
        self.near_stages, self.far_stages = near_stages, far_stages
        self.threads = 2

    def table_set(self, qp: int | None) -> int:
        """Index of the tables for a stream of geometry QP ``qp`` (the nearest QP; the middle one
        when unknown)."""
        if qp is None or qp <= 0:
            return len(self.qps) // 2
        return int(np.argmin([abs(q - qp) for q in self.qps]))

    def near_field(self, d0: np.ndarray, mask: np.ndarray, s: int) -> np.ndarray:
        """Denoised near layer in fixed point (int64, 0 outside ``mask``), from the decoded one."""
        from imcodec.vpcc.depthlut import fixed_point

        return self._cascade(self.near_stages, self.near[s], fixed_point(d0, mask), mask, None)

    def far_field(self, d1: np.ndarray, near: np.ndarray, mask: np.ndarray, s: int) -> np.ndarray:
        """Denoised far layer in fixed point (int64, 0 outside ``mask``), from the decoded one and the
        denoised near layer."""
        from imcodec.vpcc.depthlut import fixed_point

        return self._cascade(self.far_stages, self.far[s], fixed_point(d1, mask), mask, near)

    def _cascade(self, stages, tables, y: np.ndarray, mask: np.ndarray, guide: np.ndarray | None) -> np.ndarray:
        """The stages one after the other, each over the canvas in ``self.threads`` bands of rows run
        side by side (the kernel releases the GIL; every band reads the whole input, so the output
        does not depend on the thread count). Two buffers take turns; both are 0 outside the mask."""
        from imcodec.vpcc.depthlut import stage_apply

        h = y.shape[0]
        bands = max(1, min(self.threads, h // 64))
        cuts = [h * b // bands for b in range(bands + 1)]
        spare = np.zeros_like(y)
        for stage, table in zip(stages, tables):
            args = _args(stage, y, mask, guide) + (table, spare)
            if bands == 1:
                stage_apply(*args, 0, h)
            else:
                pool = _pool(bands)
                for f in [pool.submit(stage_apply, *args, cuts[b], cuts[b + 1]) for b in range(bands)]:
                    f.result()
            y, spare = spare, y
        return y

    def denoise(self, d0: np.ndarray, d1: np.ndarray | None, mask: np.ndarray, max_value: int,
                qp: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Denoised integer images of the dtype of ``d0``/``d1``; pixels outside ``mask`` unchanged."""
        from imcodec.vpcc.depthlut import to_depth

        s = self.table_set(qp)
        m = np.ascontiguousarray(mask, dtype=np.bool_)
        n0 = self.near_field(d0, m, s)
        out0 = to_depth(n0, m, np.ascontiguousarray(d0), max_value)
        if d1 is None:
            return out0, None
        n1 = self.far_field(d1, n0, m, s)
        return out0, to_depth(n1, m, np.ascontiguousarray(d1), max_value)

    # ------------------------------------------------------------------------------------ storage

    def config(self) -> dict:
        return {"arch": ARCH, "qps": list(self.qps), "near_stages": [s.to_dict() for s in self.near_stages],
                "far_stages": [s.to_dict() for s in self.far_stages]}

    @classmethod
    def from_arrays(cls, config: dict, arrays) -> "LutDenoiser":
        """The model from its config and the int16 tables ``arrays["near.<qp>"]`` / ``["far.<qp>"]``
        (each the concatenation of that field's stage tables)."""
        near_stages = tuple(Stage.from_dict(d) for d in config["near_stages"])
        far_stages = tuple(Stage.from_dict(d) for d in config["far_stages"])
        qps = tuple(int(q) for q in config["qps"])
        sets = {}
        for name, stages in (("near", near_stages), ("far", far_stages)):
            sets[name] = []
            sizes = [s.size for s in stages]
            for qp in qps:
                raw = np.asarray(arrays[f"{name}.{qp}"])
                if raw.ndim != 1 or len(raw) != sum(sizes):
                    raise ValueError(f"{name} tables for QP {qp} hold {raw.size} entries, the stages need "
                                     f"{sum(sizes)}")
                sets[name].append([t.astype(np.int64) for t in np.split(raw, np.cumsum(sizes)[:-1])])
        return cls(qps, sets["near"], sets["far"], near_stages, far_stages)


HEADER = "imcodec_header"  # the npz member holding the JSON header


def weights_bytes(model: LutDenoiser, meta: dict[str, Any] | None = None) -> bytes:
    """The tables as an imcodec weights file: a compressed NumPy archive (no PyTorch needed to read
    it) whose ``imcodec_header`` member is the JSON header of :mod:`imcodec.learned.zoo` (format,
    version, task "denoise-depth", arch "dualpath-lut", config, meta), next to one int16 array per
    field and QP."""
    from imcodec.learned.zoo_header import FORMAT, FORMAT_VERSION, TASK_DENOISE

    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "task": TASK_DENOISE, "arch": ARCH, "factor": 1,
              "config": model.config(), "meta": json.loads(json.dumps(meta or {}, default=str))}
    arrays = {HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for name, sets in (("near", model.near), ("far", model.far)):
        for qp, tables in zip(model.qps, sets):
            arrays[f"{name}.{qp}"] = np.concatenate(tables).astype("<i2")
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _open_archive(data: bytes):
    """(archive, header dict) of a NumPy archive with an imcodec header, else None."""
    if not data.startswith(b"PK"):
        return None
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        if not hasattr(archive, "files") or HEADER not in archive.files:
            return None
        return archive, json.loads(bytes(archive[HEADER]).decode())
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, EOFError):
        return None


def lut_header(data: bytes) -> dict | None:
    """The JSON header of a LUT weights file, or None when ``data`` is not one."""
    opened = _open_archive(data)
    return None if opened is None else opened[1]


def read_lut(path: str | os.PathLike, data: bytes) -> tuple[LutDenoiser, dict] | None:
    """(model, header) when ``data`` is a LUT weights file (see :func:`weights_bytes`), None when it
    is not an archive with an imcodec header (e.g. a PyTorch weights file). InputError when the
    header or the tables are damaged or of another tool."""
    from imcodec.learned.zoo_header import check_header

    opened = _open_archive(data)
    if opened is None:
        return None
    archive, header = opened
    check_header(path, header, ("task", "arch", "config"))
    try:
        model = LutDenoiser.from_arrays(header["config"], {k: archive[k] for k in archive.files if k != HEADER})
    except (TypeError, ValueError, KeyError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: weights do not fit the {ARCH} architecture ({first})") from None
    return model, header


# ---------------------------------------------------------------------------------------- fitting

ProgressFn = Callable[[int, int, str], None]


def _fit_field(stages, inputs, targets, masks, guides, min_count):
    """Tables of one field fitted stage after stage on (fixed-point input, target, mask, guide)
    canvases; returns (tables, final fixed-point outputs)."""
    from imcodec.vpcc.depthlut import CORRECTION_FX, accumulate, apply_table

    tables, ys = [], list(inputs)
    for stage in stages:
        sums = np.zeros(stage.size, dtype=np.int64)
        counts = np.zeros(stage.size, dtype=np.int64)
        keys = [_run(stage, y, m, g) for y, m, g in zip(ys, masks, guides)]
        for k, y, t in zip(keys, ys, targets):
            accumulate(k, y, t, sums, counts)
        table = np.zeros(stage.size, dtype=np.int64)
        seen = counts >= max(1, min_count)
        table[seen] = np.rint(sums[seen] / counts[seen]).astype(np.int64)
        table = np.clip(table, -CORRECTION_FX, CORRECTION_FX)
        tables.append(table)
        ys = [apply_table(y, k, table) for y, k in zip(ys, keys)]
    return tables, ys


def fit_lut(pairs: list, qp_of_rate: dict[str, int], min_count: int = 5,
            progress: ProgressFn | None = None) -> tuple[LutDenoiser, dict[str, Any]]:
    """Fit the tables on depth pairs (:class:`imcodec.learned.enhance_data.DepthPair`), one set per
    QP of the pairs' rates. Returns (model, summary with per-QP depth MSE before/after on the
    training pairs)."""
    from imcodec.learned.enhance_data import dihedral
    from imcodec.vpcc.depthlut import FX, fixed_point, to_depth

    if not pairs:
        raise UsageError("no training pairs")
    by_qp: dict[int, list] = {}
    for p in pairs:
        by_qp.setdefault(qp_of_rate[p.rate], []).append(p)
    qps = tuple(sorted(by_qp, reverse=True))
    near_sets, far_sets, report = [], [], {}
    for i, qp in enumerate(qps):
        group = by_qp[qp]
        masks, d0s, d1s, t0s, t1s = [], [], [], [], []
        for p in group:
            for k in range(8):
                m = dihedral(p.mask, k).astype(np.bool_)
                masks.append(m)
                d0s.append(fixed_point(dihedral(p.dec0, k), m))
                d1s.append(fixed_point(dihedral(p.dec1, k), m))
                t0s.append(fixed_point(dihedral(p.true0, k), m))
                t1s.append(fixed_point(dihedral(p.true1, k), m))
        near, n0s = _fit_field(NEAR_STAGES, d0s, t0s, masks, [None] * len(masks), min_count)
        far, n1s = _fit_field(FAR_STAGES, d1s, t1s, masks, n0s, min_count)
        near_sets.append(near)
        far_sets.append(far)
        mse = {}
        for name, dec, out, true in (("d0", d0s, n0s, t0s), ("d1", d1s, n1s, t1s)):
            e_in = e_out = n = 0.0
            for m, a, b, t in zip(masks[::8], dec[::8], out[::8], true[::8]):  # untransformed canvases
                ta = t[m] // FX
                e_in += float(((a[m] // FX - ta) ** 2).sum())
                rb = to_depth(b, m, np.zeros(m.shape, dtype=np.int64), 1 << 20)[m]
                e_out += float(((rb - ta) ** 2).sum())
                n += float(m.sum())
            mse[f"{name}_mse_decoded"] = e_in / max(n, 1.0)
            mse[f"{name}_mse_denoised"] = e_out / max(n, 1.0)
        report[str(qp)] = mse
        if progress is not None:
            progress(i + 1, len(qps), f"tables for QP {qp}")
    return LutDenoiser(qps, near_sets, far_sets), {"qps": list(qps), "train_mse": report}

"""The library API: the one place that joins io, codecs and metrics.

Every CLI command is a thin wrapper over one function here, so scripts and notebooks get the same
behaviour. Functions return plain dicts/lists that are JSON-friendly (floats may be inf). The
functions live in :mod:`imcodec.api.coding` (files and streams), :mod:`imcodec.api.measure`
(metrics, BD-rate, synthetic data, batch evaluation, rendering) and :mod:`imcodec.api.learned`;
import them from here.
"""

from __future__ import annotations

from imcodec.api._base import PathLike
from imcodec.api.coding import (
    cloud_info,
    convert,
    count_duplicates,
    decode,
    encode,
    info,
    motion,
    parse_frame_range,
)
from imcodec.api.learned import (
    restore,
    train_denoise_depth,
    train_denoise_lut,
    train_restore,
    train_upsample,
    upsample,
)
from imcodec.api.measure import (
    bdrate,
    bench_check,
    bench_report,
    bench_run,
    metrics,
    render,
    resolve_peak,
    synth,
)

__all__ = [
    "PathLike",
    "bdrate",
    "bench_check",
    "bench_report",
    "bench_run",
    "cloud_info",
    "convert",
    "count_duplicates",
    "decode",
    "encode",
    "info",
    "metrics",
    "motion",
    "parse_frame_range",
    "render",
    "resolve_peak",
    "restore",
    "synth",
    "train_denoise_depth",
    "train_denoise_lut",
    "train_restore",
    "train_upsample",
    "upsample",
]

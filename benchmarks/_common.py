"""Helpers shared by the benchmark scripts: locating ../shared/data, timing, writing JSON results."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("IMCODEC_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"

SOLDIER = [DATA / f"soldier_q08_{i:04d}.ply" for i in (536, 537, 538)]
BASKETBALL = [DATA / f"basketball_player_{i:08d}_vox10.ply" for i in (1, 2)]


def require_data() -> None:
    if not DATA.is_dir():
        raise SystemExit(f"benchmark data not found at {DATA} (set IMCODEC_DATA)")


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    """Minimum wall time of ``repeat`` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def machine() -> dict:
    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine()}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path}")
    return path

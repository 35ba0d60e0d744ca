"""Run every benchmark script in turn (``make bench``); each writes its JSON to benchmarks/results/.

``python benchmarks/run_all.py [NAME ...]`` runs the named ones only (e.g. ``ply_io octree_vs_tmc13``).
Exits non-zero when any script failed, after running the rest; prints a one-line summary per script.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["ply_io", "metrics_vs_pc_error", "octree_vs_tmc13", "octree_color", "vpcc_rd", "vpcc_inter", "vpcc_hint_designs",
         "vpcc_enhance", "upsample", "bench_scaling"]


def main(argv: list[str]) -> int:
    names = argv or [n for n in ORDER if (HERE / f"{n}.py").is_file()]
    unknown = [n for n in names if not (HERE / f"{n}.py").is_file()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have {', '.join(ORDER)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        t = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / f"{name}.py")])
        print(f"== {name}: {'ok' if rc == 0 else f'exit {rc}'} in {time.perf_counter() - t:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

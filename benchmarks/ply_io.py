"""PLY read/write speed on the shared ~800k-point frames (target: <= 0.3 s each), against plyfile.

    python benchmarks/ply_io.py            # writes benchmarks/results/ply_io.json
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BASKETBALL, DATA, SOLDIER, best_of, require_data, write_result  # noqa: E402

from imcodec.io.ply import read_ply, write_ply  # noqa: E402
from imcodec.types import PlyFormat  # noqa: E402

TARGET_S = 0.3


def main() -> int:
    require_data()
    try:
        import plyfile
    except ImportError:
        plyfile = None
    rows = []
    files = [SOLDIER[0], BASKETBALL[0], DATA / "reference" / "basketball1_tmc13_raht_r06.ply"]
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            t_read, cloud = best_of(lambda: read_ply(f))
            out = Path(tmp) / "w.ply"
            t_write, _ = best_of(lambda: write_ply(cloud, out))
            t_ascii, _ = best_of(lambda: write_ply(cloud, Path(tmp) / "a.ply", PlyFormat.ascii), repeat=1)
            t_ascii_read, _ = best_of(lambda: read_ply(Path(tmp) / "a.ply"), repeat=1)
            row = {"file": f.name, "points": len(cloud), "read_s": round(t_read, 4), "write_s": round(t_write, 4),
                   "ascii_write_s": round(t_ascii, 3), "ascii_read_s": round(t_ascii_read, 3),
                   "meets_target": t_read <= TARGET_S and t_write <= TARGET_S}
            if plyfile is not None:
                row["plyfile_read_s"] = round(best_of(lambda: plyfile.PlyData.read(str(f), mmap=False))[0], 4)
                data = plyfile.PlyData.read(str(f))
                row["plyfile_write_s"] = round(best_of(lambda: data.write(str(Path(tmp) / "p.ply")))[0], 4)
            rows.append(row)
            print(row)
    write_result("ply_io", {"target_s": TARGET_S, "rows": rows})
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

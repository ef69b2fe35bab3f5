"""Soak: N compiles in one process; RSS and open files after each, and whether they grow.

    .venv/bin/python benchmarks/soak.py --n 30          # prune + int8 on yolov8n.yaml at 160

Memory "grows" when the RSS of the last third of the iterations is more than `--tolerance` MB above
that of the second third (the first third includes warm-up: imports, caches, allocator pools).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from yolocc.compiler.api import Compiler  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--calib", default=str(ROOT / "examples/digits/data/calib/images"))
    ap.add_argument("--tolerance", type=float, default=50.0, help="MB")
    ap.add_argument("--out", default=str(ROOT / "runs/bench/soak.json"))
    args = ap.parse_args()
    compiler = Compiler()
    rows = []
    with tempfile.TemporaryDirectory(prefix="yolocc-soak-") as tmp:
        # Calibration ranges are cached (as in normal use); compiles are not, so every one runs the passes.
        os.environ["YOLOCC_CACHE_DIR"] = str(Path(tmp) / "cache")
        for i in range(1, args.n + 1):
            t0 = time.perf_counter()
            compiler.compile(args.model, ["prune:0.25", "int8"], Path(tmp) / "m.onnx", imgsz=args.imgsz,
                             calib=args.calib, calib_n=16, latency_runs=2, reports=[Path(tmp) / "r.json"])
            rows.append({"i": i, "rss_mb": round(rss_mb(), 1), "open_files": open_files(),
                         "s": round(time.perf_counter() - t0, 2)})
            print(f"{i:3d}  rss {rows[-1]['rss_mb']:8.1f} MB  open files {rows[-1]['open_files']:4d}  "
                  f"{rows[-1]['s']:6.2f} s", flush=True)
    third = max(1, len(rows) // 3)
    mid = statistics.median(r["rss_mb"] for r in rows[third:2 * third] or rows)
    last = statistics.median(r["rss_mb"] for r in rows[-third:])
    growth = last - mid
    files = rows[-1]["open_files"] - rows[min(third, len(rows) - 1)]["open_files"]
    verdict = {"n": args.n, "rss_mid_mb": mid, "rss_last_mb": last, "rss_growth_mb": round(growth, 1),
               "open_files_growth": files, "memory_grows": growth > args.tolerance, "files_leak": files > 0}
    print(json.dumps(verdict))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"verdict": verdict, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

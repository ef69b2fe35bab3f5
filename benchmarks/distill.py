"""Benchmark: recovery after aggressive pruning, plain fine-tuning against distillation.

    .venv/bin/python benchmarks/distill.py [--epochs 5] [--ratio 0.5] [--out runs/bench/distill.json]

On the bundled digits detector, in one run and with the same seed: the baseline, prune:RATIO,
prune + finetune for N epochs, prune + distill for N epochs (teacher: the unpruned model). Writes
mAP50-95 of each under the keys baseline, pruned, finetune, distill.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

from yolocc.compiler.api import Compiler  # noqa: E402

MODEL = "examples/digits/weights/yolov8n-digits.pt"
DATA = "examples/digits/data/digits.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--out", default="runs/bench/distill.json")
    args = ap.parse_args()
    if not Path(args.data).exists():
        print(f"{args.data} is missing: run .venv/bin/python examples/digits/make_dataset.py", file=sys.stderr)
        return 2
    compiler = Compiler()
    result: dict = {"model": args.model, "ratio": args.ratio, "epochs": args.epochs, "seconds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for key, recovery in (("finetune", "finetune"), ("distill", "distill")):
            t0 = time.perf_counter()
            res = compiler.compile(args.model, [f"prune:{args.ratio}", f"{recovery}:epochs={args.epochs}"],
                                   os.path.join(tmp, f"{key}.onnx"), data=args.data, latency_runs=1)
            maps = {s.name: s.metrics["mAP50-95"] for s in res.report.stages}
            result.update(baseline=maps["input"], pruned=maps["prune"])
            result[key] = maps[recovery]
            result["seconds"][key] = round(time.perf_counter() - t0, 1)
    lost = result["baseline"] - result["pruned"]
    for key in ("finetune", "distill"):
        result[f"{key}_recovered"] = round((result[key] - result["pruned"]) / lost, 3) if lost > 0 else None
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: recovery after aggressive pruning, plain fine-tuning against distillation.

    .venv/bin/python benchmarks/distill.py [--epochs 5] [--ratio 0.5] [--out runs/bench/distill.json]

On the bundled digits detector, in one run and with the same seed: the baseline, prune:RATIO,
prune + finetune for N epochs, prune + distill for N epochs (teacher: the unpruned model). Writes
mAP50-95 of each under the keys baseline, pruned, finetune, distill.

With --task classify it does the same on the digits classifier (top-1) and adds the ablation of
logit standardization and the curriculum temperature (distill_ls{0,1}_ct{0,1}); it writes
runs/bench/distill-cls.json by default.
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

MODELS = {"detect": ("examples/digits/weights/yolov8n-digits.pt", "examples/digits/data/digits.yaml", "mAP50-95"),
          "classify": ("examples/digits/weights/yolov8n-cls-digits.pt", "examples/digits/data/cls", "top1")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--task", choices=sorted(MODELS), default="detect")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model, data, metric = MODELS[args.task]
    out = args.out or ("runs/bench/distill.json" if args.task == "detect" else "runs/bench/distill-cls.json")
    if not Path(data).exists():
        print(f"{data} is missing: run .venv/bin/python examples/digits/make_dataset.py", file=sys.stderr)
        return 2
    runs = {"finetune": "finetune", "distill": "distill"}
    if args.task == "classify":
        runs = {"finetune": "finetune", "distill": "distill",  # distill = both techniques on
                "distill_ls0_ct1": "distill:standardize=false", "distill_ls1_ct0": "distill:gamma=1.0",
                "distill_ls0_ct0": "distill:standardize=false,gamma=1.0"}
    compiler = Compiler()
    result: dict = {"model": model, "metric": metric, "ratio": args.ratio, "epochs": args.epochs, "seconds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for key, recovery in runs.items():
            sep = "," if ":" in recovery else ":"
            t0 = time.perf_counter()
            res = compiler.compile(model, [f"prune:{args.ratio}", f"{recovery}{sep}epochs={args.epochs}"],
                                   os.path.join(tmp, f"{key}.onnx"), data=data, latency_runs=1)
            scores = {s.name: s.metrics[metric] for s in res.report.stages}
            result.update(baseline=scores["input"], pruned=scores["prune"])
            result[key] = scores[recovery.split(":")[0]]
            result["seconds"][key] = round(time.perf_counter() - t0, 1)
    lost = result["baseline"] - result["pruned"]
    for key in runs:
        result[f"{key}_recovered"] = round((result[key] - result["pruned"]) / lost, 3) if lost > 0 else None
    print(json.dumps(result, indent=2))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

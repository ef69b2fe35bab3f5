"""Benchmark: recovery after aggressive pruning, plain fine-tuning against distillation.

    .venv/bin/python benchmarks/distill.py [--epochs 3] [--ratio 0.5] [--seeds 0 1 2] [--split test]
                                           [--task detect|classify] [--data-dir examples/digits/data]
                                           [--out runs/bench/distill.json]

On the bundled digits detector, in one run: the baseline, prune:RATIO, prune + finetune for N epochs,
prune + distill for N epochs (teacher: the unpruned model), each recovery once per seed (a seed
fixes data order, augmentation and initialisation of the projector; finetune and distill of one seed
share it). Checkpoints are picked on val by Ultralytics' trainer; accuracy is measured on --split
(default ``test``: held-out canvases never used to pick a checkpoint or a default). Writes the mean
over seeds under the keys baseline, pruned, finetune, distill; ``per_seed`` and ``std`` hold the rest.

With --task classify it does the same on the digits classifier (top-1) and adds ablations of the
seed paper's logit standardization (ls) and curriculum temperature (ct), distill_ls{0,1}_ct{0,1}
(the default distill is ls0_ct1), and of the optimizer (distill_adamw: AdamW with Ultralytics'
clip 10 instead of the default Adam with clip 1.0);
it writes runs/bench/distill-cls.json by default.
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

os.environ.setdefault("YOLO_OFFLINE", "1")

from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.interfaces import EVAL_SPLITS  # noqa: E402

#: task: (model, its data inside the --data-dir folder, metric)
MODELS = {"detect": ("examples/digits/weights/yolov8n-digits.pt", "digits.yaml", "mAP50-95"),
          "classify": ("examples/digits/weights/yolov8n-cls-digits.pt", "cls", "top1")}
RECOVERIES = {
    "detect": {"finetune": "finetune", "distill": "distill"},
    # distill = the defaults: curriculum temperature on, logit standardization off, Adam with clip 1.0
    "classify": {"finetune": "finetune", "distill": "distill",
                 "distill_ls1_ct1": "distill:standardize=true", "distill_ls1_ct0": "distill:standardize=true,gamma=1.0",
                 "distill_ls0_ct0": "distill:gamma=1.0", "distill_adamw": "distill:optimizer=AdamW,clip=10"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--split", choices=EVAL_SPLITS, default="test", help="split accuracy is measured on")
    ap.add_argument("--task", choices=sorted(MODELS), default="detect")
    ap.add_argument("--only", nargs="+", metavar="KEY", help="run only these recoveries (default: all)")
    ap.add_argument("--data-dir", default="examples/digits/data", help="the digits data folder (default: "
                    "%(default)s; a smaller copy: examples/digits/make_dataset.py --out DIR --n-val 16 ...)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model, data, metric = MODELS[args.task]
    data = os.path.join(args.data_dir, data)
    out = args.out or ("runs/bench/distill.json" if args.task == "detect" else "runs/bench/distill-cls.json")
    if not Path(data).exists():
        print(f"{data} is missing: run .venv/bin/python examples/digits/make_dataset.py", file=sys.stderr)
        return 2
    runs = {k: v for k, v in RECOVERIES[args.task].items() if not args.only or k in args.only}
    if not runs:
        print(f"--only: no such recovery (choose from {', '.join(RECOVERIES[args.task])})", file=sys.stderr)
        return 2
    compiler = Compiler()
    result: dict = {"model": model, "metric": metric, "split": args.split, "ratio": args.ratio,
                    "epochs": args.epochs, "seeds": args.seeds, "passes": runs, "seconds": {}, "per_seed": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for key, recovery in runs.items():
            sep = "," if ":" in recovery else ":"
            for seed in args.seeds:
                t0 = time.perf_counter()
                # trust_model: the bundled fixtures; the classifier's .pt is a full pickle (its transforms)
                res = compiler.compile(model, [f"prune:{args.ratio}", f"{recovery}{sep}epochs={args.epochs},seed={seed}"],
                                       os.path.join(tmp, f"{key}.onnx"), data=data, eval_split=args.split,
                                       latency_runs=1, trust_model=True)
                scores = {s.name: s.metrics[metric] for s in res.report.stages}
                result.update(baseline=scores["input"], pruned=scores["prune"])
                result["per_seed"].setdefault(key, []).append(scores[recovery.split(":")[0]])
                result["seconds"].setdefault(key, []).append(round(time.perf_counter() - t0, 1))
                print(f"{key} seed {seed}: {result['per_seed'][key][-1]} ({result['seconds'][key][-1]} s)",
                      file=sys.stderr)
    lost = result["baseline"] - result["pruned"]
    result["std"] = {}
    for key, values in result["per_seed"].items():
        result[key] = round(statistics.mean(values), 4)
        result["std"][key] = round(statistics.stdev(values), 4) if len(values) > 1 else None
        result[f"{key}_recovered"] = round((result[key] - result["pruned"]) / lost, 3) if lost > 0 else None
    print(json.dumps(result, indent=2))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

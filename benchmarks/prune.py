"""Benchmark: `-p prune:RATIO` on several models, unpruned vs pruned ONNX measured in one run.

    .venv/bin/python benchmarks/prune.py [--ratio 0.25] [--imgsz 640] [--runs 30] [--out runs/bench/prune.json]

For each model it compiles with yolocc (the report times the input and the pruned ONNX
round-robin in the same onnxruntime run) and prints params, MACs and latency ratios.
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

MODELS = ["yolov8n.yaml", "yolov8s.yaml", "yolov8n-cls.yaml", "yolo11n.yaml", "resnet18 (torchvision)"]


def _resnet18(folder: str) -> str:
    import torch
    import torchvision

    torch.manual_seed(0)
    path = os.path.join(folder, "resnet18.pt")
    torch.save(torchvision.models.resnet18(weights=None).eval(), path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratio", type=float, default=0.25)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--out", default="runs/bench/prune.json")
    args = ap.parse_args()
    compiler = Compiler()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            source = _resnet18(tmp) if name.startswith("resnet18") else name
            imgsz = 224 if name.startswith("resnet18") or "-cls" in name else args.imgsz
            t0 = time.perf_counter()
            res = compiler.compile(source, [f"prune:{args.ratio}"], os.path.join(tmp, "out.onnx"),
                                   imgsz=imgsz, latency_runs=args.runs)
            base, pruned = res.report.stages[0], res.report.stages[-1]
            rows.append({"model": name, "imgsz": imgsz, "params": base.params, "params_pruned": pruned.params,
                         "param_reduction": round(1 - pruned.params / base.params, 4),
                         "macs": base.macs, "macs_pruned": pruned.macs,
                         "latency_ms": base.latency_ms, "latency_ms_pruned": pruned.latency_ms,
                         "latency_ratio": round(pruned.latency_ms / base.latency_ms, 3),
                         "outputs_equal": res.report.artifact["outputs"] == _base_outputs(compiler, source, imgsz, tmp),
                         "compile_s": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"\nprune:{args.ratio}, onnxruntime CPU, median of {args.runs} runs, unpruned and pruned timed round-robin")
    print(f"{'model':<24}{'imgsz':>6}{'params':>16}{'MACs':>20}{'latency ms':>20}{'ratio':>8}{'same I/O':>10}")
    for r in rows:
        print(f"{r['model']:<24}{r['imgsz']:>6}{r['params'] / 1e6:>7.2f}M->{r['params_pruned'] / 1e6:.2f}M"
              f"{r['macs'] / 1e9:>10.2f}G->{r['macs_pruned'] / 1e9:.2f}G"
              f"{r['latency_ms']:>11.1f}->{r['latency_ms_pruned']:.1f}{r['latency_ratio']:>8.2f}{str(r['outputs_equal']):>10}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _base_outputs(compiler, source, imgsz, tmp):
    res = compiler.compile(source, [], os.path.join(tmp, "base.onnx"), imgsz=imgsz, measure=False)
    return res.report.artifact["outputs"]


if __name__ == "__main__":
    sys.exit(main())

"""Speed toward the hardware limit on the CPU: YOLOv8n at 640 on onnxruntime, with the efficiency figure.

    .venv/bin/python benchmarks/speed.py [--model yolov8n.yaml] [--imgsz 640] [--runs 30] [--repeat 3]
                                         [--recipe examples/recipes/cpu-fast.yaml] [--out runs/bench/speed.json]

Rows, all timed round-robin in one process (onnxruntime CPU, thread spinning off), `--repeat` times:
  fp32        Ultralytics' own ONNX export of the same model
  int8        yolocc -p int8
  prune_int8  yolocc -p prune:0.25 -p int8
  fast        the structural passes of the cpu-fast recipe (its training passes left out; pruning keeps
              the decisions it makes when recovery follows, i.e. the head's inner convs are pruned)
Each row gets its MACs, GMAC/s and the percentage of the machine's int8 ceiling (compiler/ceiling.py:
one large MatMulInteger in onnxruntime). A YAML model has random weights: right for latency, not for
accuracy (the accuracy of the recipe is measured with recovery on the digits detector, see README).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from yolocc.compiler import ceiling, measure, onnxgraph  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.params import PassSpec  # noqa: E402
from yolocc.compiler.recipe import load_recipe  # noqa: E402

CALIB = ROOT / "examples/digits/data/calib/images"


def ultralytics_fp32(model: str, imgsz: int, folder: str) -> bytes:
    """Ultralytics' own ONNX export (opset 17, simplified, static shape)."""
    from ultralytics import YOLO

    src = model
    if Path(model).suffix == ".pt":
        src = os.path.join(folder, Path(model).name)
        shutil.copy(model, src)
    cwd = os.getcwd()
    os.chdir(folder)  # a model YAML is exported into the working folder
    try:
        out = YOLO(src).export(format="onnx", imgsz=imgsz, opset=17, simplify=True, dynamic=False, verbose=False)
        return Path(out).read_bytes()
    finally:
        os.chdir(cwd)


def structural_passes(compiler: Compiler, recipe: str) -> list[PassSpec]:
    """The recipe's passes without its training passes; a prune with ``protect_head=auto`` that had
    recovery after it keeps that choice (head opened)."""
    specs, _ = load_recipe(recipe)
    recovers = [compiler.registry.pass_class(s.name).recovers for s in specs]
    out = []
    for i, spec in enumerate(specs):
        if recovers[i]:
            continue
        if spec.name == "prune" and any(recovers[i + 1:]) \
                and compiler.registry.pass_class("prune").from_spec(spec).args["protect_head"] == "auto":
            spec = PassSpec("prune", {**spec.args, "protect_head": "false"}, spec.positional)
        out.append(spec)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--calib", default=str(CALIB))
    ap.add_argument("--calib-n", type=int, default=128)
    ap.add_argument("--recipe", default=str(ROOT / "examples/recipes/cpu-fast.yaml"))
    ap.add_argument("--runs", type=int, default=30, help="timed rounds per repeat")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs/bench/speed.json"))
    args = ap.parse_args()

    compiler = Compiler()
    fast = structural_passes(compiler, args.recipe)
    rows = {"fp32": None, "int8": ["int8"], "prune_int8": ["prune:0.25", "int8"], "fast": fast}
    models: dict[str, bytes] = {}
    compile_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="yolocc-speed-") as tmp:
        models["fp32"] = ultralytics_fp32(args.model, args.imgsz, tmp)
        for name, passes in rows.items():
            if passes is None:
                continue
            t0 = time.perf_counter()
            res = compiler.compile(args.model, passes, None, imgsz=args.imgsz, calib=args.calib,
                                   calib_n=args.calib_n, measure=False)
            compile_s[name] = round(time.perf_counter() - t0, 1)
            models[name] = res.ir.onnx_model.SerializeToString()
    _, runtime = compiler.target("ort-cpu")
    ceil = runtime.int8_ceiling(args.threads)
    x = np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), dtype=np.float32)
    load_before = os.getloadavg()[0]
    repeats = [measure.latencies_ms(runtime, list(models.values()), x, runs=args.runs, threads=args.threads)
               for _ in range(args.repeat)]
    load_after = os.getloadavg()[0]
    names = list(models)
    ms = {n: statistics.median(r[i] for r in repeats) for i, n in enumerate(names)}
    per_model = {}
    for i, n in enumerate(names):
        macs = onnxgraph.macs(onnx.load_from_string(models[n]))
        gmacs, pct = ceiling.efficiency(macs, ms[n], ceil["gmacs"])
        per_model[n] = {"latency_ms": ms[n], "macs": macs, "gmacs_per_s": gmacs, "pct_of_ceiling": pct,
                        "speedup_vs_fp32": round(ms["fp32"] / ms[n], 3),
                        "speedup_per_repeat": [round(r[0] / r[i], 3) for r in repeats],
                        "size_bytes": len(models[n]), **({"compile_s": compile_s[n]} if n in compile_s else {})}
    result = {
        "model": args.model, "imgsz": args.imgsz, "isa": measure.cpu_isa(), "ceiling": ceil,
        "runtime": runtime.describe(), "threads": args.threads or "default",
        "timing": {"order": "round-robin", "runs": args.runs, "repeat": args.repeat, "statistic": "median",
                   "spinning": "off", "loadavg_1min": [round(load_before, 2), round(load_after, 2)]},
        "fast_passes": [str(s) for s in fast], "recipe": os.path.relpath(args.recipe, ROOT),
        "fp32_ms": ms["fp32"], "int8_ms": ms["int8"], "prune_int8_ms": ms["prune_int8"], "fast_ms": ms["fast"],
        "fast_speedup": round(ms["fp32"] / ms["fast"], 3), "models": per_model,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.model} at {args.imgsz}; CPU ISA {result['isa']}; int8 ceiling {ceil['gmacs']} GMAC/s "
          f"({ceil['op']}); {args.repeat}x{args.runs} round-robin rounds; 1-min load {load_before:.2f} -> {load_after:.2f}")
    print(f"{'model':<12}{'ms':>9}{'vs fp32':>9}{'GMACs':>8}{'GMAC/s':>9}{'% ceil':>8}  per repeat")
    for n, r in per_model.items():
        print(f"{n:<12}{r['latency_ms']:>9.2f}{r['speedup_vs_fp32']:>9.2f}{r['macs'] / 1e9:>8.2f}"
              f"{r['gmacs_per_s']:>9.1f}{r['pct_of_ceiling']:>8.1f}  {r['speedup_per_repeat']}")
    print(f"fast = {' '.join('-p ' + str(s) for s in fast)}: {result['fast_speedup']:.2f}x over the FP32 export")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The accuracy budget on the digits detector: `--max-drop` end to end, then the chosen model, `-p int8`
alone and the FP32 export timed side by side.

    .venv/bin/python benchmarks/budget.py                   # --max-drop 1.0, writes runs/bench/budget.json
    .venv/bin/python benchmarks/budget.py --time-only runs/bench/budget.onnx   # re-time on a quiet machine
    .venv/bin/python benchmarks/budget.py --max-macs 0.1 --runs 2 --repeat 1   # int8 trials only: seconds

The search picks its model on the val split; `baseline`, `final` and `drop_pts` are on the held-out
test split. Latencies: the three ONNX files in one onnxruntime process, round-robin, thread spinning
off, `--repeat` times; the CPU's ISA is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from yolocc.compiler import lowering, measure  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.budget import Budget  # noqa: E402
from yolocc.compiler.options import CompileOptions  # noqa: E402

DIGITS = ROOT / "examples/digits"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DIGITS / "weights/yolov8n-digits.pt"))
    ap.add_argument("--data", default=str(DIGITS / "data/digits.yaml"))
    ap.add_argument("--calib", default=str(DIGITS / "data/calib/images"))
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--max-macs", type=float, default=None,
                    help="the deepest MAC reduction the search tries (below the ladder's first step: only the "
                         "int8 trials, no training; a quick check)")
    ap.add_argument("--runs", type=int, default=100, help="timed rounds per repeat")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "runs/bench/budget.json"))
    ap.add_argument("--onnx", default=str(ROOT / "runs/bench/budget.onnx"), help="the chosen model")
    ap.add_argument("--time-only", metavar="ONNX", help="no search: time the FP32 export, `-p int8` alone and ONNX")
    args = ap.parse_args()
    if args.time_only:
        return time_only(args)

    result = run_budget(args.model, args.data, args.calib, args.max_drop, args.max_macs, args.runs, args.repeat,
                        onnx_out=args.onnx)
    b, final, ms, wall = result.pop("_budget"), result.pop("_final"), result["latency_ms"], result["wall_s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"CPU ISA: {result['isa']}; onnxruntime, {args.repeat}x{args.runs} round-robin rounds")
    print(f"chosen: {' '.join('-p ' + p for p in final['passes'])}")
    print(f"test {result['metric']}: baseline {result['baseline']:.4f} -> final {result['final']:.4f} "
          f"({-result['drop_pts']:+.2f} pt; val {-final['drop_pts_val']:+.2f} pt, budget {args.max_drop})")
    print(f"latency: fp32 {ms['fp32']:.2f} ms, int8 alone {ms['int8']:.2f} ms, final {ms['final']:.2f} ms -> "
          f"{result['speedup_vs_fp32']:.2f}x vs fp32, {result['speedup_vs_int8']:.2f}x vs int8 "
          f"(per repeat {result['speedup_vs_int8_per_repeat']})")
    print(f"MACs ratio {result['macs_ratio']}, wall {wall / 60:.1f} min, {len(b['candidates'])} candidates")
    for c in b["candidates"]:
        if c["val"] is None:
            print(f"  {c['name']:<40} not evaluated  {c['latency_ms']} ms")
            continue
        print(f"  {c['name']:<40} val {c['val']:.4f} test {c['test'] if c['test'] is not None else '-'} "
              f"drop {c['drop_pts']:+.2f} pt  {c['latency_ms']} ms  within={c['within']}")
    print(f"wrote {args.out}")
    return 0


def run_budget(model: str, data: str, calib: str, max_drop: float, max_macs: float | None = None, runs: int = 100,
               repeat: int = 3, onnx_out: str | None = None, trust_model: bool = False) -> dict:
    """``--max-drop`` on ``model`` end to end, then the FP32 export, the "int8 alone" candidate and the chosen
    model timed side by side (one onnxruntime process, round-robin, ``repeat`` x ``runs`` rounds).

    Returns the JSON row (``baseline``/``final``/``drop_pts`` on the test split; ``val``; ``latency_ms``;
    speedups; ``chosen``; ``wall_s`` in seconds; ``candidates``) plus ``_budget`` (the report's budget
    section) and ``_final`` (its chosen candidate) for the caller to print from. Raises ``BudgetNotMet``
    when no candidate fits."""
    import numpy as np

    t0 = time.perf_counter()
    compiler = Compiler()
    opts = CompileOptions(data=data, calib=calib, max_drop=max_drop, max_macs=max_macs, latency_runs=runs,
                          trust_model=trust_model)

    def progress(what: str, done: int, total: int) -> None:
        if total > 50 and done not in (1, total):  # per-image counters: their first and last step only
            return
        print(f"[{time.perf_counter() - t0:7.0f} s] {what.replace(chr(9), ': ')}: {done}/{total}", file=sys.stderr, flush=True)

    ir, report = Budget(compiler, opts, compiler.registry.strategy(opts.search), progress).search(model)
    wall = time.perf_counter() - t0
    chosen_onnx = lowering.onnx_bytes(ir)
    if onnx_out:
        Path(onnx_out).parent.mkdir(parents=True, exist_ok=True)
        Path(onnx_out).write_bytes(chosen_onnx)
    b = report.budget
    by_name = {s.name: s for s in report.stages}
    models = {"fp32": by_name["input"].onnx, "int8": by_name["int8 alone"].onnx, "final": chosen_onnx}
    _, runtime = compiler.target(opts.target)
    x = np.random.default_rng(0).random(ir.input.shape, dtype=np.float32)
    repeats = [measure.latencies_ms(runtime, list(models.values()), x, runs=runs) for _ in range(repeat)]
    ms = {k: statistics.median(r[i] for r in repeats) for i, k in enumerate(models)}
    final = b["final"]
    int8 = next(c for c in b["candidates"] if c["name"] == "int8 alone")
    return {
        "isa": measure.cpu_isa(), "max_drop": max_drop, "split": "test", "metric": b["metric"],
        "baseline": b["baseline"]["test"], "final": final["test"],
        "drop_pts": round((b["baseline"]["test"] - final["test"]) * 100, 3),
        "int8_test": int8["test"],
        "val": {"baseline": b["baseline"]["val"], "final": final["val"], "drop_pts": final["drop_pts_val"]},
        "latency_ms": ms, "speedup_vs_fp32": round(ms["fp32"] / ms["final"], 3),
        "speedup_vs_int8": round(ms["int8"] / ms["final"], 3),
        "speedup_vs_int8_per_repeat": [round(r[1] / r[2], 3) for r in repeats],
        "macs_ratio": final["macs_ratio"], "chosen": final["passes"], "wall_s": round(wall, 1),
        "candidates": b["candidates"], "_budget": b, "_final": final,
    }


def time_only(args) -> int:
    """The FP32 export, `-p int8` alone and a chosen model, round-robin in one process."""
    import numpy as np

    compiler = Compiler()
    _, runtime = compiler.target("ort-cpu")
    fp32 = lowering.onnx_bytes(compiler.load(args.model))
    int8 = lowering.onnx_bytes(compiler.compile(args.model, ["int8"], None, calib=args.calib, measure=False).ir)
    chosen = Path(args.time_only).read_bytes()
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    reps = [measure.latencies_ms(runtime, [fp32, int8, chosen], x, runs=args.runs) for _ in range(args.repeat)]
    print(f"CPU ISA: {measure.cpu_isa()}; onnxruntime, {args.repeat}x{args.runs} round-robin rounds")
    for f, i, c in reps:
        print(f"fp32 {f:.2f} ms, int8 alone {i:.2f} ms, chosen {c:.2f} ms: {f / c:.2f}x vs fp32, {i / c:.2f}x vs int8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

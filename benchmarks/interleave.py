"""How much the timing schedule moves a latency and a speed-up: each model timed in turns of
``--block`` runs in a row, round-robin with the others, each run's time kept by its place in the turn.

    .venv/bin/python benchmarks/interleave.py [--model examples/digits/weights/yolov8n-digits.pt]
        [--imgsz 160] [--target ort-cpu|openvino] [--block 6] [--rounds 60] [--threads 2]
        [--calib examples/digits/data/calib/images] [--out runs/bench/interleave.json]

Rows, all compiled by yolocc for ``--target`` and run on its runtime in this one process:
  fp32      no passes (the float export)
  int8      -p int8
  cpu-fast  the cpu-fast recipe's structural passes: -p act:relu -p prune:0.35,protect_head=false -p int8

The first run of a turn follows another model; the later ones follow the same model. yolocc's own
timing by default (the report and the budget search with ``--latency-turn 1``, ``benchmarks/speed.py``
and ``benchmarks/openvino.py``) is the first run of a turn of one; ``--latency-turn N`` times the
last of N; a loop that runs one model (a video pipeline, OpenVINO's benchmark_app,
onnxruntime_perf_test) is the last. The table gives the median
latency (ms) at every place in the turn and each model's speed-up over ``fp32`` at the first and the
last place. Writes ``--out``: ``isa``, the settings, and per model ``passes``, ``ms_by_place`` (median
ms per place in the turn) and ``speedup_first``/``speedup_last`` (``fp32``'s median over this
model's, at the first and the last place).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
# Run as a script, this folder comes first on sys.path, where benchmarks/openvino.py would shadow the
# openvino package that --target openvino runs on: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from yolocc.compiler import measure  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples/digits"
ROWS = {"fp32": [], "int8": ["int8"],
        "cpu-fast": ["act:relu", "prune:0.35,protect_head=false", "int8"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(DIGITS / "weights/yolov8n-digits.pt"))
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--target", default="ort-cpu", help="a target whose runtime times the models")
    ap.add_argument("--block", type=int, default=6, help="runs in a row per model per round")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib", default=str(DIGITS / "data/calib/images"))
    ap.add_argument("--calib-n", type=int, default=64)
    ap.add_argument("--out", default="runs/bench/interleave.json")
    args = ap.parse_args()
    if args.block < 2 or args.rounds < 1:
        print("benchmarks/interleave.py: --block must be >= 2 and --rounds >= 1", file=sys.stderr)
        return 2

    compiler = Compiler()
    runtime = compiler.registry.target(args.target).runtime()
    models: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="yolocc-bench-interleave-") as tmp:
        for name, passes in ROWS.items():
            out = Path(tmp) / f"{name}.onnx"
            compiler.compile(args.model, passes, out, imgsz=args.imgsz, calib=args.calib, calib_n=args.calib_n,
                             target=args.target, measure=False)
            models[name] = out.read_bytes()
    x = measure.timing_input((1, 3, args.imgsz, args.imgsz))
    sessions = {name: runtime.load(m, args.threads) for name, m in models.items()}
    calls = {name: (lambda s=s: s.run(x)) for name, s in sessions.items()}
    turns = measure.round_robin_blocks_ms(calls, args.rounds, args.block, warmup=3, rotate=True)
    by_place = {name: [statistics.median(turn[i] for turn in t) for i in range(args.block)]
                for name, t in turns.items()}
    rows = {}
    for name, ms in by_place.items():
        rows[name] = {"passes": ROWS[name], "ms_by_place": [round(v, 3) for v in ms],
                      "speedup_first": round(by_place["fp32"][0] / ms[0], 3),
                      "speedup_last": round(by_place["fp32"][-1] / ms[-1], 3)}
    result = {"isa": measure.cpu_isa(), "model": args.model, "imgsz": args.imgsz, "target": args.target,
              "runtime": getattr(runtime, "name", args.target), "threads": args.threads, "block": args.block,
              "rounds": args.rounds, "order": "round-robin turns, each round starting one model later",
              "statistic": "median per place in the turn", "models": rows}

    print(f"{args.model} at {args.imgsz} on {args.target} ({result['isa']}), {args.threads} threads; "
          f"{args.rounds} rounds of turns of {args.block} runs; median ms by place in the turn")
    print(f"{'model':<10}" + "".join(f"{'run ' + str(i + 1):>9}" for i in range(args.block))
          + f"{'x fp32 1st':>12}{'x fp32 last':>12}")
    for name, r in rows.items():
        print(f"{name:<10}" + "".join(f"{v:>9.3f}" for v in r["ms_by_place"])
              + f"{r['speedup_first']:>12.2f}{r['speedup_last']:>12.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

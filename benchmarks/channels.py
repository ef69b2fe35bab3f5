"""Does pruning pay on every CPU runtime? prune:0.25 + int8 with kept channels rounded to 8 against
rounded to the runtime's measured multiple (``round_to=auto``), beside int8 alone, on onnxruntime and
OpenVINO, all timed round-robin in one process.

    .venv/bin/python benchmarks/channels.py [--model examples/digits/weights/yolov8n-digits.pt] [--imgsz 160]
        [--calib examples/digits/data/calib/images] [--runs 40] [--repeat 3] [--threads 1]
        [--out runs/bench/channels.json]

Rows, per runtime (``ort`` = onnxruntime CPU, target ort-cpu; ``ov`` = OpenVINO CPU, target openvino;
each compiled for its own target):
  fp32            yolocc -p simplify (the model lowered to ONNX, float)
  int8            yolocc -p int8
  prune8_int8     yolocc -p prune:0.25,round_to=8 -p int8
  pruneauto_int8  yolocc -p prune:0.25 -p int8 (round_to=auto: the runtime's ``channel_multiple``; on OpenVINO
                  the multiple its pruned model ran fastest with, ``passes.channel_choice``)
Every model of both runtimes is loaded at once and run once per round, round-robin, ``--runs``
rounds per repeat; latency is the median over all rounds, and each ratio the median of per-round
ratios (robust to load that drifts); ``min_ms`` and the ``*_min`` ratios use each model's fastest run
(robust where other work preempts runs on a shared machine). The JSON names the ISA, each runtime's channel multiple (and
the sweep it came from), the multiple ``round_to=auto`` used, and MACs per model. Without OpenVINO
installed only the onnxruntime rows run.
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
os.environ.setdefault("YOLO_OFFLINE", "1")
# This folder holds openvino.py, which would shadow the openvino package: drop it from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from yolocc.compiler import onnxgraph  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.measure import cpu_isa  # noqa: E402

DIGITS = ROOT / "examples/digits"
ROWS = {"fp32": ["simplify"], "int8": ["int8"], "prune8_int8": ["prune:0.25,round_to=8", "int8"],
        "pruneauto_int8": ["prune:0.25", "int8"]}
RUNTIMES = {"ort": "ort-cpu", "ov": "openvino"}


def round_robin(sessions: dict[str, object], x: np.ndarray, runs: int, warmup: int = 3) -> dict[str, list[float]]:
    """Per session, ``runs`` latencies (ms), each round running every session once."""
    for _ in range(warmup):
        for s in sessions.values():
            s.run(x)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(x)
            times[k].append((time.perf_counter() - t0) * 1000)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DIGITS / "weights/yolov8n-digits.pt"))
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--calib", default=str(DIGITS / "data/calib/images"))
    ap.add_argument("--calib-n", type=int, default=64)
    ap.add_argument("--runs", type=int, default=40, help="timed rounds per repeat")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runtimes", default="ort,ov", help="comma list of ort, ov")
    ap.add_argument("--out", default=str(ROOT / "runs/bench/channels.json"))
    ap.add_argument("--keep", help="folder for the compiled models: reused when there (timing again costs no compile)")
    args = ap.parse_args()

    compiler = Compiler()
    runtimes, multiples, models, used = {}, {}, {}, {}
    for short in args.runtimes.split(","):
        target = compiler.registry.target(RUNTIMES[short])
        if getattr(target, "available", lambda: None)() is not None:
            print(f"skipping {short}: {target.available()}")
            continue
        _, runtime = compiler.target(RUNTIMES[short])
        runtimes[short] = runtime
        multiples[short] = runtime.channel_multiple(1).as_dict()
        for name, passes in ROWS.items():
            key = f"{short}_{name}"
            kept = Path(args.keep) / f"{key}.onnx" if args.keep else None
            if kept is not None and kept.exists():
                models[key] = kept.read_bytes()
                facts = kept.with_suffix(".json")
                if facts.exists():
                    used[key] = json.loads(facts.read_text())
                continue
            res = compiler.compile(args.model, passes, None, imgsz=args.imgsz, calib=args.calib,
                                   calib_n=args.calib_n, target=RUNTIMES[short], measure=False)
            models[key] = res.ir.onnx_model.SerializeToString()
            prune = next((s.changes for s in res.report.stages if s.name == "prune"), None)
            if prune:
                used[key] = {"round_to": prune.get("round_to"), "why": prune.get("round_to_source"),
                             "channels_removed": prune.get("channels_removed")}
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_bytes(models[key])
                if key in used:
                    kept.with_suffix(".json").write_text(json.dumps(used[key]))
    sessions = {k: runtimes[k.split("_")[0]].load(b, args.threads) for k, b in models.items()}
    x = np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), dtype=np.float32)
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.repeat):
        for k, v in round_robin(sessions, x, args.runs).items():
            times[k].extend(v)
    load_after = os.getloadavg()[0]

    def ratio(a: str, b: str) -> float:  # median of per-round ratios: how much faster b is than a
        return round(statistics.median(ta / tb for ta, tb in zip(times[a], times[b])), 3)

    def min_ratio(a: str, b: str) -> float:  # fastest against fastest: robust where other work preempts runs
        return round(min(times[a]) / min(times[b]), 3)

    rows = {}
    for k in sessions:
        short, name = k.split("_", 1)
        rows[k] = {"latency_ms": round(statistics.median(times[k]), 3), "min_ms": round(min(times[k]), 3),
                   "vs_int8_min": min_ratio(f"{short}_int8", k),
                   "macs": onnxgraph.macs(onnx.load_from_string(models[k])),
                   "vs_fp32": ratio(f"{short}_fp32", k), "vs_int8": ratio(f"{short}_int8", k),
                   **({"prune": used[k]} if k in used else {})}
    result = {"model": os.path.relpath(args.model, ROOT) if Path(args.model).exists() else args.model,
              "imgsz": args.imgsz, "isa": cpu_isa(), "threads": args.threads,
              "runtimes": {k: r.describe() for k, r in runtimes.items()}, "channel_multiple": multiples,
              "timing": {"order": "round-robin across runtimes", "runs": args.runs, "repeat": args.repeat,
                         "statistic": "median", "loadavg_1min": [round(load_before, 2), round(load_after, 2)]},
              "rows": rows}
    for short in runtimes:
        result[f"{short}_prune_pays"] = {"round_to_8": rows[f"{short}_prune8_int8"]["vs_int8"],
                                         "round_to_auto": rows[f"{short}_pruneauto_int8"]["vs_int8"],
                                         "auto_vs_8": ratio(f"{short}_prune8_int8", f"{short}_pruneauto_int8"),
                                         "round_to_8_min": rows[f"{short}_prune8_int8"]["vs_int8_min"],
                                         "round_to_auto_min": rows[f"{short}_pruneauto_int8"]["vs_int8_min"],
                                         "auto_vs_8_min": min_ratio(f"{short}_prune8_int8", f"{short}_pruneauto_int8")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['model']} at {args.imgsz}; CPU ISA {result['isa']}; {args.threads} thread(s); "
          f"{args.repeat}x{args.runs} round-robin rounds; 1-min load {load_before:.2f} -> {load_after:.2f}")
    for short, m in multiples.items():
        print(f"{short}: channel multiple {m['multiple']} ({m['reason']})")
    print(f"{'model':<20}{'ms':>9}{'min ms':>9}{'GMACs':>8}{'vs fp32':>9}{'vs int8':>9}{'(min)':>8}  round_to")
    for k, r in rows.items():
        print(f"{k:<20}{r['latency_ms']:>9.3f}{r['min_ms']:>9.3f}{r['macs'] / 1e9:>8.3f}{r['vs_fp32']:>9.3f}"
              f"{r['vs_int8']:>9.3f}{r['vs_int8_min']:>8.3f}  "
              f"{r.get('prune', {}).get('round_to', '')}")
    for short in runtimes:
        p = result[f"{short}_prune_pays"]
        print(f"{short}: prune+int8 over int8: round_to=8 {p['round_to_8']:.3f}x, auto {p['round_to_auto']:.3f}x "
              f"(auto over 8: {p['auto_vs_8']:.3f}x); fastest runs: {p['round_to_8_min']:.3f}x, "
              f"{p['round_to_auto_min']:.3f}x ({p['auto_vs_8_min']:.3f}x)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

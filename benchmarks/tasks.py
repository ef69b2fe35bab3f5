"""The accuracy budget on every Ultralytics task: the digits detector, classifier, and segment, pose and
OBB fixtures, each through `-p int8` alone and `--max-drop` end to end.

    .venv/bin/python benchmarks/tasks.py                        # all five tasks, writes runs/bench/tasks.json
    .venv/bin/python benchmarks/tasks.py --tasks segment pose   # a subset (rows of other tasks are kept)
    .venv/bin/python benchmarks/tasks.py --max-macs 0.1 --runs 2 --repeat 1   # int8 trials only: minutes
    .venv/bin/python benchmarks/tasks.py --data-dir DIR         # the data that make_dataset.py --out DIR wrote

Each task is judged by its own budget metric (the report names it): mAP50-95 (detect), mask mAP50-95
(segment), pose mAP50-95 (pose), OBB mAP50-95 (obb), top-1 (classify). The search chooses on the val
split; `baseline`, `int8_drop` and `budget_drop` are on the held-out test split, in points. Speed: the
FP32 export, the "int8 alone" candidate and the chosen model timed side by side in one onnxruntime
process (round-robin, thread spinning off, `benchmarks/budget.py`'s `run_budget`), with the CPU's ISA.
`--max-macs` (default 0.55: the ladder's first three steps, 30, 45 and 55% of the MACs; `make demo` stops
at 0.45, the CLI without the option climbs to 65%) caps the pruning ladder so the run fits in under
an hour on 2 idle CPU cores (43 min measured, AVX-512 VNNI).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from budget import run_budget  # noqa: E402

from yolocc.compiler.budget import BudgetNotMet  # noqa: E402
from yolocc.compiler.measure import cpu_isa  # noqa: E402

DIGITS = ROOT / "examples/digits"
W, D = DIGITS / "weights", DIGITS / "data"


def task_table(data: Path) -> dict[str, tuple[Path, Path, Path]]:
    """task: (model, data, calibration images), the data under ``data`` (a folder that
    ``examples/digits/make_dataset.py --out`` writes)."""
    return {
        "detect": (W / "yolov8n-digits.pt", data / "digits.yaml", data / "calib/images"),
        "segment": (W / "yolov8n-seg-digits.pt", data / "digits-seg.yaml", data / "seg/calib/images"),
        "pose": (W / "yolov8n-pose-digits.pt", data / "digits-pose.yaml", data / "pose/calib/images"),
        "obb": (W / "yolov8n-obb-digits.pt", data / "digits-obb.yaml", data / "obb/calib/images"),
        "classify": (W / "yolov8n-cls-digits.pt", data / "cls", data / "cls/train"),
    }


TASKS = task_table(D)


def bench_task(task: str, max_drop: float, max_macs: float | None, runs: int, repeat: int, folder: Path,
               tasks: dict[str, tuple[Path, Path, Path]]) -> dict:
    """One task's row: metric, baseline (test), int8_drop and budget_drop (test, points),
    budget_speedup_vs_int8, the chosen passes, the search's cap (``max_macs``), every candidate
    (val/test/drop/latency) and wall_s; ``met`` False (with the reason) when no candidate fits."""
    model, data, calib = tasks[task]
    t0 = time.perf_counter()
    try:
        r = run_budget(str(model), str(data), str(calib), max_drop, max_macs, runs, repeat,
                       onnx_out=str(folder / f"{task}.onnx"), trust_model=task == "classify")
    except BudgetNotMet as e:
        return {"met": False, "reason": str(e), "wall_s": round(time.perf_counter() - t0, 1)}
    final = r["_final"]
    return {"met": True, "metric": r["metric"], "baseline": r["baseline"],
            "int8_drop": round((r["baseline"] - r["int8_test"]) * 100, 3), "budget_drop": r["drop_pts"],
            "budget_val_drop": final["drop_pts_val"], "budget_speedup_vs_int8": r["speedup_vs_int8"],
            "budget_speedup_vs_fp32": r["speedup_vs_fp32"], "speedup_vs_int8_per_repeat": r["speedup_vs_int8_per_repeat"],
            "latency_ms": r["latency_ms"], "macs_ratio": r["macs_ratio"], "chosen": r["chosen"],
            "max_macs": max_macs, "candidates": r["candidates"], "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--max-macs", type=float, default=0.55, help="the deepest MAC reduction the search tries")
    ap.add_argument("--runs", type=int, default=100, help="timed rounds per repeat")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=D, help="the digits data folder (default: %(default)s; a "
                    "smaller copy: examples/digits/make_dataset.py --out DIR --n-val 16 ...)")
    ap.add_argument("--out", default=str(ROOT / "runs/bench/tasks.json"))
    args = ap.parse_args()
    tasks = task_table(args.data_dir)
    missing = [str(p) for t in args.tasks for p in tasks[t][1:] if not p.exists()]
    if missing:
        print(f"{missing[0]} is missing: run .venv/bin/python examples/digits/make_dataset.py", file=sys.stderr)
        return 2
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update(isa=cpu_isa(), max_drop=args.max_drop, max_macs=args.max_macs, split="test")
    rows = result.setdefault("tasks", {})
    folder = out.parent / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        print(f"== {task}", file=sys.stderr, flush=True)
        rows[task] = bench_task(task, args.max_drop, args.max_macs, args.runs, args.repeat, folder, tasks)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after every task: a long run keeps what it has
    print(f"CPU ISA: {result['isa']}; onnxruntime; --max-drop {args.max_drop}, --max-macs {args.max_macs}; test split")
    print(f"{'task':<9}{'metric':>15}{'baseline':>10}{'int8 pt':>9}{'budget pt':>11}{'vs int8':>9}{'wall s':>8}  chosen")
    for task, r in rows.items():
        if not r.get("met"):
            print(f"{task:<9} budget not met: {r.get('reason')}")
            continue
        print(f"{task:<9}{r['metric']:>15}{r['baseline']:>10.4f}{-r['int8_drop']:>+9.2f}{-r['budget_drop']:>+11.2f}"
              f"{r['budget_speedup_vs_int8']:>8.2f}x{r['wall_s']:>8.0f}  {' '.join(r['chosen'])}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

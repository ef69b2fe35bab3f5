"""Scaling of the accuracy budget's search over workers: `--max-drop` with `--search branch` on the digits
detector, run with the local executor at 1 and 2 workers and on an embedded local Ray with 2 worker
processes (`ray.init(num_cpus=2)`), the same search each time.

    .venv/bin/python benchmarks/search_scale.py             # writes runs/bench/search_scale.json
    .venv/bin/python benchmarks/search_scale.py --max-macs 0.45   # two branches: about half the time
    .venv/bin/python benchmarks/search_scale.py --tiny      # smoke test: random yolov8n.yaml, a few images

`branch` trains its candidates in batches (rung 1: every MAC target at once, plus "int8 alone"; later
rungs: the survivors at once), which is what the workers run in parallel. Every trial gets the same
`--threads-per-trial` torch threads in every run (default 1: two trials at once on 2 cores, no
oversubscription); the 1-worker run (in this process) runs with that many torch threads too. Each run
has a fresh content cache (calibration ranges and sensitivity analyses are measured again), so no run
reuses another's work. onnxruntime's val evaluation inside a trial uses its default thread count
(yolocc gives the trial's session no thread limit), a short phase next to the training.

JSON: `isa`, the settings, `runs` (a list of `{executor, workers, threads_per_trial, wall_s, trials,
efficiency, chosen, drop_pts_test}`; `wall_s` is the whole search: input measurement, executor start-up,
every batch and the report's latency timing; `trials` the trials run; `efficiency` = the 1-worker
`wall_s` / (workers x this `wall_s`)) and `final` (`{name, passes, drop_pts_val, drop_pts_test,
speedup_vs_int8}` of the 1-worker run's choice: chosen on val, the drop in points on the held-out test
split, the latency ratio against "int8 alone" on the target's runtime). `--tiny` (about two minutes
on 2 busy cores, most of it starting worker processes and Ray): yolov8n.yaml with random weights at
imgsz 64, 16 training and 8 val/test images, one target, one epoch, and a budget every candidate fits
(`--max-drop 100`); its numbers mean nothing.

`--openvino BENCH.json ...` adds `openvino`, a list of `{imgsz, drop_pts_test, speedup_vs_nncf}`, read
from `benchmarks/openvino.py --imgsz N --also budget=IR_FOLDER` runs, IR_FOLDER being the model a
`yolocc ... --max-drop 1.0 --search branch --target openvino -o NAME_openvino_model` search chose:
its test mAP50-95 drop against the FP32 export in points, and NNCF's INT8 latency over its own
(the median of paired round-robin ratios), both as that benchmark measured them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.budget import Budget, BudgetNotMet  # noqa: E402
from yolocc.compiler.errors import UsageError  # noqa: E402
from yolocc.compiler.executor import EXECUTORS, RAY_MISSING, TrialResources, make_executor  # noqa: E402
from yolocc.compiler.measure import cpu_isa  # noqa: E402
from yolocc.compiler.options import CompileOptions  # noqa: E402
from yolocc.strategies.branch import BranchSearch  # noqa: E402

DIGITS = ROOT / "examples/digits"
#: (executor, workers) of the runs, the 1-worker reference first.
RUNS = (("local", 1), ("local", 2), ("ray", 2))


def tiny_data(folder: Path, n: dict[str, int]) -> Path:
    """A data YAML over the first ``n[split]`` images (and their labels) of each digits split, linked."""
    src = DIGITS / "data"
    for split, count in n.items():
        for kind in ("images", "labels"):
            (folder / split / kind).mkdir(parents=True, exist_ok=True)
        for img in sorted((src / split / "images").iterdir())[:count]:
            (folder / split / "images" / img.name).symlink_to(img)
            label = src / split / "labels" / f"{img.stem}.txt"
            if label.exists():
                (folder / split / "labels" / label.name).symlink_to(label)
    yaml = folder / "data.yaml"
    yaml.write_text("".join(f"{s}: {s}/images\n" for s in n)
                    + "names:\n" + "".join(f"  {i}: '{i}'\n" for i in range(10)))
    return yaml


def fixed_threads(executor, threads: int):
    """``executor`` with every trial given ``threads`` CPUs (its torch threads out of process), whatever
    the batch: the same threads per trial in every run."""
    executor.resources = lambda trains, batch=1: TrialResources(cpus=threads)
    return executor


def run_search(executor: str, workers: int, threads: int, model: str, opts: CompileOptions,
               strategy: BranchSearch, cache: Path) -> dict:
    """One search on a fresh content cache; its row (with ``_budget``: the report's budget section)."""
    import torch

    shutil.rmtree(cache, ignore_errors=True)
    os.environ["YOLOCC_CACHE_DIR"] = str(cache)  # workers (spawned, Ray) start after this and inherit it
    torch.set_num_threads(threads)
    compiler = Compiler()
    t0 = time.perf_counter()

    def progress(what: str, done: int, total: int) -> None:
        if what.startswith("budget:"):  # the search's steps, not every pass's (in process)
            print(f"[{executor}x{workers} {time.perf_counter() - t0:6.0f} s] {what.replace(chr(9), ': ')}: {done}/{total}",
                  file=sys.stderr, flush=True)

    row = {"executor": executor, "workers": workers, "threads_per_trial": threads}
    ex = fixed_threads(make_executor(executor, workers), threads)
    try:
        budget = Budget(compiler, opts, strategy, progress, executor=ex)
        try:
            _, report = budget.search(model)
            b = report.budget
        except BudgetNotMet as e:
            b = e.report.budget
    finally:
        ex.close()
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    row["trials"] = sum(1 for c in b["candidates"][1:] if not c["reused"])  # [0] is the input, measured here
    final = b.get("final")
    row["chosen"] = final["name"] if final else None
    row["drop_pts_test"] = final["drop_pts_test"] if final else None
    row["_budget"] = b
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DIGITS / "weights/yolov8n-digits.pt"))
    ap.add_argument("--data", default=str(DIGITS / "data/digits.yaml"))
    ap.add_argument("--calib", default=str(DIGITS / "data/calib/images"))
    ap.add_argument("--imgsz", type=int, default=None, help="input size (default: the model's)")
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--max-macs", type=float, default=None, help="the deepest MAC target branch tries")
    ap.add_argument("--threads-per-trial", type=int, default=1)
    ap.add_argument("--latency-runs", type=int, default=20, help="the report's timed runs per candidate")
    ap.add_argument("--runs", nargs="+", default=[f"{e}:{w}" for e, w in RUNS], metavar="EXECUTOR:WORKERS",
                    help="the runs, the first is the reference of the efficiency (default: local:1 local:2 ray:2)")
    ap.add_argument("--openvino", nargs="+", default=[], metavar="BENCH_JSON",
                    help="benchmarks/openvino.py outputs with a 'budget' row (--also budget=IR): "
                         "recorded as 'openvino'")
    ap.add_argument("--tiny", action="store_true", help="smoke test: random yolov8n.yaml at 64 px, a few images")
    ap.add_argument("--out", default=str(ROOT / "runs/bench/search_scale.json"))
    args = ap.parse_args(argv)
    runs = [(r.split(":")[0], int(r.split(":")[1])) for r in args.runs]
    if any(e not in EXECUTORS for e, _ in runs):
        ap.error(f"--runs: executors are {', '.join(EXECUTORS)}")
    strategy = BranchSearch()
    with tempfile.TemporaryDirectory(prefix="yolocc-scale-") as tmp:
        model, data, imgsz, calib_n = args.model, args.data, args.imgsz, None
        if args.tiny:
            model, imgsz, calib_n = "yolov8n.yaml", 64, 8
            data = str(tiny_data(Path(tmp) / "data", {"train": 16, "val": 8, "test": 8}))
            args.max_drop, args.latency_runs = 100.0, 2
            strategy = BranchSearch(targets=(0.45,), rung_epochs=(1,), auto=False)
        elif not Path(data).exists():
            print(f"{data} is missing: run .venv/bin/python examples/digits/make_dataset.py", file=sys.stderr)
            return 2
        opts = CompileOptions(data=data, calib=args.calib, calib_n=calib_n, max_drop=args.max_drop,
                              max_macs=args.max_macs, latency_runs=args.latency_runs, search="branch",
                              imgsz=imgsz)
        result = {"isa": cpu_isa(), "cores": os.cpu_count(), "model": model, "data": data, "imgsz": imgsz,
                  "max_drop": args.max_drop, "max_macs": args.max_macs, "search": "branch", "tiny": args.tiny,
                  "strategy": {"targets": list(strategy.targets), "activations": list(strategy.activations),
                               "rung_epochs": list(strategy.rung_epochs),
                               "auto": strategy.auto}, "runs": []}
        budgets = []
        for executor, workers in runs:
            print(f"== {executor}, {workers} worker(s), {args.threads_per_trial} thread(s) per trial",
                  file=sys.stderr, flush=True)
            try:
                row = run_search(executor, workers, args.threads_per_trial, model, opts, strategy,
                                 Path(tmp) / f"cache-{executor}-{workers}")
            except UsageError as e:
                if str(e) != RAY_MISSING:
                    raise
                result["runs"].append({"executor": executor, "workers": workers, "skipped": str(e)})
                continue
            budgets.append(row.pop("_budget"))
            result["runs"].append(row)
    done = [r for r in result["runs"] if "wall_s" in r]
    reference = done[0]["wall_s"] if done else None
    for r in done:
        r["efficiency"] = round(reference / (r["workers"] * r["wall_s"]), 3) if reference and r["wall_s"] else None
    final = next((b["final"] for b in budgets if b.get("final")), None)
    result["final"] = None if final is None else {
        "name": final["name"], "passes": final["passes"], "drop_pts_val": final["drop_pts_val"],
        "drop_pts_test": final["drop_pts_test"], "speedup_vs_int8": final.get("speedup_vs_int8")}
    result["openvino"] = [openvino_row(Path(p)) for p in args.openvino]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"CPU ISA: {result['isa']}; {result['cores']} cores; --search branch, --max-drop {args.max_drop}")
    print(f"{'executor':<9}{'workers':>8}{'threads':>8}{'wall s':>9}{'trials':>7}{'eff.':>7}  chosen (test drop)")
    for r in result["runs"]:
        if "skipped" in r:
            print(f"{r['executor']:<9}{r['workers']:>8}  skipped: {r['skipped']}")
            continue
        print(f"{r['executor']:<9}{r['workers']:>8}{r['threads_per_trial']:>8}{r['wall_s']:>9.1f}{r['trials']:>7}"
              f"{r['efficiency']:>7.2f}  {r['chosen']} ({r['drop_pts_test']} pt)")
    if final is not None:
        print(f"final: {final['name']}: test drop {final['drop_pts_test']} pt, "
              f"{final.get('speedup_vs_int8')}x int8 alone")
    for row in result["openvino"]:
        print(f"openvino at {row['imgsz']}: the search's choice {row['speedup_vs_nncf']}x NNCF's INT8, "
              f"test drop {row['drop_pts_test']} pt")
    print(f"wrote {out}")
    return 0


def openvino_row(path: Path) -> dict:
    """``{imgsz, drop_pts_test, speedup_vs_nncf, turn, call}`` of the ``budget`` row of a
    ``benchmarks/openvino.py`` output (``--also budget=IR_FOLDER``; ``turn`` and ``call``: how it timed, the
    defaults where the output predates the option); ``SystemExit`` with one line where it has none."""
    bench = json.loads(path.read_text())
    row = bench.get("rows", {}).get("budget")
    if row is None:
        raise SystemExit(f"{path}: no 'budget' row; run benchmarks/openvino.py --also budget=IR_FOLDER")
    return {"imgsz": bench["imgsz"], "drop_pts_test": round(100 * (bench["fp32_map"] - row["mAP50-95"]), 2),
            "speedup_vs_nncf": round(1 / row["vs_nncf_paired_median"], 3), "turn": bench.get("turn", 1),
            "call": bench.get("call", "infer({0: image})"), "source": str(path)}


if __name__ == "__main__":
    raise SystemExit(main())

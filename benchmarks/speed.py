"""Speed toward the hardware limit on the CPU: YOLOv8n at 640 on onnxruntime and on OpenVINO, against
Ultralytics' own exports (FP32 on both runtimes, NNCF INT8 on OpenVINO), with the efficiency figure.

    .venv/bin/python benchmarks/speed.py [--model yolov8n.yaml] [--imgsz 640] [--runs 30] [--repeat 3]
        [--turn 1] [--threads N] [--calib examples/digits/data/calib/images] [--calib-n 128]
        [--data examples/digits/data/digits.yaml] [--recipe examples/recipes/cpu-fast.yaml]
        [--ov-recipe examples/recipes/openvino-fast.yaml] [--round-to auto] [--no-openvino]
        [--out runs/bench/speed.json]

Rows (onnxruntime: CPU execution provider, target ort-cpu, thread spinning off; OpenVINO: CPU plugin,
target openvino, compiled as benchmarks/openvino.py does: latency hint, one stream, f32 inference
precision, ``compile_cpu``):
  fp32           onnxruntime  Ultralytics' own ONNX export of the same model
  int8           onnxruntime  yolocc -p int8
  prune_int8     onnxruntime  yolocc -p prune:0.25 -p int8
  fast           onnxruntime  the structural passes of the cpu-fast recipe (its training passes left out;
                              pruning keeps the decisions it makes when recovery follows, i.e. the head's
                              inner convs are pruned)
  ov_fp32        OpenVINO     Ultralytics' ``export(format="openvino")``: the FP32 IR
  nncf_int8      OpenVINO     Ultralytics' ``export(format="openvino", int8=True, data=...)``: NNCF INT8,
                              calibrated on the ``--calib`` images (the ``bench`` extra: openvino, nncf)
  ov_int8        OpenVINO     yolocc -p int8 --target openvino
  ov_prune_int8  OpenVINO     yolocc -p prune:0.25 -p int8 --target openvino
  ov_prune_open_int8
                 OpenVINO     the same with the head's inner convs pruned too (``protect_head=false``): what
                              ``prune:0.25`` does when recovery training follows it
  ov_cpu_fast    OpenVINO     the fast row's passes (the cpu-fast recipe), compiled with --target openvino
  ov_fast        OpenVINO     the structural passes of the OpenVINO recipe (``--ov-recipe``, openvino-fast)
Every model of both runtimes is loaded in this one process, with the same ``--threads`` (default: the
physical cores, onnxruntime's own default), and timed round-robin (``measure.round_robin_ms``: one turn
each per round, each round starting one model later; a turn is ``--turn`` runs in a row of which the
last is timed, default 1: each timed run follows another model's), ``--runs`` rounds per repeat,
``--repeat`` repeats. A row's latency is the median over repeats of its per-repeat median. ``--no-openvino`` leaves
out the OpenVINO rows (and their keys); without it a missing openvino or nncf stops the benchmark with
one line saying what to install. The helpers for Ultralytics' OpenVINO exports are benchmarks/openvino.py's.

Writes ``--out`` with ``isa`` (``measure.cpu_isa``), ``fp32_ms``, ``int8_ms``, ``prune_int8_ms``,
``fast_ms``, ``fast_speedup`` (fp32_ms / fast_ms) and ``models`` (per row: latency, MACs, GMAC/s, % of
its runtime's int8 ceiling, speed-up over the onnxruntime FP32 row per repeat; Ultralytics' IRs count
the MACs of its ONNX export), and, with OpenVINO,
``ov_fp32_ms``, ``nncf_int8_ms``, ``ov_int8_ms``, ``ov_prune_int8_ms``, ``ov_prune_open_int8_ms``,
``ov_cpu_fast_ms``, ``ov_fast_ms`` and the speed-ups (above 1: the second model is faster)
``ov_int8_vs_nncf``, ``ov_prune_int8_vs_ov_int8``, ``ov_prune_open_int8_vs_ov_int8``,
``ov_cpu_fast_vs_nncf``, ``ov_fast_vs_nncf``: medians of paired per-round ratios (each run against the
other model's run in the same round, robust to load that drifts), with ``*_per_repeat`` lists as the spread. The int8 ceilings
(compiler/ceiling.py) are measured per runtime: one large int8 MatMul on onnxruntime (``ceiling``) and on
OpenVINO (``ov_ceiling``). A YAML model has random weights: right for latency, not for accuracy (the
accuracy of both recipes is measured with recovery on the digits detector, see README; OpenVINO's INT8
accuracy against NNCF's in benchmarks/openvino.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
# Run as a script, this folder comes first on sys.path, where openvino.py would shadow the openvino
# package: drop it (benchmarks/openvino.py is loaded from its file, ``openvino_bench``).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from yolocc.compiler import ceiling, measure, onnxgraph  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.params import PassSpec, parse_pass_spec  # noqa: E402
from yolocc.compiler.recipe import load_recipe  # noqa: E402

CALIB = ROOT / "examples/digits/data/calib/images"
DATA = ROOT / "examples/digits/data/digits.yaml"
#: Untimed rounds before the first repeat (OpenVINO's first inferences are slow).
WARMUP = 3
#: The OpenVINO speed-ups written as top-level keys: name -> (baseline row, faster row).
OV_RATIOS = {"ov_int8_vs_nncf": ("nncf_int8", "ov_int8"), "ov_prune_int8_vs_ov_int8": ("ov_int8", "ov_prune_int8"),
             "ov_prune_open_int8_vs_ov_int8": ("ov_int8", "ov_prune_open_int8"),
             "ov_cpu_fast_vs_nncf": ("nncf_int8", "ov_cpu_fast"), "ov_fast_vs_nncf": ("nncf_int8", "ov_fast")}


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


def with_round_to(passes: list, round_to: str) -> list:
    """``passes`` with every prune's ``round_to`` set to ``round_to`` (``auto``: as written)."""
    if round_to == "auto":
        return passes
    specs = [parse_pass_spec(p) if isinstance(p, str) else p for p in passes]
    return [PassSpec(s.name, {**s.args, "round_to": round_to}, s.positional) if s.name == "prune" else s
            for s in specs]


def openvino_bench() -> ModuleType:
    """benchmarks/openvino.py as a module (its Ultralytics OpenVINO export and calibration-data helpers),
    loaded from its file under another name: imported as ``openvino`` it would shadow the package."""
    spec = importlib.util.spec_from_file_location("yolocc_bench_openvino", BENCH / "openvino.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_threads() -> int:
    """The physical cores (onnxruntime's own default), given to both runtimes so that they get the same."""
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--calib", default=str(CALIB))
    ap.add_argument("--calib-n", type=int, default=128)
    ap.add_argument("--data", default=str(DATA), help="class names for NNCF's calibration data YAML")
    ap.add_argument("--recipe", default=str(ROOT / "examples/recipes/cpu-fast.yaml"),
                    help="the onnxruntime fast row's recipe (also timed on OpenVINO: ov_cpu_fast)")
    ap.add_argument("--ov-recipe", default=str(ROOT / "examples/recipes/openvino-fast.yaml"),
                    help="the OpenVINO fast row's recipe (ov_fast)")
    ap.add_argument("--round-to", default="auto", help="every prune's round_to (default auto: the pass's own, the "
                    "multiple timed on the pruned model; an integer skips that timing)")
    ap.add_argument("--runs", type=int, default=30, help="timed rounds per repeat")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--turn", type=int, default=1,
                    help="runs in a row per model and round, the last timed (1: each run follows another model's)")
    ap.add_argument("--threads", type=int, default=0, help="threads of every model (0: the physical cores)")
    ap.add_argument("--no-openvino", action="store_true", help="only the onnxruntime rows (no OpenVINO, no NNCF)")
    ap.add_argument("--out", default=str(ROOT / "runs/bench/speed.json"))
    args = ap.parse_args()
    if args.turn < 1:
        ap.error(f"--turn must be at least 1, got {args.turn}")
    if args.round_to != "auto" and not (args.round_to.isdigit() and int(args.round_to) >= 1):
        ap.error(f"--round-to must be auto or a positive integer, got {args.round_to!r}")
    threads = args.threads or default_threads()

    ov = nncf = ovb = None
    if not args.no_openvino:
        try:
            import nncf
            import openvino as ov
        except ImportError as e:
            print(f"benchmarks/speed.py: the OpenVINO rows need openvino and nncf: .venv/bin/pip install -e '.[bench]', "
                  f"or pass --no-openvino ({e})", file=sys.stderr)
            return 2
        ovb = openvino_bench()

    compiler = Compiler()
    fast = structural_passes(compiler, args.recipe)
    ov_fast = structural_passes(compiler, args.ov_recipe)
    rows = {"int8": ["int8"], "prune_int8": ["prune:0.25", "int8"], "fast": fast}
    # OpenVINO: the same passes as onnxruntime's rows (``ov_cpu_fast`` is the cpu-fast recipe's), plus the
    # head-opened prune and the OpenVINO recipe
    ov_rows = {"ov_int8": rows["int8"], "ov_prune_int8": rows["prune_int8"],
               "ov_prune_open_int8": ["prune:0.25,protect_head=false", "int8"], "ov_cpu_fast": rows["fast"],
               "ov_fast": ov_fast}
    rows = {name: with_round_to(passes, args.round_to) for name, passes in rows.items()}
    ov_rows = {name: with_round_to(passes, args.round_to) for name, passes in ov_rows.items()}
    x = measure.timing_input((1, 3, args.imgsz, args.imgsz))
    ort_models: dict[str, bytes] = {}
    ov_models: dict[str, bytes | Path] = {}  # ONNX (yolocc) or an IR folder (Ultralytics' exports)
    info: dict[str, dict[str, Any]] = {}

    def timed(name: str, what: str, runtime_name: str, make: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = make()
        info[name] = {"runtime": runtime_name, "what": what, "compile_s": round(time.perf_counter() - t0, 1)}
        return out

    def yolocc(passes: list, target: str) -> bytes:
        res = compiler.compile(args.model, passes, None, imgsz=args.imgsz, calib=args.calib, calib_n=args.calib_n,
                               target=target, measure=False)
        return res.ir.onnx_model.SerializeToString()

    def described(passes: list, target: str) -> str:
        return f"yolocc {' '.join('-p ' + str(p) for p in passes)}" + ("" if target == "ort-cpu" else f" --target {target}")

    with tempfile.TemporaryDirectory(prefix="yolocc-speed-") as tmp_name:
        tmp = Path(tmp_name)
        ort_models["fp32"] = timed("fp32", "Ultralytics export(format='onnx')", "onnxruntime",
                                   lambda: ultralytics_fp32(args.model, args.imgsz, tmp_name))
        for name, passes in rows.items():
            ort_models[name] = timed(name, described(passes, "ort-cpu"), "onnxruntime", lambda: yolocc(passes, "ort-cpu"))
        if ovb is not None:
            ov_models["ov_fp32"] = timed("ov_fp32", "Ultralytics export(format='openvino'): FP32 IR", "OpenVINO",
                                         lambda: ovb.ultralytics_export(args.model, args.imgsz, tmp))
            ov_models["nncf_int8"] = timed(
                "nncf_int8", "Ultralytics export(format='openvino', int8=True): NNCF", "OpenVINO",
                lambda: ovb.ultralytics_export(args.model, args.imgsz, tmp, ovb.calib_yaml(args.data, args.calib, tmp)))
            for name, passes in ov_rows.items():
                ov_models[name] = timed(name, described(passes, "openvino"), "OpenVINO",
                                        lambda: yolocc(passes, "openvino"))

        # Every model loaded at once, then timed round-robin across both runtimes.
        _, ort_runtime = compiler.target("ort-cpu")
        runs: dict[str, Callable[[], Any]] = {}
        for name, b in ort_models.items():
            runs[name] = lambda s=ort_runtime.load(b, threads): s.run(x)
        if ov is not None:
            from yolocc.plugins.openvino_target import compile_cpu

            core = ov.Core()
            for name, m in ov_models.items():
                source = str(next(m.glob("*.xml"))) if isinstance(m, Path) else m
                runs[name] = lambda r=compile_cpu(ov, core.read_model(source), threads, core).create_infer_request(): \
                    r.infer({0: x})
        ceil = ort_runtime.int8_ceiling(threads)
        ov_ceil = compiler.target("openvino")[1].int8_ceiling(threads) if ov is not None else None
        load_before = os.getloadavg()[0]
        repeats = [measure.round_robin_ms(runs, args.runs, warmup=WARMUP if k == 0 else 0, rotate=True, turn=args.turn)
                   for k in range(args.repeat)]
        load_after = os.getloadavg()[0]
        sizes = {n: len(b) for n, b in ort_models.items()}
        sizes.update({n: len(m) if isinstance(m, bytes) else sum(f.stat().st_size for f in m.iterdir())
                      for n, m in ov_models.items()})

    names = list(runs)
    per_repeat = {n: [float(np.median(r[n])) for r in repeats] for n in names}
    ms = {n: round(statistics.median(per_repeat[n]), 3) for n in names}

    def paired(a: str, b: str) -> tuple[float, list[float]]:
        """How much faster ``b`` runs than ``a``: the median of per-round ratios a/b over all rounds, and per repeat."""
        over = [ta / tb for r in repeats for ta, tb in zip(r[a], r[b])]
        each = [statistics.median(ta / tb for ta, tb in zip(r[a], r[b])) for r in repeats]
        return round(statistics.median(over), 3), [round(v, 3) for v in each]

    fp32_macs = onnxgraph.macs(onnx.load_from_string(ort_models["fp32"]))
    per_model = {}
    for n in names:
        onnx_bytes = ort_models.get(n, ov_models.get(n))
        macs = onnxgraph.macs(onnx.load_from_string(onnx_bytes)) if isinstance(onnx_bytes, bytes) else fp32_macs
        runtime_ceil = ceil if n in ort_models else ov_ceil
        gmacs, pct = ceiling.efficiency(macs, ms[n], runtime_ceil["gmacs"])
        per_model[n] = {**info[n], "latency_ms": ms[n], "macs": macs, "gmacs_per_s": gmacs, "pct_of_ceiling": pct,
                        "speedup_vs_fp32": round(ms["fp32"] / ms[n], 3),
                        "speedup_per_repeat": [round(f / t, 3) for f, t in zip(per_repeat["fp32"], per_repeat[n])],
                        "size_bytes": sizes[n]}
        if n in ov_models and n != "nncf_int8":
            per_model[n]["speedup_vs_nncf"], per_model[n]["speedup_vs_nncf_per_repeat"] = paired("nncf_int8", n)
    result = {
        "model": args.model, "imgsz": args.imgsz, "isa": measure.cpu_isa(), "ceiling": ceil,
        "runtime": ort_runtime.describe(), "threads": threads,
        "timing": {"order": "round-robin across runtimes, rotating", "runs": args.runs, "repeat": args.repeat,
                   "turn": args.turn,
                   "warmup_rounds": WARMUP, "statistic": "median", "ort_spinning": "off",
                   "openvino_config": "compile_cpu: LATENCY hint, 1 stream, f32 inference precision",
                   "loadavg_1min": [round(load_before, 2), round(load_after, 2)]},
        "round_to": args.round_to, "fast_passes": [str(s) for s in fast], "recipe": os.path.relpath(args.recipe, ROOT),
        **({"ov_fast_passes": [str(s) for s in ov_fast], "ov_recipe": os.path.relpath(args.ov_recipe, ROOT)}
           if ov is not None else {}),
        "fp32_ms": ms["fp32"], "int8_ms": ms["int8"], "prune_int8_ms": ms["prune_int8"], "fast_ms": ms["fast"],
        "fast_speedup": round(ms["fp32"] / ms["fast"], 3),
    }
    if ov is not None:
        result.update({f"{n}_ms": ms[n] for n in ov_models})
        for key, (a, b) in OV_RATIOS.items():
            result[key], result[f"{key}_per_repeat"] = paired(a, b)
        result.update({"ov_ceiling": ov_ceil, "ov_runtime": {"runtime": "OpenVINO CPU", "version": ov.__version__},
                       "nncf": nncf.__version__, "calib": os.path.relpath(args.calib, ROOT), "calib_n": args.calib_n})
    result["models"] = per_model
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    versions = f"onnxruntime {result['runtime']['version']}" + (
        f", OpenVINO {ov.__version__}, NNCF {nncf.__version__}" if ov is not None else " (OpenVINO rows skipped)")
    print(f"CPU ISA {result['isa']}; {threads} thread(s); {versions}")
    print(f"{args.model} at {args.imgsz}; {args.repeat}x{args.runs} round-robin rounds"
          f"{f' (each run timed the last of {args.turn} in a row)' if args.turn > 1 else ''}; "
          f"1-min load {load_before:.2f} -> {load_after:.2f}")
    print(f"int8 ceiling: onnxruntime {ceil['gmacs']} GMAC/s ({ceil['op']})"
          + (f"; OpenVINO {ov_ceil['gmacs']} GMAC/s ({ov_ceil['op']})" if ov_ceil else ""))
    print(f"{'model':<20}{'runtime':<13}{'ms':>9}{'vs fp32':>9}{'GMACs':>8}{'GMAC/s':>9}{'% ceil':>8}  vs fp32 per repeat")
    for n, r in per_model.items():
        print(f"{n:<20}{r['runtime']:<13}{r['latency_ms']:>9.2f}{r['speedup_vs_fp32']:>9.2f}{r['macs'] / 1e9:>8.2f}"
              f"{r['gmacs_per_s']:>9.1f}{r['pct_of_ceiling']:>8.1f}  {r['speedup_per_repeat']}")
    print(f"fast = {' '.join('-p ' + str(s) for s in fast)}: {result['fast_speedup']:.2f}x over the FP32 export")
    if ov is not None:
        print(f"ov_fast = {' '.join('-p ' + str(s) for s in ov_fast)} --target openvino")
    for key, (a, b) in OV_RATIOS.items() if ov is not None else ():
        print(f"{key}: {result[key]:.3f}x ({b} against {a}, median paired ratio; per repeat {result[key + '_per_repeat']})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

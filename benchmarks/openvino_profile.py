"""Where pruning pays on OpenVINO: yolocc's INT8 models compiled with ``--target openvino``, timed side by
side, then profiled node by node with OpenVINO's own counters, against what each convolution would
cost if its time fell with its MACs.

    .venv/bin/python benchmarks/openvino_profile.py [--model yolov8n.yaml] [--imgsz 640] [--threads N]
        [--rounds 40] [--repeat 3] [--calib examples/digits/data/calib/images] [--calib-n 32]
        [--row NAME=PASS;PASS ...] [--out runs/bench/openvino_profile.json]

Rows (default; ``--row`` replaces them, the first row is the baseline every other row is compared with):
  int8      -p int8
  prune     -p prune:0.25 -p int8                     (round_to=auto: on OpenVINO the multiple its pruned model
                                                      ran fastest with, channel_choice)
  prune16   -p prune:0.25,round_to=16 -p int8
  open      -p prune:0.25,protect_head=false -p int8  (the head's inner convs pruned, as with recovery)
  open16    -p prune:0.25,protect_head=false,round_to=16 -p int8

Two measurements, both on the OpenVINO CPU plugin compiled as every yolocc latency is
(``openvino_target.compile_cpu``: latency hint, one stream, f32 inference precision, ``--threads``):
- **wall**: every row loaded at once and timed round-robin (``measure.round_robin_ms``, rotated rounds,
  ``--rounds`` per repeat, ``--repeat`` repeats); a row's speed over the baseline is the median of paired
  per-round ratios (above 1: faster), with the per-repeat values as the spread.
- **profile**: every row compiled again with ``PERF_COUNT`` and run round-robin as above (``--rounds``
  rounds, after 3 untimed ones); a node's time is its median ``real_time``. The convolutions are matched to the ONNX Conv nodes by name (OpenVINO
  names them ``<onnx name>/WithoutBiases``) and carry their MACs (``onnxgraph.node_macs``). For each row,
  ``ideal_ms`` is the baseline's profile with every matched convolution scaled by the row's MACs over the
  baseline's for that node (everything else unchanged): the time pruning would buy if every kernel's
  time fell with its MACs. ``ideal_speed`` = baseline sum / ``ideal_ms`` bounds what the row's channel
  counts can give; ``profile_speed`` = baseline sum / the row's own sum is what they gave.
  ``worst_convs`` lists, per row, the convolutions whose time fell least against their MACs
  (``time_ratio`` over ``macs_ratio``).

The CPU's ISA (``measure.cpu_isa``) is printed and written with every figure. A YAML model has random
weights: right for latency, not for accuracy. Writes ``--out``: ``isa``, ``threads``, ``imgsz``,
``model`` and ``rows`` (per row: ``passes``, ``macs``, ``wall_ms``, ``speed``, ``speed_per_repeat``,
``profile_ms``, ``conv_ms``, ``profile_speed``, ``ideal_ms``, ``ideal_speed``, ``worst_convs``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
# Run as a script, this folder comes first on sys.path, where openvino.py would shadow the openvino package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from yolocc.compiler import measure, onnxgraph  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.plugins.openvino_target import compile_cpu  # noqa: E402

CALIB = ROOT / "examples/digits/data/calib/images"
ROWS = {"int8": ["int8"], "prune": ["prune:0.25", "int8"], "prune16": ["prune:0.25,round_to=16", "int8"],
        "open": ["prune:0.25,protect_head=false", "int8"],
        "open16": ["prune:0.25,protect_head=false,round_to=16", "int8"]}
#: OpenVINO's name for the convolution it builds from an ONNX Conv node (the bias is a fused post-op).
CONV_SUFFIX = "/WithoutBiases"
#: Convolutions listed per row in ``worst_convs``.
WORST = 8


def parse_row(text: str) -> tuple[str, list[str]]:
    """``NAME=PASS;PASS`` -> (name, passes)."""
    name, sep, passes = text.partition("=")
    if not sep or not name or not passes:
        raise argparse.ArgumentTypeError(f"--row wants NAME=PASS;PASS, got {text!r}")
    return name, [p for p in passes.split(";") if p]


def profiles(ov, models: dict[str, bytes], x: np.ndarray, threads: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per row, {OpenVINO node name: median real_time in ms}: every row compiled as ``compile_cpu`` does on
    a core of its own with ``PERF_COUNT`` on, run round-robin (``measure.round_robin_ms``, rotated, 3
    untimed rounds first) for ``rounds`` rounds, each run's counters read after it."""
    core = ov.Core()
    core.set_property("CPU", {"PERF_COUNT": True})
    times: dict[str, dict[str, list[float]]] = {n: defaultdict(list) for n in models}

    def run(name: str, request) -> None:
        request.infer({0: x})
        for p in request.profiling_info:
            times[name][p.node_name].append(p.real_time.total_seconds() * 1e3)

    runs = {n: (lambda n, r: (lambda: run(n, r)))(n, compile_cpu(ov, core.read_model(b, b""), threads, core)
                                                  .create_infer_request()) for n, b in models.items()}
    measure.round_robin_ms(runs, 3, rotate=True)  # warm-up rounds, their counters dropped below
    for t in times.values():
        t.clear()
    measure.round_robin_ms(runs, rounds, rotate=True)
    return {n: {node: float(np.median(v)) for node, v in t.items()} for n, t in times.items()}


def conv_macs(onnx_bytes: bytes) -> dict[str, int]:
    """{OpenVINO convolution name: MACs} of the ONNX model's Conv nodes."""
    return {f"{n}{CONV_SUFFIX}": m for n, m in onnxgraph.node_macs(onnx.load_from_string(onnx_bytes)).items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--threads", type=int, default=0, help="inference threads (0: OpenVINO's latency default)")
    ap.add_argument("--rounds", type=int, default=40, help="timed rounds per repeat, and profiled runs per row")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--calib", default=str(CALIB))
    ap.add_argument("--calib-n", type=int, default=32)
    ap.add_argument("--row", action="append", type=parse_row, metavar="NAME=PASS;PASS",
                    help="a row (repeatable; replaces the default rows; the first is the baseline)")
    ap.add_argument("--out", default=str(ROOT / "runs/bench/openvino_profile.json"))
    args = ap.parse_args()
    try:
        import openvino as ov
    except ImportError as e:
        print(f"benchmarks/openvino_profile.py: needs openvino: .venv/bin/pip install -e '.[bench]' ({e})",
              file=sys.stderr)
        return 2
    rows = dict(args.row) if args.row else ROWS
    if len(rows) < 2:
        ap.error("give at least two rows (the first is the baseline)")
    if args.threads < 0 or args.rounds < 1 or args.repeat < 1:
        ap.error("--threads must be >= 0, --rounds and --repeat >= 1")

    isa = measure.cpu_isa()

    compiler = Compiler()
    models: dict[str, bytes] = {}
    for name, passes in rows.items():
        t0 = time.perf_counter()
        res = compiler.compile(args.model, passes, None, imgsz=args.imgsz, calib=args.calib, calib_n=args.calib_n,
                               target="openvino", measure=False)
        models[name] = res.ir.onnx_model.SerializeToString()
        print(f"  built {name} ({' '.join('-p ' + p for p in passes)}) in {time.perf_counter() - t0:.0f} s", flush=True)

    core = ov.Core()
    x = measure.timing_input((1, 3, args.imgsz, args.imgsz))
    compiled = {n: compile_cpu(ov, core.read_model(b, b""), args.threads, core) for n, b in models.items()}
    threads = int(next(iter(compiled.values())).get_property("INFERENCE_NUM_THREADS"))
    print(f"openvino_profile: {args.model} at {args.imgsz}, {threads} thread(s), {isa}, OpenVINO {ov.__version__}",
          flush=True)
    runs = {n: (lambda r: (lambda: r.infer({0: x})))(c.create_infer_request()) for n, c in compiled.items()}
    repeats = [measure.round_robin_ms(runs, args.rounds, warmup=3 if k == 0 else 0, rotate=True)
               for k in range(args.repeat)]
    base = next(iter(rows))
    profiled = profiles(ov, models, x, threads, args.rounds)
    base_profile = profiled[base]
    base_macs = conv_macs(models[base])
    base_sum = sum(base_profile.values())
    out_rows = {}
    for name, passes in rows.items():
        per_repeat = [statistics.median(a / b for a, b in zip(r[base], r[name])) for r in repeats]
        prof = profiled[name]
        macs = conv_macs(models[name])
        matched = [n for n in base_profile if n in base_macs and n in macs and n in prof and base_macs[n]]
        ideal = base_sum - sum(base_profile[n] * (1 - macs[n] / base_macs[n]) for n in matched)
        worst = sorted(({"node": n.removesuffix(CONV_SUFFIX), "base_ms": round(base_profile[n], 4),
                         "ms": round(prof[n], 4), "time_ratio": round(prof[n] / base_profile[n], 3),
                         "macs_ratio": round(macs[n] / base_macs[n], 3)}
                        for n in matched if base_profile[n] > 0 and macs[n] < base_macs[n]),
                       key=lambda c: (c["ms"] - c["base_ms"] * c["macs_ratio"]), reverse=True)[:WORST]
        total = sum(prof.values())
        out_rows[name] = {
            "passes": passes, "macs": onnxgraph.macs(onnx.load_from_string(models[name])),
            "wall_ms": round(statistics.median(float(np.median(r[name])) for r in repeats), 3),
            "speed": round(statistics.median(per_repeat), 3), "speed_per_repeat": [round(v, 3) for v in per_repeat],
            "profile_ms": round(total, 3), "conv_ms": round(sum(prof[n] for n in matched), 3),
            "profile_speed": round(base_sum / total, 3), "ideal_ms": round(ideal, 3),
            "ideal_speed": round(base_sum / ideal, 3), "worst_convs": worst}
        r = out_rows[name]
        print(f"  {name:10s} wall {r['wall_ms']:7.2f} ms  speed {r['speed']:.3f}x {r['speed_per_repeat']}  "
              f"profile {r['profile_ms']:.2f} ms ({r['profile_speed']:.3f}x)  if convs fell with MACs "
              f"{r['ideal_ms']:.2f} ms ({r['ideal_speed']:.3f}x)  MACs {r['macs'] / 1e9:.2f} G", flush=True)
    print(f"speeds are over {base}, on {isa}")
    result = {"isa": isa, "threads": threads, "imgsz": args.imgsz, "model": args.model,
              "openvino": ov.__version__, "baseline": base, "rows": out_rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: post-training quantization (``-p int8``) against quantization-aware training (``-p qat``).

    .venv/bin/python benchmarks/qat.py [--cases NAME ...] [--qat SPEC] [--runs 50] [--turn 6] [--tiny]
                                       [--data-dir examples/digits/data] [--out runs/bench/qat.json]

Cases: ``digits-ort-cpu`` and ``digits-openvino`` (the digits detector, imgsz 160) and ``yolo26n-ort-cpu``
(the YOLO26 digits fixture); ``--cases`` adds ``segment-ort-cpu``, ``pose-ort-cpu`` and ``obb-ort-cpu``
(the other digits fixtures). Each compiles the float graph, ``-p int8`` (PTQ: calibration chosen by
``method=auto`` with ``--data``) and ``-p qat`` (the same calibration as the start, then training through
the target's Q/DQ placement, the best epoch on val kept) for the case's target, and scores all three on
the held-out test split with the target's runtime (``metric``: mAP50-95, or the task's own: mask, pose,
OBB mAP50-95). ``latency_ratio`` is QAT/PTQ, timed round-robin in one process on the target's runtime
(batch 1, ``--runs`` rounds, each a turn of ``--turn`` runs in a row per model, the last one timed).

Writes ``{"isa", "turn", "cases": {NAME: {"fp32", "ptq", "qat", "ptq_drop_pts", "qat_drop_pts",
"latency_ratio", "qat_facts"}}}``. ``--tiny`` (a smoke test, about a minute): digits-ort-cpu with one QAT epoch on 32
images and the val split in place of test.
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
# Run as a script, this folder comes first on sys.path, where benchmarks/openvino.py would shadow the
# openvino package that --target openvino imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from yolocc.compiler import measure  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402

DIGITS = "examples/digits"
D = f"{DIGITS}/data"


def digits_cases(data: str) -> dict[str, dict[str, str]]:
    """Every case: its model, target, data YAML and calibration images, the data under ``data`` (a
    folder that ``examples/digits/make_dataset.py --out`` writes)."""
    detect = {"data": f"{data}/digits.yaml", "calib": f"{data}/calib/images"}
    return {
        "digits-ort-cpu": {"model": f"{DIGITS}/weights/yolov8n-digits.pt", "target": "ort-cpu", **detect},
        "digits-openvino": {"model": f"{DIGITS}/weights/yolov8n-digits.pt", "target": "openvino", **detect},
        "yolo26n-ort-cpu": {"model": f"{DIGITS}/weights/yolo26n-digits.pt", "target": "ort-cpu", **detect},
        # every other task (with --cases): its own data and calibration images; the task's own metric
        "segment-ort-cpu": {"model": f"{DIGITS}/weights/yolov8n-seg-digits.pt", "target": "ort-cpu",
                            "data": f"{data}/digits-seg.yaml", "calib": f"{data}/seg/calib/images"},
        "pose-ort-cpu": {"model": f"{DIGITS}/weights/yolov8n-pose-digits.pt", "target": "ort-cpu",
                         "data": f"{data}/digits-pose.yaml", "calib": f"{data}/pose/calib/images"},
        "obb-ort-cpu": {"model": f"{DIGITS}/weights/yolov8n-obb-digits.pt", "target": "ort-cpu",
                        "data": f"{data}/digits-obb.yaml", "calib": f"{data}/obb/calib/images"},
    }


CASES = digits_cases(D)
DEFAULT_CASES = ["digits-ort-cpu", "digits-openvino", "yolo26n-ort-cpu"]


def bench_case(name: str, spec: dict, qat: str, split: str, runs: int, folder: str, turn: int = 6) -> dict:
    compiler = Compiler()
    target, runtime = compiler.target(spec["target"])
    data = spec["data"]
    settings = {"imgsz": 160, "calib": spec["calib"], "data": data, "target": spec["target"], "measure": True,
                "latency_runs": 0}  # --data needs the per-stage measurements; latency is timed here

    def compile_one(passes: list[str], tag: str):
        path = os.path.join(folder, f"{name}-{tag}.onnx")
        t0 = time.perf_counter()
        res = compiler.compile(spec["model"], passes, path, **settings)
        return Path(path).read_bytes(), res, round(time.perf_counter() - t0, 1)

    fp32, res, _ = compile_one([], "fp32")
    ir = res.ir
    frontend = compiler.frontend_of(ir)

    def score(model: bytes) -> float:
        return round(frontend.evaluate(ir, model, data, runtime, split=split).value, 4)

    ptq, _, ptq_s = compile_one(["int8"], "ptq")
    qat_model, qat_res, qat_s = compile_one([qat], "qat")
    reference = frontend.evaluate(ir, fp32, data, runtime, split=split)
    row = {"model": spec["model"], "target": spec["target"], "split": split, "metric": reference.primary,
           "fp32": round(reference.value, 4), "ptq": score(ptq),
           "qat": score(qat_model), "ptq_compile_s": ptq_s, "qat_compile_s": qat_s}
    row["ptq_drop_pts"] = round((row["fp32"] - row["ptq"]) * 100, 2)
    row["qat_drop_pts"] = round((row["fp32"] - row["qat"]) * 100, 2)
    x = np.random.default_rng(0).random(tuple(ir.input.shape), dtype=np.float32)
    t_ptq, t_qat = measure.latencies_ms(runtime, [ptq, qat_model], x, runs=runs, turn=turn)
    row.update(ptq_ms=round(t_ptq, 3), qat_ms=round(t_qat, 3), latency_ratio=round(t_qat / t_ptq, 3))
    stage = next(s for s in qat_res.report.stages if s.name == "qat-train")
    row["qat_facts"] = {k: v for k, v in stage.changes.items() if k != "target"}
    print(f"{name:16s} fp32 {row['fp32']:.4f}  ptq {row['ptq']:.4f} ({-row['ptq_drop_pts']:+.2f} pt)  qat "
          f"{row['qat']:.4f} ({-row['qat_drop_pts']:+.2f} pt)  latency qat/ptq {row['latency_ratio']:.3f}  "
          f"(qat compile {qat_s:.0f} s)", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=DEFAULT_CASES,
                    help=f"default: {' '.join(DEFAULT_CASES)}")
    ap.add_argument("--qat", default="qat", help="the QAT pass spec (default: qat, epochs=auto)")
    ap.add_argument("--runs", type=int, default=50, help="round-robin timing rounds")
    ap.add_argument("--turn", type=int, default=6, help="runs in a row per turn, the last one timed (default 6, as "
                    "the compiler's --latency-turn: with one, the second model of each round ran about 3%% faster "
                    "on an Intel AMX CPU, identical bytes included)")
    ap.add_argument("--tiny", action="store_true", help="smoke test: one case, one epoch on 32 images, val split")
    ap.add_argument("--data-dir", default=D, help="the digits data folder (default: %(default)s; a smaller copy: "
                    "examples/digits/make_dataset.py --out DIR --n-val 16 ...)")
    ap.add_argument("--out", default="runs/bench/qat.json")
    args = ap.parse_args(argv)
    table = digits_cases(args.data_dir)
    cases, qat, split = args.cases, args.qat, "test"
    if args.tiny:
        cases, qat, split, args.runs = ["digits-ort-cpu"], "qat:epochs=1,images=32", "val", 5
    if args.turn < 1:
        ap.error("--turn must be at least 1")
    result = {"isa": measure.cpu_isa(), "qat": qat, "turn": args.turn, "cases": {}}
    print(f"CPU ISA: {result['isa']}; {split} split; QAT: -p {qat}", flush=True)
    with tempfile.TemporaryDirectory(prefix="yolocc-qat-") as tmp:
        for name in cases:
            result["cases"][name] = bench_case(name, table[name], qat, split, args.runs, tmp, args.turn)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

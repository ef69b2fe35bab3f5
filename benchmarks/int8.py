"""Benchmark: INT8 on the CPU, side by side in one run.

    .venv/bin/python benchmarks/int8.py [--model yolov8n.yaml] [--imgsz 640] [--calib DIR] [--calib-n 128]
                                        [--runs 30] [--data DATA.yaml] [--out runs/bench/int8.json]

Rows (same model, same calibration images, all timed round-robin in one onnxruntime run):
  ultralytics-fp32     Ultralytics' own ONNX export
  ort-s8s8             onnxruntime quantize_static with its defaults (QDQ, S8 activations, S8 weights)
  ort-u8s8             quantize_static with U8 activations, S8 per-channel weights
  yolocc-int8          yolocc -p int8
  yolocc-prune-int8    yolocc -p prune:0.25 -p int8
Fidelity: cosine of the class-score rows against the FP32 export on real calibration images.
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

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")

from yolocc.compiler import measure  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.passes.calib_data import load_calibration  # noqa: E402

DEFAULT_CALIB = "examples/digits/data/calib/images"


def ultralytics_export(model: str, imgsz: int, folder: str) -> str:
    from ultralytics import YOLO

    src = os.path.join(folder, Path(model).name)
    if Path(model).suffix == ".pt":
        shutil.copy(model, src)
    else:
        src = model
    y = YOLO(src)
    out = y.export(format="onnx", imgsz=imgsz, opset=17, simplify=True, dynamic=False, verbose=False)
    dest = os.path.join(folder, "ultralytics-fp32.onnx")
    shutil.move(out, dest)
    return dest


def ort_quantize(fp32: str, calib: np.ndarray, out: str, u8s8: bool) -> str:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            row = next(self.it, None)
            return None if row is None else {"images": row[None]}

    kwargs = dict(quant_format=QuantFormat.QDQ)
    if u8s8:
        kwargs.update(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    quantize_static(fp32, out, Reader(), **kwargs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--calib", default=DEFAULT_CALIB)
    ap.add_argument("--calib-n", type=int, default=128)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--data", help="labelled data YAML: add mAP50-95 per row (Ultralytics validator)")
    ap.add_argument("--method", default=None, help="calibration method for yolocc rows (default: the int8 default)")
    ap.add_argument("--out", default="runs/bench/int8.json")
    args = ap.parse_args()

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="yolocc-bench-") as tmp:
        calib = load_calibration(args.calib, args.calib_n, (1, 3, args.imgsz, args.imgsz), "detect")
        fp32 = ultralytics_export(args.model, args.imgsz, tmp)
        rows["ultralytics-fp32"] = {"path": fp32}
        for name, u8s8 in (("ort-s8s8", False), ("ort-u8s8", True)):
            t0 = time.perf_counter()
            rows[name] = {"path": ort_quantize(fp32, calib, os.path.join(tmp, f"{name}.onnx"), u8s8),
                          "compile_s": round(time.perf_counter() - t0, 1)}
        compiler = Compiler()
        int8 = f"int8:method={args.method}" if args.method else "int8"
        for name, passes in (("yolocc-int8", [int8]), ("yolocc-prune-int8", ["prune:0.25", int8])):
            path = os.path.join(tmp, f"{name}.onnx")
            t0 = time.perf_counter()
            compiler.compile(args.model, passes, path, imgsz=args.imgsz, calib=args.calib,
                             calib_n=args.calib_n, measure=False)
            rows[name] = {"path": path, "compile_s": round(time.perf_counter() - t0, 1)}

        models = {k: Path(v["path"]).read_bytes() for k, v in rows.items()}
        x = calib[:1]
        lat = measure.latencies_ms(list(models.values()), x, runs=args.runs)
        ref_sess = measure.session(models["ultralytics-fp32"])
        probe = calib[: min(8, len(calib))]
        refs = [measure.run_outputs(ref_sess, p[None])["output0"] for p in probe]
        for (name, data), ms in zip(models.items(), lat):
            sess = measure.session(data)
            outs = [list(measure.run_outputs(sess, p[None]).values())[0] for p in probe]
            scores = [measure.compare(r[:, 4:], o[:, 4:])["cosine"] for r, o in zip(refs, outs)]
            boxes = [measure.compare(r[:, :4], o[:, :4])["rel_err"] for r, o in zip(refs, outs)]
            rows[name].update(size_bytes=len(data), latency_ms=ms, score_cosine=round(float(np.mean(scores)), 4),
                              box_rel_err=round(float(np.mean(boxes)), 4))
            rows[name].pop("path")
            if args.data:
                from yolocc.plugins.ultralytics_eval import evaluate_onnx

                rows[name].update(evaluate_onnx(data, args.data, args.imgsz, "detect"))
    base = rows["ultralytics-fp32"]["latency_ms"]
    print(f"\n{args.model} at {args.imgsz}, onnxruntime CPU, median of {args.runs} runs, all timed round-robin; "
          f"{args.calib_n} calibration images")
    print(f"{'model':<20}{'latency ms':>12}{'vs fp32':>9}{'size MB':>9}{'score cos':>11}{'box rel err':>13}"
          f"{'compile s':>11}{'mAP50-95':>10}")
    for name, r in rows.items():
        r["ratio_vs_fp32"] = round(r["latency_ms"] / base, 3)
        print(f"{name:<20}{r['latency_ms']:>12.1f}{r['ratio_vs_fp32']:>9.2f}{r['size_bytes'] / 1e6:>9.2f}"
              f"{r['score_cosine']:>11.4f}{r['box_rel_err']:>13.4f}{r.get('compile_s', '-'):>11}"
              f"{r.get('mAP50-95', '-'):>10}")
    u8 = rows["ort-u8s8"]["latency_ms"]
    print(f"yolocc-int8 vs ort-u8s8: {rows['yolocc-int8']['latency_ms'] / u8:.2f}x; "
          f"prune+int8 speed-up vs fp32: {base / rows['yolocc-prune-int8']['latency_ms']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": args.model, "imgsz": args.imgsz, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: INT8 on the CPU, side by side in one run.

    .venv/bin/python benchmarks/int8.py [--model yolov8n.yaml] [--imgsz 640] [--calib DIR] [--calib-n 128]
                                        [--runs 30] [--repeat 3] [--data DATA.yaml] [--out runs/bench/int8.json]

Rows (same model, same calibration images, all timed round-robin in one onnxruntime run):
  ultralytics-fp32     Ultralytics' own ONNX export
  ort-s8s8             onnxruntime quantize_static with its defaults (QDQ, S8 activations, S8 weights)
  ort-u8s8             quantize_static with U8 activations, S8 per-channel weights
  yolocc-int8          yolocc -p int8
  yolocc-prune-int8    yolocc -p prune:0.25 -p int8
  yolocc-prune-head-int8  the same with prune:protect_head=false (the head's inner convs pruned too)
  hand-prune-u8s8      what a knowledgeable user chains by hand: a C2f rewrite + torch-pruning at 0.25
                       (round_to 8, head ignored), Ultralytics' ONNX export, then quantize_static U8S8
                       per channel with the Detect head's decode excluded
Fidelity: cosine of the class-score rows against the FP32 export on real calibration images.
--repeat K times the whole round-robin K times; latency is the median over repeats, and the
speed-ups of every repeat are printed, so one run shows how stable a ratio is.
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
from yolocc.plugins.ort_runtime import OrtCpuRuntime  # noqa: E402

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


def ort_quantize(fp32: str, calib: np.ndarray, out: str, u8s8: bool, exclude: list[str] | None = None) -> str:
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
    quantize_static(fp32, out, Reader(), nodes_to_exclude=exclude or [], **kwargs)
    return out


def hand_chained(model: str, imgsz: int, calib: np.ndarray, folder: str) -> str:
    """The peer pipeline, written the way a user would, without yolocc."""
    import onnx
    import torch
    import torch.nn as nn
    import torch_pruning as tp
    from ultralytics import YOLO
    from ultralytics.nn.modules import C2f, Conv

    class C2fTwoConvs(nn.Module):  # the usual hand-written C2f rewrite: cv1 split into two convs
        def __init__(self, m):
            super().__init__()
            c_in = m.cv1.conv.in_channels
            self.cv0, self.cv1 = Conv(c_in, m.c, 1, 1), Conv(c_in, m.c, 1, 1)
            for dst, sl in ((self.cv0, slice(0, m.c)), (self.cv1, slice(m.c, 2 * m.c))):
                dst.conv.weight.data = m.cv1.conv.weight.data[sl].clone()
                for k in ("weight", "bias", "running_mean", "running_var"):
                    getattr(dst.bn, k).data = getattr(m.cv1.bn, k).data[sl].clone()
            self.cv2, self.m, self.f, self.i, self.type, self.np = m.cv2, m.m, m.f, m.i, m.type, m.np

        def forward(self, x):
            y = [self.cv0(x), self.cv1(x)]
            y.extend(b(y[-1]) for b in self.m)
            return self.cv2(torch.cat(y, 1))

    src = os.path.join(folder, "hand", Path(model).name)
    os.makedirs(os.path.dirname(src), exist_ok=True)
    if Path(model).suffix == ".pt":
        shutil.copy(model, src)
    else:
        src = model
    yolo = YOLO(src)
    det = yolo.model.float().eval()
    for i, layer in enumerate(det.model):
        if type(layer) is C2f:
            det.model[i] = C2fTwoConvs(layer)
    for p in det.parameters():
        p.requires_grad_(True)
    x = torch.rand(1, 3, imgsz, imgsz)
    pruner = tp.pruner.MetaPruner(det, x, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=0.25, ignored_layers=[det.model[-1]], round_to=8)
    pruner.step()
    for p in det.parameters():
        p.requires_grad_(False)
    yolo.model = det
    out = yolo.export(format="onnx", imgsz=imgsz, opset=17, simplify=True, dynamic=False, verbose=False)
    fp32 = os.path.join(folder, "hand-pruned-fp32.onnx")
    shutil.move(out, fp32)
    head = f"/model.{len(det.model) - 1}/"
    exclude = [n.name for n in onnx.load(fp32).graph.node
               if n.name.startswith(head) and not n.name.startswith((head + "cv2", head + "cv3"))]
    return ort_quantize(fp32, calib, os.path.join(folder, "hand-prune-u8s8.onnx"), True, exclude)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--calib", default=DEFAULT_CALIB)
    ap.add_argument("--calib-n", type=int, default=128)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3, help="repeat the round-robin timing K times")
    ap.add_argument("--data", help="labelled data YAML: add mAP50-95 per row (Ultralytics validator)")
    ap.add_argument("--method", default=None, help="calibration method for yolocc rows (default: the int8 default)")
    ap.add_argument("--out", default="runs/bench/int8.json")
    args = ap.parse_args()

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="yolocc-bench-") as tmp:
        compiler = Compiler()
        ir = compiler.load(args.model, args.imgsz)
        frontend = compiler.frontend_of(ir)
        calib = load_calibration(args.calib, args.calib_n, ir.input.shape, lambda im: frontend.preprocess(ir, im))
        fp32 = ultralytics_export(args.model, args.imgsz, tmp)
        rows["ultralytics-fp32"] = {"path": fp32}
        for name, u8s8 in (("ort-s8s8", False), ("ort-u8s8", True)):
            t0 = time.perf_counter()
            rows[name] = {"path": ort_quantize(fp32, calib, os.path.join(tmp, f"{name}.onnx"), u8s8),
                          "compile_s": round(time.perf_counter() - t0, 1)}
        int8 = f"int8:method={args.method}" if args.method else "int8"
        for name, passes in (("yolocc-int8", [int8]), ("yolocc-prune-int8", ["prune:0.25", int8]),
                             ("yolocc-prune-head-int8", ["prune:ratio=0.25,protect_head=false", int8])):
            path = os.path.join(tmp, f"{name}.onnx")
            t0 = time.perf_counter()
            compiler.compile(args.model, passes, path, imgsz=args.imgsz, calib=args.calib,
                             calib_n=args.calib_n, measure=False)
            rows[name] = {"path": path, "compile_s": round(time.perf_counter() - t0, 1)}
        t0 = time.perf_counter()
        rows["hand-prune-u8s8"] = {"path": hand_chained(args.model, args.imgsz, calib, tmp),
                                   "compile_s": round(time.perf_counter() - t0, 1)}

        models = {k: Path(v["path"]).read_bytes() for k, v in rows.items()}
        x = calib[:1]
        runtime = OrtCpuRuntime()
        repeats = [measure.latencies_ms(runtime, list(models.values()), x, runs=args.runs) for _ in range(args.repeat)]
        lat = [float(np.median(col)) for col in zip(*repeats)]
        names = list(models)
        speedups = {n: [round(r[0] / r[i], 2) for r in repeats] for i, n in enumerate(names)}
        ref_sess = runtime.load(models["ultralytics-fp32"])
        probe = calib[: min(8, len(calib))]
        refs = [ref_sess.run(p[None])["output0"] for p in probe]
        for (name, data), ms in zip(models.items(), lat):
            sess = runtime.load(data)
            outs = [list(sess.run(p[None]).values())[0] for p in probe]
            scores = [measure.compare(r[:, 4:], o[:, 4:])["cosine"] for r, o in zip(refs, outs)]
            boxes = [measure.compare(r[:, :4], o[:, :4])["rel_err"] for r, o in zip(refs, outs)]
            rows[name].update(size_bytes=len(data), latency_ms=round(ms, 3), speedup_per_repeat=speedups[name],
                              score_cosine=round(float(np.mean(scores)), 4),
                              box_rel_err=round(float(np.mean(boxes)), 4))
            rows[name].pop("path")
            if args.data:
                from yolocc.plugins.ultralytics_eval import evaluate_onnx

                rows[name].update(evaluate_onnx(data, args.data, args.imgsz, "detect", OrtCpuRuntime()).as_dict())
    base = rows["ultralytics-fp32"]["latency_ms"]
    print(f"\n{args.model} at {args.imgsz}, onnxruntime CPU, median of {args.repeat}x{args.runs} runs, all timed "
          f"round-robin; "
          f"{args.calib_n} calibration images")
    print(f"{'model':<24}{'latency ms':>12}{'vs fp32':>9}{'size MB':>9}{'score cos':>11}{'box rel err':>13}"
          f"{'compile s':>11}{'mAP50-95':>10}")
    for name, r in rows.items():
        r["ratio_vs_fp32"] = round(r["latency_ms"] / base, 3)
        print(f"{name:<24}{r['latency_ms']:>12.1f}{r['ratio_vs_fp32']:>9.2f}{r['size_bytes'] / 1e6:>9.2f}"
              f"{r['score_cosine']:>11.4f}{r['box_rel_err']:>13.4f}{r.get('compile_s', '-'):>11}"
              f"{r.get('mAP50-95', '-'):>10}")
    u8 = rows["ort-u8s8"]["latency_ms"]
    print(f"yolocc-int8 vs ort-u8s8: {rows['yolocc-int8']['latency_ms'] / u8:.2f}x; "
          f"prune+int8 speed-up vs fp32: {base / rows['yolocc-prune-int8']['latency_ms']:.2f}x "
          f"(hand-chained peer: {base / rows['hand-prune-u8s8']['latency_ms']:.2f}x); per repeat: "
          f"{speedups['yolocc-prune-int8']}; with the head pruned: {speedups['yolocc-prune-head-int8']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": args.model, "imgsz": args.imgsz, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

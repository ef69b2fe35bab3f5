"""Benchmark: INT8 calibration methods against ``method=auto``, per model, on ort-cpu.

    .venv/bin/python benchmarks/calibration.py [--models NAME ...] [--probe-n 32] [--tiny]
                                               [--out runs/bench/calibration.json]

For every model, each fixed method (``int8:method=minmax``, ``entropy``, ``percentile`` at 99.9,
99.99 and 99.999, all with the default 128 calibration images) and ``-p int8`` (``method=auto``) is
compiled. ``auto`` runs as a user would with ``--data`` (the model's val split: where the best two
methods' held-out task agreement is tied, val settles it; bias correction is measured; a source of 128
images is cross-fitted in 4 folds and the choice refit on all of them); three more ``auto`` runs isolate
the parts: ``no_data`` (no ``--data``: the held-out scores alone choose), ``no_bias_correction``
(``--data``, ``bias_correction=false``) and ``one_split`` (``--data``, ``folds=1``: one quarter held out,
the chosen ranges those of the other three quarters, as before cross-fitting). Chosen on val, reported on test. Each result gets
  fidelity  the mean cosine of its outputs (boxes, class scores and the task's own part apart:
            mask coefficients, keypoints, OBB angle; a segmenter's prototypes whole) with the FP32
            model's on ``--probe-n`` images that no calibration saw (the test split's images),
            the same measure ``auto`` scores its candidates with on its held-out calibration images;
  test_map  the test split's metric, the task's own (``metric``: mAP50-95 for the detector, mask
            mAP50-95, pose mAP50-95, OBB mAP50-95, top-1 for the classifier), null for a model
            without labels.
Each result also gets ``agreement``: the task agreement of its predictions with the FP32 model's on the
same probe images (``Frontend.agreement``: mAP50-95 of the task's own output with the float model's
confident predictions as ground truth; top-1 agreement for the classifier; null without confident float
predictions). ``auto`` and its variants get ``pts_below_best_fixed`` and ``se_vs_best_fixed``, the
paired bootstrap standard error of that gap over the test images (points).
``auto`` also records its choice, its own held-out scores (fidelity, agreement, the candidates tied with
the best), the val confirmation, bias correction's
effect (layers, held-out fidelity before/after, kept or not), the images its candidates' ranges came
from (``choice_images``) and those its chosen ranges were refit on (``images``, ``refit``) and its
compile time against minmax's.
Models: the digits detector (imgsz 160), YOLOv8n with random weights (no labels: fidelity only), the
digits classifier (imgsz 64) and the digits segment, pose and OBB fixtures (imgsz 160, each with its
own calibration folder and data YAML); ``--models`` picks some.
``--tiny`` (a smoke test, under a minute): the random-weights YOLOv8n at imgsz 64, 16 calibration
images, 4 probe images. Writes ``{"isa", "models": {NAME: {"methods": {METHOD: {"fidelity",
"test_map"}}, "auto": {"chosen", "test_map", ...}}}}``.
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

import numpy as np  # noqa: E402

from yolocc.compiler import measure  # noqa: E402
from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.errors import YoloccError  # noqa: E402
from yolocc.compiler.metrics import Metrics, drop_se  # noqa: E402
from yolocc.passes import calib_select  # noqa: E402
from yolocc.passes.calib_data import load_calibration  # noqa: E402
from yolocc.plugins.ort_runtime import OrtCpuRuntime  # noqa: E402

DIGITS = "examples/digits/data"
MODELS = {
    "digits-detector": {"model": "examples/digits/weights/yolov8n-digits.pt", "imgsz": 160,
                        "calib": f"{DIGITS}/calib/images", "data": f"{DIGITS}/digits.yaml",
                        "probe": f"{DIGITS}/test/images"},
    "yolov8n-random": {"model": "yolov8n.yaml", "imgsz": 160, "calib": f"{DIGITS}/calib/images", "data": None,
                       "probe": f"{DIGITS}/test/images"},
    "digits-classifier": {"model": "examples/digits/weights/yolov8n-cls-digits.pt", "imgsz": 64,
                          "calib": f"{DIGITS}/cls/train", "data": f"{DIGITS}/cls", "probe": f"{DIGITS}/cls/test",
                          "trust_model": True},  # the bundled fixture: a full pickle
    # every other task: its own calibration folder and data; the metric is the task's own
    **{f"digits-{task}": {"model": f"examples/digits/weights/yolov8n-{short}-digits.pt", "imgsz": 160,
                          "calib": f"{DIGITS}/{short}/calib/images", "data": f"{DIGITS}/digits-{short}.yaml",
                          "probe": f"{DIGITS}/{short}/test/images"}
       for task, short in (("segment", "seg"), ("pose", "pose"), ("obb", "obb"))},
}


def pass_spec(label: str) -> str:
    """``int8`` for ``auto``, else ``int8:method=M[,percentile=P]`` for a candidate label."""
    if label == "auto":
        return "int8"
    method, pct = calib_select.parse(label)
    return f"int8:method={method}" + (f",percentile={pct}" if pct is not None else "")


def bench_model(name: str, spec: dict, calib_n: int | None, probe_n: int, folder: str) -> dict:
    compiler = Compiler()
    runtime = OrtCpuRuntime()
    trust = bool(spec.get("trust_model"))
    ir = compiler.load(spec["model"], spec["imgsz"], trust)
    frontend = compiler.frontend_of(ir)
    probe = load_calibration(spec["probe"], probe_n, ir.input.shape, lambda im: frontend.preprocess(ir, im))
    splits = ir.meta.get("output_splits")

    def outputs(path: str) -> dict:
        session = runtime.load(Path(path).read_bytes())
        outs = [session.run(x[None]) for x in probe]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def compile_one(passes: list[str], tag: str, data: str | None = None):
        path = os.path.join(folder, f"{name}-{tag}.onnx")
        # --data needs the per-stage measurements (val metric of each stage); latency is skipped.
        extra = {"data": data, "measure": True, "latency_runs": 0} if data else {"measure": False}
        res = compiler.compile(spec["model"], passes, path, imgsz=spec["imgsz"], calib=spec["calib"],
                               calib_n=calib_n, trust_model=trust, **extra)
        return path, res

    fp32, _ = compile_one([], "fp32")
    ref = outputs(fp32)

    tests: dict[str, Metrics] = {}  # label -> test metrics, with bootstrap replicates for paired SEs

    def test_metric(path: str, label: str | None = None):
        if not spec["data"]:
            return None, None
        metrics = frontend.evaluate(ir, Path(path).read_bytes(), spec["data"], runtime, split="test")
        if label:
            tests[label] = metrics
        return round(metrics.value, 4), metrics.primary

    row: dict = {"model": spec["model"], "imgsz": spec["imgsz"], "probe_images": int(len(probe)), "methods": {}}
    row["fp32_test_map"], row["metric"] = test_metric(fp32)
    autos = {"auto": ("int8", spec["data"]), "no_data": ("int8", None),
             "no_bias_correction": ("int8:bias_correction=false", spec["data"]),
             "one_split": ("int8:folds=1", spec["data"])}
    if not spec["data"]:
        autos = {"auto": ("int8", None)}
    for label in [*calib_select.CANDIDATES, *autos]:
        t0 = time.perf_counter()
        try:
            passes, data = autos.get(label, (pass_spec(label), None))
            path, res = compile_one([passes], label.replace(" ", "-"), data)
        except YoloccError as e:  # e.g. a histogram calibrator that rejects a nearly constant activation
            row["methods"][label] = {"fidelity": None, "test_map": None, "error": str(e)}
            print(f"{name:18s} {label:18s} failed: {e}", flush=True)
            continue
        seconds = round(time.perf_counter() - t0, 2)
        cal = next(s for s in res.report.stages if s.name == "calibrate")
        outs = outputs(path)
        agreement = frontend.agreement(ir, ref, outs)
        entry = {"fidelity": round(calib_select.fidelity(ref, outs, splits), 6),
                 "agreement": None if agreement is None else round(agreement.value, 4),
                 "test_map": test_metric(path, label)[0], "compile_s": seconds, "calibrate_s": cal.time_s}
        if label in autos:
            entry.update(chosen=cal.changes["chosen"], held_out_fidelity=cal.changes["fidelity"],
                         held_out_agreement=cal.changes.get("agreement"), tied=cal.changes.get("tied"),
                         images=cal.changes["images"], choice_images=cal.changes.get("choice_images"),
                         held_out_images=cal.changes["held_out_images"], refit=cal.changes.get("refit"),
                         confirm=cal.changes.get("confirm"), bias_correction=cal.changes.get("bias_correction"),
                         calibrate_seconds=cal.changes["seconds"], diagnostics=cal.diagnostics)
            if label == "auto":
                row["auto"] = entry
            else:
                row.setdefault("auto_variants", {})[label] = entry
        else:
            row["methods"][label] = entry
        print(f"{name:18s} {label:18s} fidelity {entry['fidelity']:.5f}  agreement {entry['agreement']}  "
              f"test {entry['test_map']}  "
              f"compile {seconds:.1f} s (calibrate {cal.time_s:.1f} s)" +
              (f"  -> chose {entry['chosen']}" if label in autos else ""), flush=True)
    fids = [m["fidelity"] for m in row["methods"].values() if m["fidelity"] is not None]
    best_fixed = max((m for m in row["methods"] if row["methods"][m]["test_map"] is not None),
                     key=lambda m: row["methods"][m]["test_map"], default=None)
    for label, entry in [("auto", row["auto"]), *row.get("auto_variants", {}).items()]:
        if best_fixed is not None:
            entry["pts_below_best_fixed"] = round((row["methods"][best_fixed]["test_map"] - entry["test_map"]) * 100, 2)
            entry["best_fixed"] = best_fixed
            # the paired bootstrap SE of that gap over the test images: how much of it the split can resolve
            entry["se_vs_best_fixed"] = drop_se(tests[best_fixed], tests[label])
        entry["fidelity_below_best_fixed"] = round(max(fids) - entry["fidelity"], 6)
    row["auto"]["extra_compile_s_vs_minmax"] = round(row["auto"]["compile_s"] - row["methods"]["minmax"]["compile_s"], 2)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", choices=sorted(MODELS), default=None, help="default: all")
    ap.add_argument("--probe-n", type=int, default=32, help="images the fidelity is measured on")
    ap.add_argument("--calib-n", type=int, default=None, help="calibration images (default: 128)")
    ap.add_argument("--tiny", action="store_true", help="smoke test: random YOLOv8n at imgsz 64, 16 images")
    ap.add_argument("--out", default="runs/bench/calibration.json")
    args = ap.parse_args(argv)
    models = {k: dict(MODELS[k]) for k in (args.models or MODELS)}
    calib_n, probe_n = args.calib_n, args.probe_n
    if args.tiny:
        models = {"yolov8n-random": dict(MODELS["yolov8n-random"], imgsz=64)}
        calib_n, probe_n = 16, 4
    result = {"isa": measure.cpu_isa(), "runtime": OrtCpuRuntime().describe(), "tiny": args.tiny, "models": {}}
    with tempfile.TemporaryDirectory(prefix="yolocc-bench-calib-") as folder:
        os.environ["YOLOCC_CACHE_DIR"] = os.path.join(folder, "cache")  # honest times: nothing cached
        for name, spec in models.items():
            result["models"][name] = bench_model(name, spec, calib_n, probe_n, folder)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))  # after every model: a later failure keeps these
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

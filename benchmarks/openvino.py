"""Benchmark: INT8 on OpenVINO's CPU runtime, yolocc --target openvino against Ultralytics' NNCF export.

    # needs openvino and nncf (the ``bench`` extra, which ``make`` installs) for Ultralytics' INT8 export
    .venv/bin/python benchmarks/openvino.py [--model examples/digits/weights/yolov8n-digits.pt] [--imgsz 160]
        [--data examples/digits/data/digits.yaml] [--calib examples/digits/data/calib/images] [--calib-n N]
        [--runs 100] [--repeat 5] [--threads 2] [--turn 1] [--zero-copy] [--out runs/bench/openvino.json]
        [--also NAME=IR_FOLDER ...]

Rows (every model is an OpenVINO IR folder, all loaded in this one process and timed round-robin on
OpenVINO's CPU plugin, each round starting one model later, with the same configuration: latency
hint, one stream, ``--threads`` threads):
  fp32           Ultralytics' own ``export(format="openvino")``: the FP32 IR
  nncf           Ultralytics' ``export(format="openvino", int8=True, data=...)``: NNCF post-training
                 quantization (MIXED preset, the head decode, Sigmoid and DFL in NNCF's ignored scope)
  yolocc         yolocc -p int8 --target openvino -o NAME_openvino_model
  yolocc-prune   yolocc -p prune:0.25 -p int8 --target openvino (no recovery training)
  NAME           ``--also NAME=IR_FOLDER``: an IR folder compiled beforehand, e.g. the model a
                 ``yolocc --max-drop 1.0 --target openvino -o NAME_openvino_model`` search chose
``--turn N``: each round a model runs N times in a row and the last is timed (default 1: every timed
run follows another model's). ``--zero-copy``: a run is the infer call alone on a shared input
tensor, outputs not copied (benchmark_app's way); by default it is ``infer({0: image})`` with the
copies a Python caller pays. NNCF and yolocc calibrate on the same images (``--calib``; ``--calib-n N``: its first N). Accuracy
is mAP50-95 from Ultralytics' validator loading each IR folder, on the data's held-out ``test``
split. ``--repeat K`` times the whole round-robin K times: latency is the median over repeats.
Ratios to NNCF are medians of paired ratios (each run against the NNCF run beside it, robust to
load that drifts during the benchmark), per repeat and over all runs, so one run shows how stable a ratio is. Writes ``--out``
with the keys ``fp32_ms``, ``nncf_ms``, ``yolocc_ms``, ``fp32_map``, ``nncf_map``, ``yolocc_map``
(and the prune row, ratios, versions, ISA).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")
# Run as a script, this file's folder comes first on sys.path, where this file would shadow the
# ``openvino`` package it benchmarks: drop that folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.measure import cpu_isa, round_robin_ms, timing_input  # noqa: E402
from yolocc.plugins.openvino_target import compile_cpu  # noqa: E402

DIGITS = "examples/digits"


def quiet():
    """Silence Ultralytics/NNCF progress output (stdout and the ultralytics logger)."""
    logging.getLogger("ultralytics").setLevel(logging.ERROR)
    logging.getLogger("nncf").setLevel(logging.ERROR)
    return contextlib.redirect_stdout(io.StringIO())


def calib_yaml(data: str, calib: str, folder: Path) -> str:
    """A data YAML whose train and val splits are the calibration images (Ultralytics' INT8 export
    calibrates on the val split), with the class names of ``data``."""
    import yaml

    names = yaml.safe_load(Path(data).read_text())["names"]
    images = str(Path(calib).resolve())
    path = folder / "calib.yaml"
    path.write_text(yaml.safe_dump({"train": images, "val": images, "names": names}))
    return str(path)


def ultralytics_export(model: str, imgsz: int, folder: Path, int8_data: str | None = None) -> Path:
    """Ultralytics' OpenVINO export of ``model`` (FP32, or NNCF INT8 calibrated on ``int8_data``) in a
    subfolder of ``folder``: a model file is copied there, a model YAML name Ultralytics resolves
    (yolov8n.yaml) is exported from there."""
    from ultralytics import YOLO

    sub = (folder / ("nncf" if int8_data else "fp32")).resolve()
    sub.mkdir()
    src = model
    if Path(model).is_file():
        src = str(sub / Path(model).name)
        shutil.copy(model, src)
    kwargs = {"int8": True, "data": int8_data} if int8_data else {}
    cwd = os.getcwd()
    os.chdir(sub)
    try:
        with quiet():
            out = YOLO(src).export(format="openvino", imgsz=imgsz, dynamic=False, verbose=False, **kwargs)
    finally:
        os.chdir(cwd)
    return sub / out


def first_images(images: str, n: int, folder: Path) -> str:
    """A folder ``folder/images`` linking the first ``n`` images of ``images`` (sorted by name), with their
    label files in ``folder/labels`` where ``images`` has a sibling ``labels`` folder (Ultralytics' layout,
    which its INT8 export reads); returns the images folder."""
    src = Path(images).resolve()
    (folder / "images").mkdir(parents=True)
    labels = src.parent / "labels"
    for image in sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))[:n]:
        (folder / "images" / image.name).symlink_to(image)
        label = labels / f"{image.stem}.txt"
        if label.exists():
            (folder / "labels").mkdir(exist_ok=True)
            (folder / "labels" / label.name).symlink_to(label)
    return str(folder / "images")


def yolocc_compile(model: str, passes: list[str], imgsz: int, calib: str, out: Path) -> Path:
    Compiler().compile(model, passes, out, imgsz=imgsz, calib=calib, target="openvino", measure=False)
    return out


def time_round_robin(folders: dict[str, Path], imgsz: int, runs: int, repeat: int, threads: int,
                     turn: int = 1, zero_copy: bool = False) -> list[np.ndarray]:
    """Per repeat, a (runs, models) array of latencies (ms): every round gives each model one turn of
    ``turn`` runs in a row and keeps the last (``measure.round_robin_ms``, each round starting one model
    later, so that with three or more models no turn follows the same model's, and neighbouring
    measurements share the machine's conditions). A run is ``request.infer({0: x})``, which copies the
    image in and the outputs out as a Python caller does (Ultralytics' OpenVINO backend); with
    ``zero_copy`` the image is set once as a shared tensor and a run is ``request.infer()`` with the
    outputs left in the request, the call alone, as OpenVINO's benchmark_app times it."""
    import openvino as ov

    x = timing_input((1, 3, imgsz, imgsz))
    calls = {}
    for i, folder in enumerate(folders.values()):
        xml = next(folder.glob("*.xml"))
        request = compile_cpu(ov, ov.Core().read_model(str(xml)), threads).create_infer_request()
        if zero_copy:
            request.set_input_tensor(ov.Tensor(x, shared_memory=True))
        calls[i] = request.infer if zero_copy else (lambda r=request: r.infer({0: x}))
        for _ in range(10):
            calls[i]()
    repeats = []
    for _ in range(repeat):
        times = round_robin_ms(calls, runs, rotate=True, turn=turn)
        repeats.append(np.array([times[i] for i in range(len(calls))]).T)
    return repeats


def test_map(folder: Path, data: str, imgsz: int, work: Path, split: str = "test") -> float:
    """mAP50-95 of the IR (or model) ``folder`` on ``data``'s ``split`` (Ultralytics' validator, CPU, batch 1)."""
    from ultralytics import YOLO

    with quiet():
        res = YOLO(str(folder), task="detect").val(data=data, split=split, imgsz=imgsz, batch=1, device="cpu",
                                                   plots=False, verbose=False, workers=0, project=str(work),
                                                   name=folder.name)
    return round(float(res.box.map), 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=f"{DIGITS}/weights/yolov8n-digits.pt")
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--data", default=f"{DIGITS}/data/digits.yaml")
    ap.add_argument("--calib", default=f"{DIGITS}/data/calib/images")
    ap.add_argument("--calib-n", type=int, default=None,
                    help="calibrate NNCF and yolocc alike on the first N images of --calib (sorted; default: all)")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--turn", type=int, default=1,
                    help="runs in a row per model and round, the last timed (1: each run follows another model's)")
    ap.add_argument("--zero-copy", action="store_true",
                    help="time infer() alone, the image set once as a shared tensor and no outputs copied "
                         "(benchmark_app's way); default: infer({0: image}) with its copies, as a Python caller")
    ap.add_argument("--out", default="runs/bench/openvino.json")
    ap.add_argument("--also", nargs="+", default=[], metavar="NAME=IR_FOLDER",
                    help="more OpenVINO IR folders to time and validate beside the others")
    args = ap.parse_args()
    if args.turn < 1:
        ap.error(f"--turn must be at least 1, got {args.turn}")
    also = {}
    for item in args.also:
        name, _, folder = item.partition("=")
        if not name or not folder or not list(Path(folder).glob("*.xml")):
            print(f"--also {item}: expected NAME=IR_FOLDER, a folder with an OpenVINO .xml", file=sys.stderr)
            return 2
        also[name] = Path(folder)
    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        print(f"benchmarks/openvino.py needs openvino and nncf: .venv/bin/pip install openvino nncf ({e})",
              file=sys.stderr)
        return 2

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="yolocc-bench-ov-") as tmp_name:
        tmp = Path(tmp_name)
        folders: dict[str, Path] = {}
        calib = first_images(args.calib, args.calib_n, tmp / "calib") if args.calib_n else args.calib
        t0 = time.perf_counter()
        folders["fp32"] = ultralytics_export(args.model, args.imgsz, tmp)
        rows["fp32"] = {"what": "Ultralytics export(format='openvino'): FP32 IR",
                        "compile_s": round(time.perf_counter() - t0, 1)}
        t0 = time.perf_counter()
        folders["nncf"] = ultralytics_export(args.model, args.imgsz, tmp, calib_yaml(args.data, calib, tmp))
        rows["nncf"] = {"what": "Ultralytics export(format='openvino', int8=True): NNCF",
                        "compile_s": round(time.perf_counter() - t0, 1)}
        for name, passes in (("yolocc", ["int8"]), ("yolocc-prune", ["prune:0.25", "int8"])):
            t0 = time.perf_counter()
            folders[name] = yolocc_compile(args.model, passes, args.imgsz, calib,
                                           tmp / f"{name}_openvino_model")
            rows[name] = {"what": f"yolocc {' '.join('-p ' + p for p in passes)} --target openvino",
                          "compile_s": round(time.perf_counter() - t0, 1)}
        for name, folder in also.items():
            folders[name] = folder
            rows[name] = {"what": f"given: {folder}"}

        repeats = time_round_robin(folders, args.imgsz, args.runs, args.repeat, args.threads, args.turn,
                                   args.zero_copy)
        names = list(folders)
        nncf_i = names.index("nncf")
        for i, name in enumerate(names):
            rows[name]["latency_ms"] = round(statistics.median(float(np.median(r[:, i])) for r in repeats), 3)
            # Each run against the NNCF run next to it: robust to load that drifts during the benchmark.
            paired = [r[:, i] / r[:, nncf_i] for r in repeats]
            rows[name]["vs_nncf_per_repeat"] = [round(float(np.median(p)), 3) for p in paired]
            rows[name]["vs_nncf_paired_median"] = round(float(np.median(np.concatenate(paired))), 3)
            rows[name]["size_bytes"] = sum(f.stat().st_size for f in folders[name].iterdir())
            rows[name]["mAP50-95"] = test_map(folders[name], args.data, args.imgsz, tmp / "val")

    fp32, nncf_row, yolocc = rows["fp32"], rows["nncf"], rows["yolocc"]
    result = {
        "fp32_ms": fp32["latency_ms"], "nncf_ms": nncf_row["latency_ms"], "yolocc_ms": yolocc["latency_ms"],
        "fp32_map": fp32["mAP50-95"], "nncf_map": nncf_row["mAP50-95"], "yolocc_map": yolocc["mAP50-95"],
        "yolocc_prune_ms": rows["yolocc-prune"]["latency_ms"], "yolocc_prune_map": rows["yolocc-prune"]["mAP50-95"],
        "yolocc_vs_nncf_latency": yolocc["vs_nncf_paired_median"],
        "nncf_map_drop": round(fp32["mAP50-95"] - nncf_row["mAP50-95"], 4),
        "yolocc_map_drop": round(fp32["mAP50-95"] - yolocc["mAP50-95"], 4),
        "isa": cpu_isa(), "threads": args.threads, "runs": args.runs, "repeat": args.repeat, "turn": args.turn,
        "calib_n": args.calib_n,
        "call": "infer() on a shared input tensor, outputs not copied" if args.zero_copy else "infer({0: image})",
        "order": "round-robin, each round starting one model later",
        "openvino": ov.__version__, "nncf": nncf.__version__, "model": args.model, "imgsz": args.imgsz,
        "map_split": "test", "rows": rows,
    }
    print(f"\n{args.model} at {args.imgsz}; OpenVINO {ov.__version__} CPU ({cpu_isa()}), {args.threads} threads, "
          f"median of {args.repeat}x{args.runs} round-robin runs"
          f"{f' (each the last of {args.turn} in a row)' if args.turn > 1 else ''}; mAP50-95 on the test split")
    print(f"{'model':<14}{'latency ms':>11}{'vs fp32':>9}{'vs nncf per repeat':>34}{'size MB':>9}"
          f"{'mAP50-95':>10}{'drop pt':>9}")
    for name, r in rows.items():
        print(f"{name:<14}{r['latency_ms']:>11.2f}{r['latency_ms'] / fp32['latency_ms']:>9.2f}"
              f"{', '.join(f'{v:.2f}' for v in r['vs_nncf_per_repeat']):>34}{r['size_bytes'] / 1e6:>9.2f}"
              f"{r['mAP50-95']:>10.4f}{100 * (fp32['mAP50-95'] - r['mAP50-95']):>9.2f}")
    print(f"yolocc vs NNCF: latency {result['yolocc_vs_nncf_latency']:.3f}x (median paired ratio); mAP drop "
          f"{100 * result['yolocc_map_drop']:.2f} pt (NNCF {100 * result['nncf_map_drop']:.2f} pt)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

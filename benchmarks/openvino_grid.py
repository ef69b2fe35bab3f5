"""Benchmark: OpenVINO INT8 accuracy over several calibration draws, NNCF against yolocc's activation grids.

    # needs openvino and nncf (the ``bench`` extra, which ``make`` installs)
    .venv/bin/python benchmarks/openvino_grid.py [--draws 5] [--n 128] [--grids symmetric asymmetric hybrid]
        [--hybrid-strides 16]
        [--methods mean-minmax auto] [--model examples/digits/weights/yolov8n-digits.pt] [--imgsz 160]
        [--split test] [--out runs/bench/openvino-grid.json]

One calibration set decides a quantized model's accuracy by a few tenths of a point (on the digits
detector the same method moved 0.4 pt between two sets of 128 images), more than the test split's
paired standard error, so a single draw cannot rank two quantizers. Here every quantizer calibrates on
the same ``--draws`` sets: the first is the data's ``calib`` folder, the others disjoint sets of ``--n``
images of its ``train`` split (a seeded shuffle; symlinked with their labels, which Ultralytics' INT8
export reads). Per draw:
  nncf                 Ultralytics' ``export(format="openvino", int8=True)`` calibrated on the draw (NNCF)
  GRID/METHOD          ``yolocc -p int8:method=METHOD,activations=GRID --target openvino`` (``auto``: the
                       default method=auto, without ``--data``), for every ``--grids`` x ``--methods``
each scored by mAP50-95 from Ultralytics' validator on the IR folder, on the held-out ``test`` split
(``--split val``: the val split, to choose a default on before the test split confirms it),
against the FP32 IR (Ultralytics' ``export(format="openvino")``). ``GRID`` is ``qdq:activations``:
``symmetric`` (zero point 0, the openvino target's own), ``asymmetric`` (U8 with a zero point, NNCF's
grid) or ``hybrid`` (rows ``hybridK``: zero point 0 finer than stride K, asymmetric at K and coarser, one
row per ``--hybrid-strides K``). Writes ``{"fp32_map", "map_split", "draws": {DRAW: {ROW: {"test_map"
(or "val_map"), "drop_pts", ["chosen"]}}}, "summary": {ROW: {"mean_drop_pts", "sd_drop_pts", "draws"}},
"isa", "n", ...}``; speed is
benchmarks/openvino.py's (``--also`` an IR folder compiled with ``activations=asymmetric``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
# Run as a script, this folder comes first on sys.path, where openvino.py would shadow the openvino package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from yolocc.compiler.api import Compiler  # noqa: E402
from yolocc.compiler.measure import cpu_isa  # noqa: E402

DIGITS = ROOT / "examples" / "digits"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def openvino_bench() -> ModuleType:
    """benchmarks/openvino.py as a module (its export, calibration-YAML and validation helpers)."""
    spec = importlib.util.spec_from_file_location("yolocc_bench_openvino", BENCH / "openvino.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def draw_sets(data_root: Path, draws: int, n: int, folder: Path, seed: int = 0) -> dict[str, str]:
    """``{name: images folder}``: ``calib`` (the data's calib folder) and ``train1``..``train{draws-1}``,
    disjoint sets of ``n`` train images (seeded shuffle), linked with their labels under ``folder``.
    ``SystemExit`` with one line when the train split is too small for them."""
    sets = {"calib": str(data_root / "calib" / "images")}
    train = sorted(p for p in (data_root / "train" / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    random.Random(seed).shuffle(train)
    if (draws - 1) * n > len(train):
        raise SystemExit(f"--draws {draws} --n {n} needs {(draws - 1) * n} train images; the split has {len(train)}")
    for k in range(1, draws):
        images, labels = folder / f"train{k}" / "images", folder / f"train{k}" / "labels"
        images.mkdir(parents=True)
        labels.mkdir()
        for image in train[(k - 1) * n:k * n]:
            (images / image.name).symlink_to(image)
            label = data_root / "train" / "labels" / f"{image.stem}.txt"
            if label.exists():
                (labels / label.name).symlink_to(label)
        sets[f"train{k}"] = str(images)
    return sets


def summary(draws: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Per row, the mean and standard deviation over the draws of its drop (points)."""
    rows = {row for results in draws.values() for row in results}
    out = {}
    for row in sorted(rows):
        drops = [results[row]["drop_pts"] for results in draws.values() if row in results]
        out[row] = {"mean_drop_pts": round(statistics.fmean(drops), 3),
                    "sd_drop_pts": round(statistics.stdev(drops), 3) if len(drops) > 1 else None,
                    "draws": len(drops)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DIGITS / "weights" / "yolov8n-digits.pt"))
    ap.add_argument("--data", default=str(DIGITS / "data" / "digits.yaml"))
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--draws", type=int, default=5, help="calibration sets (the calib folder, then train draws)")
    ap.add_argument("--n", type=int, default=128, help="images per train draw")
    ap.add_argument("--grids", nargs="+", default=["symmetric", "asymmetric"],
                    choices=["symmetric", "asymmetric", "hybrid"])
    ap.add_argument("--hybrid-strides", nargs="+", type=int, default=[16],
                    help="--grids hybrid: one row per hybrid_stride (asymmetric U8 at this stride and coarser)")
    ap.add_argument("--methods", nargs="+", default=["mean-minmax", "auto"],
                    help="calibrate methods (auto: method=auto without --data)")
    ap.add_argument("--split", choices=("test", "val"), default="test", help="the split mAP50-95 is measured on")
    ap.add_argument("--out", default="runs/bench/openvino-grid.json")
    args = ap.parse_args(argv)
    if args.draws < 1 or args.n < 1:
        ap.error("--draws and --n must be at least 1")
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as e:
        print(f"benchmarks/openvino_grid.py needs openvino and nncf: .venv/bin/pip install openvino nncf ({e})",
              file=sys.stderr)
        return 2
    ovb = openvino_bench()
    key = f"{args.split}_map"
    data_root = Path(args.data).resolve().parent
    result: dict = {"model": args.model, "imgsz": args.imgsz, "n": args.n, "isa": cpu_isa(), "map_split": args.split,
                    "grids": args.grids, "methods": args.methods, "draws": {}}
    with tempfile.TemporaryDirectory(prefix="yolocc-bench-grid-") as tmp_name:
        tmp = Path(tmp_name)
        fp32 = ovb.ultralytics_export(args.model, args.imgsz, tmp)
        result["fp32_map"] = fp32_map = ovb.test_map(fp32, args.data, args.imgsz, tmp, args.split)
        for name, images in draw_sets(data_root, args.draws, args.n, tmp / "sets").items():
            work = tmp / name
            work.mkdir()
            rows: dict[str, dict] = {}
            nncf_ir = ovb.ultralytics_export(args.model, args.imgsz, work, ovb.calib_yaml(args.data, images, work))
            rows["nncf"] = {key: ovb.test_map(nncf_ir, args.data, args.imgsz, work, args.split)}
            grids = [(g, f"activations={g}") for g in args.grids if g != "hybrid"] + [
                (f"hybrid{k}", f"activations=hybrid,hybrid_stride={k}")
                for k in (args.hybrid_strides if "hybrid" in args.grids else [])]
            for grid, grid_args in grids:
                for method in args.methods:
                    spec = "int8:" + ("" if method == "auto" else f"method={method},") + grid_args
                    out = work / f"{grid}-{method}_openvino_model"
                    res = Compiler().compile(args.model, [spec], out, imgsz=args.imgsz, calib=images,
                                             target="openvino", measure=False)
                    cal = next(s for s in res.report.stages if s.name == "calibrate")
                    rows[f"{grid}/{method}"] = {key: ovb.test_map(out, args.data, args.imgsz, work, args.split),
                                                **({"chosen": cal.changes["chosen"]} if method == "auto" else {})}
            for row in rows.values():
                row["drop_pts"] = round((fp32_map - row[key]) * 100, 2)
            result["draws"][name] = rows
            print(f"{name:8s} " + "  ".join(f"{row} {-v['drop_pts']:+.2f}" for row, v in rows.items()), flush=True)
    result["summary"] = summary(result["draws"])
    print(f"\nmAP50-95 drop against the FP32 IR ({fp32_map:.4f}), {args.split} split, mean (sd) over "
          f"{len(result['draws'])} calibration draws; OpenVINO CPU ({result['isa']}):")
    for row, s in result["summary"].items():
        sd = "" if s["sd_drop_pts"] is None else f" ({s['sd_drop_pts']:.2f})"
        print(f"  {row:28s} {s['mean_drop_pts']:.2f} pt{sd}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

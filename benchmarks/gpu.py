"""GPU checks, for a machine with a CUDA device: distillation on CUDA end to end, and the training
throughput at 640 that a COCO-scale search estimate needs.

    python benchmarks/gpu.py [--out runs/bench/gpu.json] [--only NAME ...] [--epochs 3] [--batch 32]
                             [--imgsz 640] [--fraction 1.0] [--allow-cpu]

Checks (each recorded in the JSON under ``checks``, written again after every check, so a run stopped
early keeps what it finished):

- ``tensorrt``: ``-o model.engine`` on the digits detector. Where TensorRT is not installed this must be
  yolocc's one-line refusal with exit 2 (recorded: ``rc``, ``line``); where it is, the engine is built.
- ``throughput``: the digits detector distilled from itself at imgsz 640 (Ultralytics' trainer with
  yolocc's distillation, as ``-p distill`` runs it) for ``--epochs`` epochs with no val; the time of the
  epochs after the first and before the last (``epoch_s``) gives ``train_img_s`` (training images per
  second, teacher forward included). Configurations: 0 dataloader workers (yolocc's setting before
  session 14, still its CPU default) and 8 (its GPU default now, ``training.loader_workers``), and AMP
  off (yolocc's setting) and on. ``val_img_s``: the same with val on (the val split, once per epoch),
  from the difference.
- ``distill_cuda``: ``yolocc -p prune:0.25 -p distill:max_epochs=4 -p int8 --eval-split test`` on the
  digits detector, training on the first CUDA device (the default where torch sees one): ``rc``,
  ``wall_s``, and the report's test mAP50-95 of the input and of the result.

Top level: ``gpu`` (name, memory), ``torch``, ``cuda``, ``cpu`` (model name) and ``isa`` (the CPU's ISA,
``measure.cpu_isa``). Without a CUDA device it exits 2 with one line (``--allow-cpu``: run anyway, for a
smoke test of this script on a CPU machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from yolocc.compiler import measure  # noqa: E402

DIGITS = Path("examples/digits")
WEIGHTS = DIGITS / "weights/yolov8n-digits.pt"
DATA = DIGITS / "data/digits.yaml"
CALIB = DIGITS / "data/calib/images"
#: Without polars (an image that cannot install it), Ultralytics' trainer cannot read its results.csv
#: into the checkpoints it saves; this drops that metadata alone (recorded in the JSON as ``polars``).
POLARS_SHIM = ("import importlib.util\n"
               "if importlib.util.find_spec('polars') is None:\n"
               "    from ultralytics.engine.trainer import BaseTrainer\n"
               "    BaseTrainer.read_results_csv = lambda self: {}\n")
CLI = [sys.executable, "-c", POLARS_SHIM + "import sys\nfrom yolocc.compiler.cli import main\nsys.exit(main())"]
#: (dataloader workers, AMP, val each epoch): the training configurations ``throughput`` times.
CONFIGS = ((0, False, False), (8, False, False), (8, True, False), (8, True, True))


def facts() -> dict:
    """The machine: GPU, torch and CUDA versions, the CPU's model name and ISA."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown")
    gpu = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        gpu = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "count": torch.cuda.device_count()}
    import onnx
    import onnxruntime

    polars = "installed" if importlib.util.find_spec("polars") else "missing: results.csv not kept in checkpoints"
    return {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "polars": polars, "cpu": cpu, "cpu_cores": os.cpu_count(),
            "isa": measure.cpu_isa()}


def run_cli(args: list[str], timeout: float) -> dict:
    """Run the yolocc CLI; its exit status, wall time and last output line."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"rc": None, "wall_s": round(time.perf_counter() - start, 1), "line": f"timed out after {timeout}s"}
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - start, 1),
            "line": lines[-1] if lines else "", "tail": lines[-15:]}


def check_tensorrt(tmp: Path) -> dict:
    """``-o model.engine``: a built engine, or the one-line refusal (exit 2) without TensorRT."""
    try:
        import tensorrt  # noqa: F401

        installed = tensorrt.__version__
    except ImportError as e:
        installed = f"not importable: {e}"
    out = tmp / "digits.engine"
    result = run_cli([str(WEIGHTS), "-p", "int8", "--calib", str(CALIB), "--target", "tensorrt", "-o", str(out),
                      "--no-measure"], timeout=600)
    if result["rc"] == 2:  # the one-line refusal: its line says it all
        result.pop("tail")
    return {"tensorrt": installed, **result, "engine_bytes": out.stat().st_size if out.exists() else None}


def train_images(split: str) -> int:
    """Images in one split of the digits fixture."""
    return len(list((DIGITS / "data" / split / "images").glob("*.png")))


def time_training(workers: int, amp: bool, val: bool, epochs: int, batch: int, imgsz: int, fraction: float) -> dict:
    """Distil the digits detector from itself at ``imgsz`` for ``epochs`` epochs on ``fraction`` of the train
    split; seconds per epoch, from the epochs after the first and before the last."""
    from ultralytics import YOLO
    from ultralytics.engine import trainer as ul_trainer

    from yolocc.compiler.training import DistillSettings
    from yolocc.plugins import ultralytics_training as ut

    # Ultralytics' AMP check downloads a reference model; this machine is offline (recorded in the JSON).
    ul_trainer.check_amp = lambda model: True
    exec(POLARS_SHIM, {})
    module = YOLO(str(WEIGHTS)).model
    ut.set_export_mode(module, False)
    for p in module.parameters():
        p.requires_grad_(True)
    stamps: list[float] = []
    overrides = dict(epochs=epochs, imgsz=imgsz, batch=batch, fraction=fraction, workers=workers, amp=amp, val=val,
                     warmup_epochs=0, close_mosaic=0, model=str(WEIGHTS),
                     device="0" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    _, trainer_facts = ut.train(module, "detect", str(DATA), overrides, teacher=str(WEIGHTS),
                                distill=DistillSettings(),
                                progress=lambda epoch, total: stamps.append(time.perf_counter()))
    total = time.perf_counter() - start
    # Epochs after the first, less the last (which also validates, as Ultralytics' final epoch always does).
    later = [b - a for a, b in zip(stamps, stamps[1:])][:-1]
    epoch_s = sum(later) / len(later) if later else float("nan")
    row = {"workers": workers, "amp": amp, "val": val, "batch": batch, "epochs": epochs,
           "epoch_s": round(epoch_s, 2), "first_epoch_s": round(stamps[0] - start, 2) if stamps else None,
           "total_s": round(total, 1), "train_img_s": round(train_images("train") * fraction / epoch_s, 1),
           "epochs_run": trainer_facts.get("epochs_run")}
    if torch.cuda.is_available():
        row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def check_throughput(epochs: int, batch: int, imgsz: int, fraction: float) -> dict:
    """``time_training`` for each of ``CONFIGS``; ``val_img_s`` from the val-on and val-off runs."""
    rows = []
    for workers, amp, val in CONFIGS:
        print(f"  throughput: workers={workers} amp={amp} val={val}", flush=True)
        rows.append(time_training(workers, amp, val, epochs, batch, imgsz, fraction))
        print(f"    {rows[-1]}", flush=True)
    result = {"imgsz": imgsz, "train_images": round(train_images("train") * fraction),
              "val_images": train_images("val"),
              "amp_check": "skipped (offline)", "runs": rows}
    off = next((r for r in rows if r["workers"] == 8 and r["amp"] and not r["val"]), None)
    on = next((r for r in rows if r["workers"] == 8 and r["amp"] and r["val"]), None)
    if off and on and on["epoch_s"] > off["epoch_s"]:
        result["val_img_s"] = round(result["val_images"] / (on["epoch_s"] - off["epoch_s"]), 1)
    return result


def check_distill_cuda(tmp: Path) -> dict:
    """``-p prune:0.25 -p distill:max_epochs=4 -p int8`` end to end, training on the default device."""
    report = tmp / "distill.json"
    result = run_cli([str(WEIGHTS), "-p", "prune:0.25", "-p", "distill:max_epochs=4", "-p", "int8", "--data",
                      str(DATA), "--calib", str(CALIB), "--eval-split", "test", "-o", str(tmp / "distill.onnx"),
                      "--report", str(report), "--latency-runs", "20"], timeout=900)
    if report.exists():
        doc = json.loads(report.read_text())
        result["stages"] = [{k: s.get(k) for k in ("name", "metrics", "latency_ms", "facts", "time_s")}
                            for s in doc.get("stages", [])]
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench/gpu.json")
    ap.add_argument("--only", nargs="+", choices=("tensorrt", "throughput", "distill_cuda"),
                    default=["tensorrt", "throughput", "distill_cuda"])
    ap.add_argument("--epochs", type=int, default=3, help="throughput: epochs per configuration (>= 3)")
    ap.add_argument("--imgsz", type=int, default=640, help="throughput: training image size")
    ap.add_argument("--fraction", type=float, default=1.0, help="throughput: fraction of the train split")
    ap.add_argument("--batch", type=int, default=32, help="throughput: batch size")
    ap.add_argument("--allow-cpu", action="store_true", help="run without a CUDA device (a smoke test)")
    args = ap.parse_args(argv)
    if args.epochs < 3:
        ap.error("--epochs must be at least 3 (the first and the last epoch are not timed)")
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("benchmarks/gpu.py: torch sees no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    if not DATA.exists():
        print(f"benchmarks/gpu.py: {DATA} is missing; run examples/digits/make_dataset.py first", file=sys.stderr)
        return 2
    result = {**facts(), "checks": {}}
    print(json.dumps({k: v for k, v in result.items() if k != "checks"}), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="yolocc-gpu-") as tmp:
        for name in args.only:
            print(f"{name} ...", flush=True)
            start = time.perf_counter()
            try:
                if name == "tensorrt":
                    check = check_tensorrt(Path(tmp))
                elif name == "throughput":
                    check = check_throughput(args.epochs, args.batch, args.imgsz, args.fraction)
                else:
                    check = check_distill_cuda(Path(tmp))
            except Exception as e:  # a failed check is a finding: record it and go on to the next
                check = {"error": f"{type(e).__name__}: {e}"}
            check["check_s"] = round(time.perf_counter() - start, 1)
            result["checks"][name] = check
            print(f"{name}: {json.dumps(check)[:1500]}", flush=True)
            out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

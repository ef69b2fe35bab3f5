#!/usr/bin/env python
"""Train the yolocc digit fixture models with the Ultralytics trainer, offline (CPU by default).

* detector:     ``YOLO("yolov8n.yaml")``      (from scratch) on ``data/digits.yaml``,      imgsz 160
* classifier:   ``YOLO("yolov8n-cls.yaml")``  (from scratch) on ``data/cls``,              imgsz 64
* segmentation: ``YOLO("yolov8n-seg.yaml")``  (from scratch) on ``data/digits-seg.yaml``,  imgsz 160
* pose:         ``YOLO("yolov8n-pose.yaml")`` (from scratch) on ``data/digits-pose.yaml``, imgsz 160
* oriented box: ``YOLO("yolov8n-obb.yaml")``  (from scratch) on ``data/digits-obb.yaml``,  imgsz 160

Nothing is downloaded: ``YOLO_OFFLINE=1`` is set, models are built from the bundled YAMLs
(``pretrained=False``), ``amp=False`` skips the AMP check (it downloads a model) and ``plots=False``
skips plotting (it downloads a font).

After training, ``best.pt`` is re-validated on the val split, copied to ``examples/digits/weights/``
(``TARGETS`` names the files), and the command, seed, epochs,
wall time and metrics are recorded in ``weights/train_info.json`` and rendered into ``weights/README.md``.

Run from the repository root (generate the data first)::

    python examples/digits/make_dataset.py
    nice -n 19 python examples/digits/train.py --task det --epochs 40
    nice -n 19 python examples/digits/train.py --task cls --epochs 30
    nice -n 19 python examples/digits/train.py --task seg --epochs 40     # likewise pose, obb
"""

from __future__ import annotations

import os

os.environ.setdefault("YOLO_OFFLINE", "1")  # before importing ultralytics

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
WEIGHTS = HERE / "weights"
INFO = WEIGHTS / "train_info.json"

TARGETS = {"det": "yolov8n-digits.pt", "cls": "yolov8n-cls-digits.pt", "seg": "yolov8n-seg-digits.pt",
           "pose": "yolov8n-pose-digits.pt", "obb": "yolov8n-obb-digits.pt"}
#: The Ultralytics model YAML and data of each task (data relative to ``DATA``).
TASK_MODEL = {"det": ("yolov8n.yaml", "digits.yaml"), "seg": ("yolov8n-seg.yaml", "digits-seg.yaml"),
              "pose": ("yolov8n-pose.yaml", "digits-pose.yaml"), "obb": ("yolov8n-obb.yaml", "digits-obb.yaml"),
              "cls": ("yolov8n-cls.yaml", "cls")}
TITLES = {"det": "Detector", "cls": "Classifier", "seg": "Segmentation", "pose": "Pose (5 keypoints)",
          "obb": "Oriented boxes"}


def rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def train(task: str, args) -> dict:
    import torch
    import ultralytics
    from ultralytics import YOLO

    model_cfg, data_name = TASK_MODEL[task]
    model_cfg = args.model or model_cfg
    if task != "cls":
        data, imgsz = rel(args.data or DATA / data_name), args.imgsz or 160
        extra = dict(fliplr=0.0, mosaic=1.0, close_mosaic=args.close_mosaic)  # mirrored digits are not digits
        optimizer, lr0 = args.optimizer or "auto", args.lr0 or 0.01
    else:
        data, imgsz = rel(args.data or DATA / data_name), args.imgsz or 64
        # From scratch at 64 px, the Ultralytics classify defaults (randaugment, erasing=0.4, auto AdamW lr 7e-4)
        # kept the loss at chance for 40 epochs; plain AdamW 1e-3 without randaugment/erasing learns.
        extra = dict(fliplr=0.0, erasing=args.erasing, auto_augment=args.auto_augment or None)
        optimizer, lr0 = args.optimizer or "AdamW", args.lr0 or 0.001
    name = args.name or f"digits-{task}"
    train_kwargs = dict(
        data=data,
        imgsz=imgsz,
        epochs=args.epochs,
        batch=args.batch,
        device=args.device,
        workers=args.workers,
        seed=args.seed,
        deterministic=True,
        pretrained=False,
        amp=False,
        plots=False,
        cache=False,  # Ultralytics warns that cache="ram" may be non-deterministic; PNG decode is cheap here
        project=str(Path(args.project).resolve()),  # relative projects land under runs/<task>/ in Ultralytics
        name=name,
        exist_ok=True,
        optimizer=optimizer,
        lr0=lr0,
        patience=0,  # never stop early: the fixture is defined by its epoch count
        verbose=True,
        **extra,
    )
    t0 = time.time()
    model = YOLO(model_cfg)
    model.train(**train_kwargs)
    wall = time.time() - t0
    save_dir = Path(model.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"

    # independent re-validation of the saved best checkpoint
    val = YOLO(str(best)).val(data=data, imgsz=imgsz, batch=args.batch, device="cpu", plots=False, workers=0)
    if task == "cls":
        metrics = {"top1": round(float(val.top1), 4), "top5": round(float(val.top5), 4)}
    else:
        metrics = {
            "mAP50-95": round(float(val.box.map), 4),
            "mAP50": round(float(val.box.map50), 4),
            "precision": round(float(val.box.mp), 4),
            "recall": round(float(val.box.mr), 4),
        }
        extra_metric = {"seg": ("mask", "seg"), "pose": ("pose", "pose")}.get(task)
        if extra_metric:  # the task's own metric: mask or keypoint mAP
            name, attr = extra_metric
            part = getattr(val, attr)
            metrics.update({f"{name} mAP50-95": round(float(part.map), 4), f"{name} mAP50": round(float(part.map50), 4)})

    out = WEIGHTS / (f"{Path(model_cfg).stem}-digits.pt" if args.model else TARGETS[task])
    if not args.no_copy:
        WEIGHTS.mkdir(parents=True, exist_ok=True)
        shutil.copy2(best, out)
    info = {
        "task": task,
        "weights": rel(out),
        "size_bytes": out.stat().st_size if out.exists() else None,
        "model": model_cfg,
        "data": data,
        "command": "nice -n 19 " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), rel(Path(sys.argv[0])), *sys.argv[1:]]),
        "train_kwargs": {**train_kwargs, "project": args.project},
        "epochs": args.epochs,
        "seed": args.seed,
        "wall_time_s": round(wall, 1),
        "metrics_val": metrics,
        "run_dir": rel(save_dir),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ultralytics": ultralytics.__version__,
            "cpu_threads": torch.get_num_threads(),
        },
    }
    print(json.dumps(info, indent=2))
    return info


def write_readme(all_info: dict):
    lines = [
        "# Digit fixture weights",
        "",
        "Generated by `examples/digits/train.py` (this file is rewritten by it; do not edit by hand).",
        "Every model is trained **from scratch** (`pretrained=False`) with the Ultralytics trainer on the",
        "synthetic scikit-learn-digits data made by `examples/digits/make_dataset.py` (default arguments, seed 0).",
        "",
        "Regenerate (from the repository root):",
        "",
        "```bash",
        ".venv/bin/python examples/digits/make_dataset.py",
    ]
    keys = [*(t for t in TARGETS if t in all_info), *(k for k in all_info if k not in TARGETS)]  # then --model runs
    for key in keys:
        lines.append(all_info[key]["command"])
    lines += ["```", ""]
    for key in keys:
        task, _, model = key.partition(":")
        title = TITLES[task] + (f" ({model})" if model else "")
        i = all_info[key]
        kw = i["train_kwargs"]
        m = ", ".join(f"{k} **{v}**" for k, v in i["metrics_val"].items())
        size = f"{i['size_bytes'] / 1e6:.1f} MB" if i.get("size_bytes") else "?"
        lines += [
            f"## {title}: `{Path(i['weights']).name}` ({size})",
            "",
            f"- model: `{i['model']}`, data: `{i['data']}`, imgsz {kw['imgsz']}, batch {kw['batch']}",
            f"- epochs: {i['epochs']}, seed: {i['seed']} (`deterministic=True`), device: {i.get('device', 'cpu')}"
            f" ({i['versions']['cpu_threads']} torch thread(s), set by Ultralytics), workers: {kw['workers']}",
            f"- wall time (train incl. per-epoch val): {i['wall_time_s']:.0f} s",
            f"- val metrics of best.pt (re-validated after training): {m}",
            f"- versions: torch {i['versions']['torch']}, ultralytics {i['versions']['ultralytics']},"
            f" python {i['versions']['python']}",
            f"- trainer arguments: `{json.dumps(kw)}`",
            "",
        ]
    lines += [
        "A model whose device is a GPU was trained on one lent for a few minutes (`--device 0`); the same command",
        "with `--device cpu --workers 0` trains it on the CPU (the detector's 40 epochs took 28 min on one core).",
        "Training uses `seed=0, deterministic=True`, but bit-identical weights on another machine, thread count",
        "or library version have not been checked. The data generator itself is deterministic (same seed,",
        "same files).",
        "",
    ]
    (WEIGHTS / "README.md").write_text("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=(*TARGETS, "both"), default="both", help="both: det and cls")
    p.add_argument("--epochs", type=int, default=None, help="default: 30 (cls) / 40 (the others)")
    p.add_argument("--model", default=None, help="another Ultralytics model YAML for the task, e.g. yolo26n.yaml "
                   "(weights: <its stem>-digits.pt)")
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA device such as 0 (default: %(default)s)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--imgsz", type=int, default=None, help="default: 160 (det) / 64 (cls)")
    p.add_argument("--data", type=Path, default=None, help="default: the task's data under data/ (TASK_MODEL)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--close-mosaic", type=int, default=10)
    p.add_argument("--erasing", type=float, default=0.0, help="cls random-erasing probability")
    p.add_argument("--auto-augment", default="", help="cls auto augment policy, e.g. randaugment ('' for none)")
    p.add_argument("--optimizer", default=None, help="default: auto (det) / AdamW (cls)")
    p.add_argument("--lr0", type=float, default=None, help="default: 0.01 (det, ignored by auto) / 0.001 (cls)")
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name", default=None)
    p.add_argument("--no-copy", action="store_true", help="do not copy weights / update README (trial runs)")
    args = p.parse_args(argv)

    tasks = ("det", "cls") if args.task == "both" else (args.task,)
    for task in tasks:
        targs = argparse.Namespace(**vars(args))
        if targs.epochs is None:
            targs.epochs = 30 if task == "cls" else 40
        info = train(task, targs)
        if not args.no_copy:
            # re-read just before writing: det and cls may be trained by two concurrent processes
            all_info = json.loads(INFO.read_text()) if INFO.exists() else {}
            all_info[task if not args.model else f"{task}:{Path(args.model).stem}"] = info
            WEIGHTS.mkdir(parents=True, exist_ok=True)
            INFO.write_text(json.dumps(all_info, indent=2) + "\n")
            write_readme(all_info)


if __name__ == "__main__":
    main()

"""``finetune``: recover accuracy after pruning by training on ``--data`` with Ultralytics' trainer.

Plain fine-tuning on hard labels, no teacher: the baseline a distillation pass has to beat.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from pathlib import Path

from yolocc.compiler.errors import UsageError
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult

log = logging.getLogger(__name__)


def _trainer_class(task: str):
    from ultralytics.models import yolo

    trainers = {"detect": yolo.detect.DetectionTrainer, "segment": yolo.segment.SegmentationTrainer,
                "pose": yolo.pose.PoseTrainer, "obb": yolo.obb.OBBTrainer,
                "classify": yolo.classify.ClassificationTrainer}
    if task not in trainers:
        raise UsageError(f"finetune: no Ultralytics trainer for task '{task}'")
    return trainers[task]


class Finetune(Pass):
    """Train the (pruned) model on --data with Ultralytics' trainer, hard labels only."""

    name = "finetune"
    stage = "torch"
    preserves = ("canonical",)
    params = (
        Param("epochs", "int", 10, "training epochs", low=1, high=10000),
        Param("lr", "float", 0.001, "initial learning rate (AdamW)", low=1e-7, high=1.0),
        Param("batch", "int", 16, "batch size", low=1, high=4096),
        Param("imgsz", "int", None, "training image size (default: the model's input size)", low=32, high=8192),
        Param("seed", "int", 0, "random seed", low=0, high=2**31 - 1),
    )

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        if "ultralytics" not in ir.meta:
            raise UsageError("finetune needs an Ultralytics model (the training loop is Ultralytics')")
        data = ctx.option("data")
        if not data:
            raise UsageError("finetune needs labelled data: pass --data DATA.yaml (or a classify folder)")
        import torch

        from yolocc.plugins.ultralytics_frontend import set_export_mode

        a = self.args
        module = ir.module
        set_export_mode(module, False)
        for p in module.parameters():
            p.requires_grad_(True)
        dfl = [m for m in module.modules() if type(m).__name__ in ("DFL", "DFLLastAxis")]
        with tempfile.TemporaryDirectory(prefix="yolocc-train-") as tmp, \
                contextlib.redirect_stdout(sys.stderr):  # Ultralytics prints; stdout is for --json
            trainer = _trainer_class(ir.task)(overrides=dict(
                data=str(data), epochs=a["epochs"], imgsz=a["imgsz"] or ir.input.imgsz, batch=a["batch"],
                lr0=a["lr"], optimizer="AdamW", seed=a["seed"], deterministic=True, workers=0,
                device="0" if torch.cuda.is_available() else "cpu", amp=False, plots=False,
                pretrained=False, project=tmp, name="finetune", exist_ok=True, patience=0, verbose=False,
                close_mosaic=max(1, a["epochs"] // 2), warmup_epochs=0,
                model=ir.source if Path(ir.source).is_file() else "yolov8n.yaml"))  # replaced below
            trainer.model = module
            trainer.train()
            best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
            ckpt = torch.load(best, map_location="cpu", weights_only=False)
            trained = (ckpt.get("ema") or ckpt["model"]).float().eval()
            fitness = float(getattr(trainer, "best_fitness", 0.0) or 0.0)
        for m in trained.modules():  # fixed layers stay fixed
            if type(m).__name__ in ("DFL", "DFLLastAxis"):
                for p in m.parameters():
                    p.requires_grad_(False)
        for p in trained.parameters():
            p.requires_grad_(False)
        set_export_mode(trained, True)
        ir.set_module(trained)
        del dfl
        return PassResult(True, {"epochs": a["epochs"], "checkpoint": best.name, "best_fitness": round(fitness, 4)})

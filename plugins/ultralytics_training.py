"""Training with Ultralytics' trainer for the ``finetune`` and ``distill`` passes.

The pruned module is handed to the trainer as-is (its own ``get_model`` would rebuild the unpruned
architecture). For distillation the student is wrapped in ``OutputKDDistillation``: Ultralytics'
``DistillationModel`` (neck-feature distillation through a learned projector, score-weighted L2)
plus output distillation of the class logits and the DFL box distributions with a temperature.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from ultralytics.nn.distill_model import DistillationModel

from yolocc.compiler.errors import UsageError


def trainer_class(task: str):
    from ultralytics.models import yolo

    trainers = {"detect": yolo.detect.DetectionTrainer, "segment": yolo.segment.SegmentationTrainer,
                "pose": yolo.pose.PoseTrainer, "obb": yolo.obb.OBBTrainer,
                "classify": yolo.classify.ClassificationTrainer}
    if task not in trainers:
        raise UsageError(f"no Ultralytics trainer for task '{task}'")
    return trainers[task]


class OutputKDDistillation(DistillationModel):
    """Ultralytics' feature distillation plus temperature-scaled output distillation."""

    kd_weight: float = 1.0
    temperature: float = 2.0

    def loss(self, batch, preds=None):
        total, items = super().loss(batch, preds)
        if not self.training or self.kd_weight == 0:
            return total, items
        n = len(self.feats_idx) - 1  # the head's outputs, captured by the feature hooks
        t_out = self.decouple_outputs(self._teacher_feats[n], branch="one2many")
        s_out = self.decouple_outputs(self._student_feats[n], branch="one2many")
        t, T = self.temperature, self.temperature
        t_scores, s_scores = t_out["scores"].detach(), s_out["scores"]
        weight = t_scores.sigmoid().max(1, keepdim=True).values  # (B, 1, A): where the teacher sees objects
        cls_kd = (F.binary_cross_entropy_with_logits(s_scores / t, (t_scores / t).sigmoid(), reduction="none")
                  * weight).sum() / (weight.sum() * s_scores.shape[1] + 1e-9) * T * T
        b, _, a = s_out["boxes"].shape
        t_box = t_out["boxes"].detach().view(b, 4, -1, a)
        s_box = s_out["boxes"].view(b, 4, -1, a)
        dfl_kd = (F.kl_div(F.log_softmax(s_box / T, 2), F.softmax(t_box / T, 2), reduction="none").sum(2)
                  * weight).sum() / (weight.sum() * 4 + 1e-9) * T * T
        kd = (cls_kd + dfl_kd) * self.kd_weight
        items["dis_loss"] = items["dis_loss"] + kd.detach()
        total = total.clone()
        total[-1] = total[-1] + kd * batch["img"].shape[0]
        return total, items


@contextlib.contextmanager
def _output_to_stderr():
    """Ultralytics prints and logs to stdout, which belongs to --json output: send it to stderr."""
    handlers = [h for h in logging.getLogger("ultralytics").handlers if isinstance(h, logging.StreamHandler)]
    old = [h.setStream(sys.stderr) for h in handlers]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for h, stream in zip(handlers, old):
            h.setStream(stream)


def train(module, task: str, data: str, overrides: dict[str, Any], teacher: str | None = None,
          kd_weight: float = 1.0, temperature: float = 2.0):
    """Train ``module`` (an Ultralytics model in train mode); return (best module, trainer facts)."""
    with tempfile.TemporaryDirectory(prefix="yolocc-train-") as tmp, _output_to_stderr():
        args = dict(data=str(data), workers=0, amp=False, plots=False, pretrained=False, project=tmp,
                    exist_ok=True, patience=0, verbose=False, deterministic=True,
                    device="0" if torch.cuda.is_available() else "cpu", **overrides)
        if teacher:
            args["distill_model"] = teacher
        trainer = trainer_class(task)(overrides=args)
        if teacher:
            module.args = trainer.args
            wrapped = OutputKDDistillation(teacher_model=teacher, student_model=module)
            wrapped.kd_weight, wrapped.temperature = kd_weight, temperature
            trainer.model = wrapped
        else:
            trainer.model = module
        trainer.train()
        best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
        ckpt = torch.load(best, map_location="cpu", weights_only=False)
        trained = ckpt.get("ema") or ckpt["model"]
        trained = getattr(trained, "student_model", trained).float().eval()
        return trained, {"checkpoint": best.name, "best_fitness": round(float(trainer.best_fitness or 0.0), 4)}

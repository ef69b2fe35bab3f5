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


def trainer_class(task: str, max_grad_norm: float = 10.0):
    """Ultralytics' trainer for ``task``, clipping gradients at ``max_grad_norm`` (Ultralytics: 10)."""
    from ultralytics.models import yolo

    trainers = {"detect": yolo.detect.DetectionTrainer, "segment": yolo.segment.SegmentationTrainer,
                "pose": yolo.pose.PoseTrainer, "obb": yolo.obb.OBBTrainer,
                "classify": yolo.classify.ClassificationTrainer}
    if task not in trainers:
        raise UsageError(f"no Ultralytics trainer for task '{task}'")
    base = trainers[task]

    class Trainer(base):
        def optimizer_step(self):
            """The standard AMP step (unscale, clip, step, update, EMA) with our clipping norm."""
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad()
            if self.ema:
                self.ema.update(self.model)

    Trainer.__name__ = base.__name__
    return Trainer


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


class ClassifyKDLoss:
    """``(1 - alpha) * CE + alpha * T^2 * KL(teacher || student)`` for classifiers.

    With ``standardize`` each logit vector is z-scored, ``(z - mean) / (std + eps)``, before the
    temperature softmax (logit standardization); with ``gamma < 1`` the temperature follows the
    curriculum ``T(e) = max(1, T0 * gamma**e)`` over epochs (``epoch`` is set by the trainer).
    """

    def __init__(self, teacher, alpha: float = 0.7, t0: float = 5.0, gamma: float = 1.0, standardize: bool = True):
        self.teacher, self.alpha, self.t0, self.gamma, self.standardize = teacher.eval(), alpha, t0, gamma, standardize
        self.epoch = 0
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def temperature(self) -> float:
        return max(1.0, self.t0 * self.gamma ** self.epoch)

    def _z(self, logits):
        if not self.standardize:
            return logits
        return (logits - logits.mean(1, keepdim=True)) / (logits.std(1, keepdim=True) + 1e-7)

    def __call__(self, preds, batch):
        logits = preds[1] if isinstance(preds, (list, tuple)) else preds
        ce = F.cross_entropy(logits, batch["cls"], reduction="mean")
        with torch.no_grad():
            t_out = self.teacher(batch["img"])
        t_logits = t_out[1] if isinstance(t_out, (list, tuple)) else t_out
        T = self.temperature()
        kl = F.kl_div(F.log_softmax(self._z(logits) / T, 1), F.softmax(self._z(t_logits) / T, 1),
                      reduction="batchmean") * T * T
        loss = (1 - self.alpha) * ce + self.alpha * kl
        return loss, {"loss": loss.detach()}


def train(module, task: str, data: str, overrides: dict[str, Any], teacher: str | None = None,
          kd_weight: float = 1.0, temperature: float = 2.0, classify_kd: dict | None = None,
          max_grad_norm: float = 10.0):
    """Train ``module`` (an Ultralytics model in train mode); return (best module, trainer facts).

    Detection with ``teacher``: OutputKDDistillation. Classification with ``teacher`` and
    ``classify_kd`` (alpha, t0, gamma, standardize): ClassifyKDLoss as the student's criterion.
    """
    with tempfile.TemporaryDirectory(prefix="yolocc-train-") as tmp, _output_to_stderr():
        args = dict(data=str(data), workers=0, amp=False, plots=False, pretrained=False, project=tmp,
                    exist_ok=True, patience=0, verbose=False, deterministic=True,
                    device="0" if torch.cuda.is_available() else "cpu", **overrides)
        if teacher and task != "classify":
            args["distill_model"] = teacher
        trainer = trainer_class(task, max_grad_norm)(overrides=args)
        if teacher and task == "classify":
            from ultralytics.nn.tasks import load_checkpoint

            criterion = ClassifyKDLoss(load_checkpoint(teacher)[0].float(), **(classify_kd or {}))
            module.criterion = criterion
            trainer.add_callback("on_train_epoch_start", lambda tr: setattr(criterion, "epoch", tr.epoch))
            trainer.model = module
        elif teacher:
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

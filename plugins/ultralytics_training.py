"""Training with Ultralytics' trainer for the ``finetune`` and ``distill`` passes.

The pruned module is handed to the trainer as-is (its own ``get_model`` would rebuild the unpruned
architecture). For distillation the student is wrapped in ``OutputKDDistillation``: Ultralytics'
``DistillationModel`` (neck-feature distillation through a learned projector, score-weighted L2)
plus output distillation of the class logits and the DFL box distributions with a temperature.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from ultralytics.nn.distill_model import DistillationModel

from yolocc.compiler.errors import UsageError

from yolocc.compiler.training import AutoStop, DistillSettings, TrainSettings

from .ultralytics_model import checkpoint_dict, set_export_mode

#: Default (optimizer, gradient-clipping norm) per task: the seed paper's Adam with clipping at 1.0
#: for classifiers (equal to AdamW/10 on the digits classifier's test split, see the README), and
#: Ultralytics' own AdamW/10 for detection and the other tasks.
TASK_OPTIMIZER = {"classify": ("Adam", 1.0), "detect": ("AdamW", 10.0)}
DISTILL_TASKS = ("detect", "segment", "pose", "obb", "classify")


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


def _anchor_mean(loss: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``loss`` (B, C, A) over anchors weighted by ``weight`` (B, 1, A) and over its C channels."""
    return (loss * weight).sum() / (weight.sum() * loss.shape[1] + 1e-9)


def segment_kd(s_out: dict, t_out: dict, weight: torch.Tensor) -> torch.Tensor:
    """Segment's own outputs: MSE on the mask coefficients ``mask_coefficient`` (B, nm, A), weighted per
    anchor by ``weight`` (B, 1, A), plus MSE on the prototypes ``proto`` (B, nm, H, W) over the whole map
    (every mask is a mix of all prototypes, wherever the object is)."""
    coef = _anchor_mean(F.mse_loss(s_out["mask_coefficient"], t_out["mask_coefficient"].detach(),
                                   reduction="none"), weight)
    return coef + F.mse_loss(s_out["proto"], t_out["proto"].detach())


def pose_kd(s_out: dict, t_out: dict, weight: torch.Tensor, kpt_shape: tuple[int, int]) -> torch.Tensor:
    """Pose's keypoints ``kpts`` (B, K*D, A), raw (not decoded; channel ``k*D + d``, grid-cell offsets for
    d = 0, 1 and, when D == 3, the visibility logit at d = 2): squared xy distance weighted by the anchor
    ``weight`` (B, 1, A) and by the teacher's visibility sigmoid, plus BCE of the student's visibility
    logits to the teacher's sigmoid (anchor-weighted) less the target's own entropy (the Bernoulli KL:
    the same gradient, and zero when the student matches the teacher)."""
    k, d = kpt_shape
    b, _, a = s_out["kpts"].shape
    s = s_out["kpts"].view(b, k, d, a)
    t = t_out["kpts"].detach().view(b, k, d, a)
    xy = (s[:, :, :2] - t[:, :, :2]).pow(2).sum(2)  # (B, K, A)
    if d < 3:
        return _anchor_mean(xy, weight) / 2
    visible = t[:, :, 2].sigmoid()  # (B, K, A): a keypoint the teacher sees as hidden costs nothing
    xy_kd = _anchor_mean(xy * visible, weight) / 2
    vis_kd = _anchor_mean(F.binary_cross_entropy_with_logits(s[:, :, 2], visible, reduction="none")
                          - F.binary_cross_entropy_with_logits(t[:, :, 2], visible, reduction="none"), weight)
    return xy_kd + vis_kd


def obb_kd(s_out: dict, t_out: dict, weight: torch.Tensor) -> torch.Tensor:
    """OBB's rotation ``angle`` (B, 1, A), radians in [-pi/4, 3pi/4): ``1 - cos(2 * (s - t))`` weighted
    per anchor by ``weight`` (B, 1, A). Periodic with the box's own period pi, so the two ends of the
    range (the same box) cost nothing, unlike an L2 that would pull a student at -pi/4 across the whole
    range to a teacher at 3pi/4; near the teacher it is 2 * dtheta^2, an L2."""
    return _anchor_mean(1 - torch.cos(2 * (s_out["angle"] - t_out["angle"].detach())), weight)


def task_kd_term(task: str, head) -> Any:
    """The distillation term of ``task``'s own outputs, ``fn(s_out, t_out, weight) -> scalar``, for the
    Detect-subclass ``head``; None for detect (class scores and boxes only)."""
    if task == "pose":
        return functools.partial(pose_kd, kpt_shape=tuple(head.kpt_shape))
    return {"segment": segment_kd, "obb": obb_kd}.get(task)


class OutputKDDistillation(DistillationModel):
    """Ultralytics' feature distillation plus temperature-scaled output distillation: class scores and
    DFL boxes (``kd_weight``), and each task's own outputs (``task_weight``, see ``task_kd_term``)."""

    kd_weight: float = 1.0
    temperature: float = 2.0
    task_weight: float = 1.0
    kd_task: str = "detect"

    def loss(self, batch, preds=None):
        total, items = super().loss(batch, preds)
        task_term = task_kd_term(self.kd_task, self.student_model.model[-1]) if self.task_weight else None
        if not self.training or (self.kd_weight == 0 and task_term is None):
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
        if task_term is not None:
            kd = kd + task_term(s_out, t_out, weight) * self.task_weight
        items["dis_loss"] = items["dis_loss"] + kd.detach()
        total = total.clone()
        total[-1] = total[-1] + kd * batch["img"].shape[0]
        return total, items


@contextlib.contextmanager
def _trainer_output():
    """Ultralytics prints and logs to stdout, which belongs to --json output: its training log goes to
    stderr when yolocc logs verbosely (-v), and nowhere otherwise, so that the CLI's progress display
    (epochs, ETA) is the one thing on the terminal."""
    sink = sys.stderr if logging.getLogger("yolocc").isEnabledFor(logging.INFO) else open(os.devnull, "w")
    handlers = [h for h in logging.getLogger("ultralytics").handlers if isinstance(h, logging.StreamHandler)]
    old = [h.setStream(sink) for h in handlers]
    try:
        with contextlib.redirect_stdout(sink):  # its progress bars write to stdout
            yield
    finally:
        for h, stream in zip(handlers, old):
            h.setStream(stream)
        if sink is not sys.stderr:
            sink.close()


class ClassifyKDLoss:
    """``(1 - alpha) * CE + alpha * T^2 * KL(teacher || student)`` for classifiers.

    With ``standardize`` each logit vector is z-scored, ``(z - mean) / (std + eps)``, before the
    temperature softmax (logit standardization); with ``gamma < 1`` the temperature follows the
    curriculum ``T(e) = max(1, T0 * gamma**e)`` over epochs (``epoch`` is set by the trainer).
    """

    def __init__(self, teacher, settings: DistillSettings):
        self.teacher = teacher.eval()
        self.alpha, self.t0, self.gamma, self.standardize = (settings.alpha, settings.t0, settings.gamma,
                                                             settings.standardize)
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


#: The trainer's val metric that matches the first metric ``evaluate`` reports, per task.
TRAINER_METRIC = {"classify": "metrics/accuracy_top1", "detect": "metrics/mAP50-95(B)",
                  "segment": "metrics/mAP50-95(M)", "pose": "metrics/mAP50-95(P)", "obb": "metrics/mAP50-95(B)"}


class RecoveryWatch:
    """Records the val metric after every epoch and stops training once it reaches ``target``
    (``epochs=auto``); Ultralytics' own patience rule stops it when it no longer improves.

    With ``stop_at.confirm``, an epoch whose trainer metric reaches the target is measured again the way
    the report measures it (the EMA weights as the checkpoint holds them: fp16, read back as fp32), and
    training stops only if that measurement, less its noise margin (``Confirmation.bound``), reaches the
    target too; the confirmed model is then the result (``confirmed``), not the trainer's best-fitness
    checkpoint."""

    def __init__(self, task: str, stop_at: AutoStop | None, progress=None):
        self.key = TRAINER_METRIC.get(task, TRAINER_METRIC["detect"])
        self.target = stop_at.target if stop_at else None
        self.confirm = stop_at.confirm if stop_at else None
        self.curve: list[float] = []
        self.checks: list[list[float]] = []  # [epoch, value, bound] for each trainer-side crossing
        self.confirmed = None  # the module confirmed at the target
        self.reason = "max_epochs" if stop_at else "epochs"
        self.progress = progress
        self.trained: int | None = None  # training epochs ended (None: on_train_epoch_end not hooked)

    def on_train_epoch_end(self, trainer) -> None:
        self.trained = (self.trained or 0) + 1

    def on_fit_epoch_end(self, trainer) -> None:
        if self.trained is not None and len(self.curve) >= self.trained:
            return  # Ultralytics' final validation of best.pt runs this callback once more: not an epoch
        value = float((trainer.metrics or {}).get(self.key, float("nan")))
        self.curve.append(round(value, 4))
        if self.progress is not None:
            self.progress(len(self.curve), trainer.epochs)
        if self.target is None or not value >= self.target:
            return
        if self.confirm is not None:
            candidate = checkpoint_weights(trainer.ema.ema if trainer.ema else trainer.model)
            measured = self.confirm(candidate)
            self.checks.append([len(self.curve), round(measured.value, 4), round(measured.bound, 4)])
            if not measured.bound >= self.target:
                return
            set_export_mode(candidate, False)
            self.confirmed = candidate
        trainer.stop = True
        self.reason = "recovered"

    def facts(self, trainer) -> dict[str, Any]:
        if self.reason == "max_epochs" and len(self.curve) < trainer.epochs:
            self.reason = "no improvement (patience)"
        confirmed = {"confirmed": self.checks} if self.checks else {}
        return {"epochs_run": len(self.curve), "val_curve": self.curve, "stopped": self.reason, **confirmed}


def checkpoint_weights(model):
    """An eval-mode, export-mode fp32 copy of ``model`` (a student or its distillation wrapper) with the
    precision Ultralytics' checkpoint gives it (saved fp16, loaded back as fp32)."""
    import copy

    student = getattr(model, "student_model", model)
    candidate = copy.deepcopy(student).half().float().eval()
    if getattr(candidate, "criterion", None) is not None:
        candidate.criterion = None  # training-only state, stripped from checkpoints too
    for p in candidate.parameters():
        p.requires_grad_(False)
    set_export_mode(candidate, True)
    return candidate


def train(module, task: str, data: str, overrides: dict[str, Any], teacher: str | None = None,
          distill: DistillSettings | None = None, max_grad_norm: float = 10.0, stop_at: AutoStop | None = None,
          progress=None):
    """Train ``module`` (an Ultralytics model in train mode); return (best module, trainer facts).

    Detection with ``teacher``: OutputKDDistillation with ``distill``'s weight and temperature.
    Classification with ``teacher``: ClassifyKDLoss (``distill``'s alpha, t0, gamma, standardize) as
    the student's criterion. ``stop_at`` ends training once the val metric reaches its target.
    """
    if teacher and distill is None:
        raise ValueError("a teacher needs DistillSettings")
    watch = RecoveryWatch(task, stop_at, progress)
    with tempfile.TemporaryDirectory(prefix="yolocc-train-") as tmp, _trainer_output():
        args = dict(data=str(data), workers=0, amp=False, plots=False, pretrained=False, project=tmp,
                    exist_ok=True, patience=0, verbose=False, deterministic=True,
                    device="0" if torch.cuda.is_available() else "cpu")
        args.update(overrides)
        if teacher and task != "classify":
            args["distill_model"] = teacher
        trainer = trainer_class(task, max_grad_norm)(overrides=args)
        trainer.add_callback("on_train_epoch_end", watch.on_train_epoch_end)
        trainer.add_callback("on_fit_epoch_end", watch.on_fit_epoch_end)
        if teacher and task == "classify":
            from ultralytics.nn.tasks import load_checkpoint

            criterion = ClassifyKDLoss(load_checkpoint(teacher)[0].float(), distill)
            module.criterion = criterion
            trainer.add_callback("on_train_epoch_start", lambda tr: setattr(criterion, "epoch", tr.epoch))
            trainer.model = module
        elif teacher:
            module.args = trainer.args
            wrapped = OutputKDDistillation(teacher_model=teacher, student_model=module)
            wrapped.kd_weight, wrapped.temperature = distill.kd, distill.temperature
            wrapped.task_weight, wrapped.kd_task = distill.task_kd, task
            trainer.model = wrapped
        else:
            trainer.model = module
        trainer.train()
        if watch.confirmed is not None:
            facts = {"checkpoint": f"epoch {len(watch.curve)} (confirmed)",
                     "best_fitness": round(float(trainer.best_fitness or 0.0), 4)}
            return watch.confirmed, {**facts, **watch.facts(trainer)}
        best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
        ckpt = torch.load(best, map_location="cpu", weights_only=False)
        trained = ckpt.get("ema") or ckpt["model"]
        trained = getattr(trained, "student_model", trained).float().eval()
        return trained, {"checkpoint": best.name, "best_fitness": round(float(trainer.best_fitness or 0.0), 4),
                         **watch.facts(trainer)}


def check_task(task: str | None, distill: bool, head=None) -> None:
    """Raise ``UsageError`` if a ``task`` model with output ``head`` (its last layer) cannot be trained
    (``distill``: distilled) here. Distillation wraps the student in Ultralytics' DistillationModel,
    which hooks a Detect head (Segment, Pose and OBB are Detect subclasses); classifiers distil through
    their logits instead. Reads no data: the planner calls it (``Frontend.check_train``)."""
    from ultralytics.nn.modules.head import Detect

    kind = f" (head {type(head).__name__})" if head is not None else ""
    if distill and task != "classify" and head is not None and not isinstance(head, Detect):
        fix = "use finetune" if task in DISTILL_TASKS else "drop distill"
        raise UsageError(f"distill cannot distil a model whose head is {type(head).__name__}: Ultralytics' "
                         f"distillation needs a Detect head (YOLO detect/segment/pose/obb); {fix}")
    if task not in DISTILL_TASKS:
        raise UsageError(f"finetune/distill cannot train this model{kind}: no Ultralytics trainer for task "
                         f"'{task}' (trainable: {', '.join(DISTILL_TASKS)}); drop the training pass")


def recover(ir, data: str, settings: TrainSettings, teacher=None):
    """``Frontend.train`` for Ultralytics models: the finetune/distill passes' training run.

    ``teacher`` is a module (the pre-prune snapshot) or a checkpoint path; ``settings`` the pass's typed
    training arguments (``optimizer``/``clip`` None: ``TASK_OPTIMIZER``'s per-task default)."""
    check_task(ir.task, teacher is not None, ir.module.model[-1])
    optimizer, clip = TASK_OPTIMIZER.get(ir.task, TASK_OPTIMIZER["detect"])
    module = ir.module
    set_export_mode(module, False)
    for p in module.parameters():
        p.requires_grad_(True)
    epochs = settings.max_epochs
    overrides = dict(epochs=epochs, imgsz=settings.imgsz, batch=settings.batch, lr0=settings.lr,
                     optimizer=settings.optimizer or optimizer, seed=settings.seed,
                     close_mosaic=max(1, epochs // 2), warmup_epochs=0, name=settings.name,
                     model=ir.source if Path(ir.source).is_file() else "yolov8n.yaml")  # replaced by module
    if settings.device is not None:
        overrides["device"] = settings.device
    overrides["workers"] = settings.workers
    if teacher is not None and settings.distill is not None:
        overrides["dis"] = settings.distill.feat
    with tempfile.TemporaryDirectory(prefix="yolocc-teacher-") as folder:
        teacher_path = teacher
        if teacher is not None and not isinstance(teacher, (str, Path)):
            teacher_path = str(Path(folder) / "teacher.pt")
            torch.save(checkpoint_dict(ir, teacher), teacher_path)
        if settings.auto is not None:
            overrides["patience"] = settings.auto.patience
        trained, facts = train(module, ir.task, data, overrides, teacher_path, distill=settings.distill,
                               max_grad_norm=settings.clip or clip, stop_at=settings.auto,
                               progress=settings.progress)
    for p in trained.parameters():
        p.requires_grad_(False)
    set_export_mode(trained, True)
    return trained, facts

"""``finetune`` and ``distill``: recover accuracy after pruning by training on ``--data``.

``finetune`` trains on hard labels only: the baseline a distillation pass has to beat. ``distill``
adds a teacher (the pre-prune model by default): neck-feature distillation through a learned
projector (Ultralytics' DistillationModel) plus class-logit and DFL output distillation with a
temperature, and for segment, pose and OBB models their own outputs (mask coefficients and prototypes,
keypoints, the box angle). Both run the frontend's training loop (Ultralytics: its dataset,
augmentation, loss and trainer).
"""

from __future__ import annotations

import copy
import os

from yolocc.compiler.analyses import CANONICAL, TEACHER
from yolocc.compiler.errors import UsageError
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.metrics import Metrics, drop_bound, drop_se
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult
from yolocc.compiler.training import (MARGIN, MAX_EPOCHS, PATIENCE, WITHIN, AutoStop, Confirmation, DistillSettings,
                                      TrainSettings, loader_workers, training_device)

_T = TrainSettings(imgsz=1)  # the training defaults, defined once in compiler.training
_D = DistillSettings()

TRAIN_PARAMS = (
    Param("epochs", "int|auto", "auto", "training epochs, or auto: until the val metric is back within "
          "`within` points of the unpruned model, or stops improving for `patience` epochs", low=1, high=10000),
    Param("max_epochs", "int", MAX_EPOCHS, "epochs=auto: the most epochs it may take", low=1, high=10000),
    Param("patience", "int", PATIENCE, "epochs=auto: stop after this many epochs without a better val metric",
          low=1, high=10000),
    Param("within", "float", WITHIN, "epochs=auto: points of the val metric below the unpruned model that count "
          "as recovered (default: 1.0, or what the --max-drop budget leaves)", low=0.0, high=100.0),
    Param("margin", "float", MARGIN, "epochs=auto: standard errors of val noise (the bootstrap SE of the drop, "
          "paired with the unpruned model over the val images) the val metric must clear beyond `within` before "
          "training stops; 0: stop at the first epoch within", low=0.0, high=10.0),
    Param("lr", "float", _T.lr, "initial learning rate", low=1e-7, high=1.0),
    Param("optimizer", "choice", None, "optimizer (default: Adam for classify, AdamW otherwise)",
          choices=("AdamW", "Adam", "SGD")),
    Param("clip", "float", None, "gradient clipping at this global norm (default: 1.0 for classify, "
          "Ultralytics' 10 otherwise)", low=0.01, high=1e6),
    Param("batch", "int", _T.batch, "batch size", low=1, high=4096),
    Param("imgsz", "int", None, "training image size (default: the model's input size)", low=32, high=8192),
    Param("seed", "int", _T.seed, "random seed", low=0, high=2**31 - 1),
    Param("device", "str", None, "training device: cpu or one CUDA index (0); default: the first GPU, else cpu. "
          "Several (0+1) are refused: see the README (Where trials run)"),
    Param("workers", "int", None, "dataloader worker processes (default: 0 on cpu; min(8, CPUs) on a CUDA "
          "device, where loading is the bottleneck)", low=0, high=256),
)


def cuda_devices() -> int:
    """How many CUDA devices torch sees here."""
    import torch

    return torch.cuda.device_count()


def module_val_metrics(ir: ModelIR, ctx: PassContext, module) -> Metrics | None:
    """The val metrics of ``ir`` with ``module`` in place of its own, lowered to ONNX and measured by
    ``PassContext.val_metrics`` (what the budget and the report measure); ``ir`` and ``module`` are not
    copied or changed (everything else of ``ir`` is, for the lowering). None: the frontend cannot
    evaluate."""
    from yolocc.compiler import lowering

    probe = copy.deepcopy(ir, {id(ir.module): module, id(ir._dg): None})
    return ctx.val_metrics(probe, lowering.onnx_bytes(probe, ctx.options.opset))


def reference_metric(ir: ModelIR, ctx: PassContext) -> Metrics:
    """The val metrics of the model before pruning (or of this model, if it was never pruned): what
    ``epochs=auto`` recovers towards. Given by the caller (``ctx.reference``, e.g. a search trial that
    measured its input already), else measured the way the report measures every stage, on the
    target's runtime."""
    if ctx.reference is not None:
        return ctx.reference
    teacher = ctx.teacher if ctx.teacher is not None else ir.analyses.get(TEACHER)
    metrics = module_val_metrics(ir, ctx, teacher if teacher is not None else copy.deepcopy(ir.module))
    if metrics is None:
        raise UsageError(f"epochs=auto needs the {ir.frontend or 'model'}'s frontend to evaluate accuracy; "
                         f"give a fixed epochs=N")
    return metrics


def confirmer(ir: ModelIR, ctx: PassContext, reference: Metrics, margin: float):
    """``AutoStop.confirm`` for ``ir``: the val metric (a fraction) of a candidate module in place of the
    one being trained (``module_val_metrics``), and that value less ``margin`` standard errors of its
    drop against ``reference`` (``metrics.drop_se``; no margin where either lacks bootstrap replicates);
    NaN where the frontend cannot evaluate."""

    def confirm(module) -> Confirmation:
        metrics = module_val_metrics(ir, ctx, module)
        if metrics is None:
            return Confirmation(float("nan"), float("nan"))
        bound = drop_bound((reference.value - metrics.value) * 100, drop_se(reference, metrics), margin)
        return Confirmation(metrics.value, reference.value - bound / 100)

    return confirm


class Finetune(Pass):
    """Train the (pruned) model on --data with its frontend's training loop, hard labels only."""

    name = "finetune"
    stage = "torch"
    preserves = (CANONICAL,)
    recovers = True
    needs_data = True
    params = TRAIN_PARAMS
    #: Trains against a teacher (``Frontend.check_train``'s ``distill``).
    distills = False

    def check_plan(self, ir: ModelIR, frontend) -> None:
        """The frontend's training check (task, head) and the device, at plan time: no data is loaded."""
        self.device()
        frontend.check_train(ir, self.distills)

    def device(self) -> str:
        """The one device this pass trains on (``training.training_device``; ``UsageError`` otherwise)."""
        return training_device(self.args["device"], cuda_devices())

    def teacher(self, ir: ModelIR, ctx: PassContext):
        """The module (or checkpoint path) to distil from; None: hard labels only."""
        return None

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        data = ctx.option("data")  # present: the pipeline refuses a needs_data pass without it
        a = self.args
        teacher = self.teacher(ir, ctx)
        ctx.frontend.check_train(ir, teacher is not None)
        facts: dict = {}
        auto = None
        if a["epochs"] == "auto":
            reference = reference_metric(ir, ctx)
            target = reference.value - a["within"] / 100.0
            auto = AutoStop(max_epochs=a["max_epochs"], patience=a["patience"], metric=reference.primary,
                            target=target, confirm=confirmer(ir, ctx, reference, a["margin"]))
            facts = {"reference": {reference.primary: reference.value},
                     "target": {reference.primary: round(target, 4)}}
        device = self.device()
        settings = TrainSettings(imgsz=a["imgsz"] or max(ir.input.hw),  # trains square, as Ultralytics does
                                 epochs=a["max_epochs"] if auto else a["epochs"], lr=a["lr"],
                                 optimizer=a["optimizer"], clip=a["clip"], batch=a["batch"], seed=a["seed"],
                                 name=self.name, distill=self.distill_settings(), auto=auto,
                                 progress=ctx.progress_for(f"{self.name}: epochs"), device=device,
                                 workers=loader_workers(a["workers"], device, os.cpu_count() or 1))
        trained, trained_facts = ctx.frontend.train(ir, str(data), settings, teacher)
        ir.set_module(trained)
        return PassResult(True, {"epochs": a["epochs"], **facts, **trained_facts,
                                 **({"teacher": "given"} if teacher is not None else {})})

    def distill_settings(self) -> DistillSettings | None:
        return None


class Distill(Finetune):
    """Knowledge distillation after pruning (YOLO: features + class/DFL + task outputs; classify: KL)."""

    name = "distill"
    distills = True
    params = TRAIN_PARAMS + (
        Param("teacher", "path", None, "teacher checkpoint (default: the model before prune)"),
        # Defaults measured on the digits fixture (prune:0.5, 3 epochs, mAP50-95 on its val split):
        # feat 6 / kd 1 (Ultralytics' feature weight) 0.166; feat 0.5 / kd 1 0.310; feat 0.5 / kd 3 0.362;
        # feat 0 / kd 3 0.367; feat 0.5 / kd 6 0.380 (plain finetune: 0.267).
        Param("feat", "float", _D.feat, "weight of the neck-feature distillation (Ultralytics' dis)", low=0.0, high=100.0),
        Param("kd", "float", _D.kd, "weight of the class-logit and DFL output distillation", low=0.0, high=100.0),
        # task_kd measured on the seg/pose/obb digit fixtures (prune:0.3, distill:epochs=3, the task's
        # metric on val; one seed): mask mAP50-95 finetune 0.202, task_kd 0 / 1 / 6: 0.252 / 0.255 / 0.250;
        # pose mAP50-95 finetune 0.252, 0.365 / 0.365 / 0.365; OBB mAP50-95 finetune 0.357, task_kd 0 / 1:
        # 0.452 / 0.452. Distill's gain over finetune (+5 to +11 points) comes from the feature and
        # class/DFL terms; the task term at 1 is the best on segment and neutral elsewhere (within noise).
        Param("task_kd", "float", _D.task_kd, "segment/pose/obb: weight of the distillation of the task's own "
              "outputs (mask coefficients and prototypes, keypoints, OBB angle)", low=0.0, high=100.0),
        Param("T", "float", _D.temperature, "detection: distillation temperature", low=0.1, high=100.0),
        Param("alpha", "float", _D.alpha, "classify: weight of the KL term against cross-entropy", low=0.0, high=1.0),
        Param("T0", "float", _D.t0, "classify: initial temperature", low=0.1, high=100.0),
        Param("gamma", "float", _D.gamma, "classify: curriculum T(e)=max(1, T0*gamma^e); 1 keeps T fixed",
              low=0.01, high=1.0),
        # Off by measurement (digits classifier, prune:0.5, 5 epochs): top-1 on val 0.720 off / 0.690 on
        # (one seed, AdamW); on the held-out test split 0.713 off / 0.689 on (Adam/clip 1, 3 seeds, every
        # seed lower with it).
        Param("standardize", "bool", _D.standardize, "classify: z-score logits before the temperature softmax "
              "(logit standardization)"),
    )

    def teacher(self, ir: ModelIR, ctx: PassContext):
        """``teacher=PATH``, else the run's teacher (``ctx.teacher``: a search trial's), else the model
        before the first pass that changed it (``prune``'s snapshot)."""
        if self.args["teacher"]:
            return self.args["teacher"]
        if ctx.teacher is not None:
            return ctx.teacher
        if TEACHER not in ir.analyses:
            raise UsageError("distill needs a teacher: run it after prune (the pre-prune model is the default "
                             "teacher) or pass distill:teacher=PATH")
        return ir.analyses[TEACHER]

    def distill_settings(self) -> DistillSettings:
        a = self.args
        return DistillSettings(feat=a["feat"], kd=a["kd"], temperature=a["T"], task_kd=a["task_kd"],
                               alpha=a["alpha"], t0=a["T0"], gamma=a["gamma"], standardize=a["standardize"])

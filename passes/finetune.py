"""``finetune`` and ``distill``: recover accuracy after pruning by training on ``--data``.

``finetune`` trains on hard labels only: the baseline a distillation pass has to beat. ``distill``
adds a teacher (the pre-prune model by default): neck-feature distillation through a learned
projector (Ultralytics' DistillationModel) plus class-logit and DFL output distillation with a
temperature. Both run the frontend's training loop (Ultralytics: its dataset, augmentation, loss and trainer).
"""

from __future__ import annotations

from yolocc.compiler.errors import UsageError
from yolocc.compiler.interfaces import Frontend
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult

TRAIN_PARAMS = (
    Param("epochs", "int|auto", "auto", "training epochs, or auto: until the val metric is back within "
          "`within` points of the unpruned model, or stops improving for `patience` epochs", low=1, high=10000),
    Param("max_epochs", "int", 30, "epochs=auto: the most epochs it may take", low=1, high=10000),
    Param("patience", "int", 5, "epochs=auto: stop after this many epochs without a better val metric",
          low=1, high=10000),
    Param("within", "float", 1.0, "epochs=auto: points of the val metric below the unpruned model that count "
          "as recovered (default: 1.0, or what the --max-drop budget leaves)", low=0.0, high=100.0),
    Param("lr", "float", 0.001, "initial learning rate", low=1e-7, high=1.0),
    Param("optimizer", "choice", None, "optimizer (default: Adam for classify, AdamW otherwise)",
          choices=("AdamW", "Adam", "SGD")),
    Param("clip", "float", None, "gradient clipping at this global norm (default: 1.0 for classify, "
          "Ultralytics' 10 otherwise)", low=0.01, high=1e6),
    Param("batch", "int", 16, "batch size", low=1, high=4096),
    Param("imgsz", "int", None, "training image size (default: the model's input size)", low=32, high=8192),
    Param("seed", "int", 0, "random seed", low=0, high=2**31 - 1),
)


def reference_metric(ir: ModelIR, ctx: PassContext, frontend: Frontend, data: str) -> tuple[str, float]:
    """The val metric of the model before pruning (or of this model, if it was never pruned): what
    ``epochs=auto`` recovers towards. Measured the way the report measures every stage."""
    from yolocc.compiler import lowering

    reference = ir.snapshot()
    if "pre_prune" in ir.analyses:
        reference.module = ir.analyses["pre_prune"]
    cached = ir.analyses.get("pre_prune_metrics")
    if cached is None:
        cached = frontend.evaluate(reference, lowering.onnx_bytes(reference, ctx.options.opset), data,
                                   split="val", runtime=ctx.runtime)
        if not cached:
            raise UsageError(f"epochs=auto needs the {ir.frontend or 'model'}'s frontend to evaluate accuracy; "
                             f"give a fixed epochs=N")
    metric = next(iter(cached))
    return metric, float(cached[metric])


class Finetune(Pass):
    """Train the (pruned) model on --data with its frontend's training loop, hard labels only."""

    name = "finetune"
    stage = "torch"
    preserves = ("canonical",)
    recovers = True
    params = TRAIN_PARAMS

    def teacher(self, ir: ModelIR):
        return None

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        data = ctx.option("data")
        if not data:
            raise UsageError(f"{self.name} needs labelled data: pass --data DATA.yaml (or a classify folder)")
        frontend = ctx.frontend or Frontend()
        a = self.args
        settings = {**{k: a[k] for k in ("epochs", "lr", "optimizer", "clip", "batch", "seed")},
                    "imgsz": a["imgsz"] or ir.input.imgsz, "name": self.name, "kd": self.kd_options(),
                    "progress": ctx.progress_for(f"{self.name}: epochs")}
        teacher = self.teacher(ir)
        frontend.check_train(ir, teacher is not None)
        facts: dict = {}
        if a["epochs"] == "auto":
            metric, reference = reference_metric(ir, ctx, frontend, str(data))
            target = reference - a["within"] / 100.0
            settings["auto"] = {"max_epochs": a["max_epochs"], "patience": a["patience"], "metric": metric,
                                "target": target}
            facts = {"reference": {metric: reference}, "target": {metric: round(target, 4)}}
        trained, trained_facts = frontend.train(ir, str(data), settings, teacher)
        ir.set_module(trained)
        return PassResult(True, {"epochs": a["epochs"], **facts, **trained_facts,
                                 **({"teacher": "given"} if teacher else {})})

    def kd_options(self) -> dict | None:
        return None


class Distill(Finetune):
    """Knowledge distillation after pruning (detection: features + class/DFL outputs; classify: KL)."""

    name = "distill"
    params = TRAIN_PARAMS + (
        Param("teacher", "path", None, "teacher checkpoint (default: the model before prune)"),
        # Defaults measured on the digits fixture (prune:0.5, 3 epochs, mAP50-95 on its val split):
        # feat 6 / kd 1 (Ultralytics' feature weight) 0.166; feat 0.5 / kd 1 0.310; feat 0.5 / kd 3 0.362;
        # feat 0 / kd 3 0.367; feat 0.5 / kd 6 0.380 (plain finetune: 0.267).
        Param("feat", "float", 0.5, "weight of the neck-feature distillation (Ultralytics' dis)", low=0.0, high=100.0),
        Param("kd", "float", 6.0, "weight of the class-logit and DFL output distillation", low=0.0, high=100.0),
        Param("T", "float", 2.0, "detection: distillation temperature", low=0.1, high=100.0),
        Param("alpha", "float", 0.7, "classify: weight of the KL term against cross-entropy", low=0.0, high=1.0),
        Param("T0", "float", 5.0, "classify: initial temperature", low=0.1, high=100.0),
        Param("gamma", "float", 0.9, "classify: curriculum T(e)=max(1, T0*gamma^e); 1 keeps T fixed",
              low=0.01, high=1.0),
        # Off by measurement (digits classifier, prune:0.5, 5 epochs): top-1 on val 0.720 off / 0.690 on
        # (one seed, AdamW); on the held-out test split 0.713 off / 0.689 on (Adam/clip 1, 3 seeds, every
        # seed lower with it).
        Param("standardize", "bool", False, "classify: z-score logits before the temperature softmax "
              "(logit standardization)"),
    )

    def teacher(self, ir: ModelIR):
        if self.args["teacher"]:
            return self.args["teacher"]
        if "pre_prune" not in ir.analyses:
            raise UsageError("distill needs a teacher: run it after prune (the pre-prune model is the default "
                             "teacher) or pass distill:teacher=PATH")
        return ir.analyses["pre_prune"]

    def kd_options(self) -> dict:
        a = self.args
        return {"feat": a["feat"], "kd_weight": a["kd"], "temperature": a["T"],
                "classify_kd": {"alpha": a["alpha"], "t0": a["T0"], "gamma": a["gamma"],
                                "standardize": a["standardize"]}}

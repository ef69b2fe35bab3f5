"""``qat``: quantization-aware training through the target's own Q/DQ placement.

``qat`` is the macro canonicalize -> fuse-bn -> calibrate -> qat-train -> qdq. ``qat-train`` asks
``qdq`` where it would put Q/DQ on this graph for this target (``QDQLayout``: the same code, the same
shared ranges, the same float tail), converts the float ONNX graph to torch (onnx2torch) with fake
quantization at exactly those tensors (``fake_quant``), and trains it by distillation from the float
graph (``DistillationLoss``: the outputs, per named part) on the train images of ``--data`` (no labels).
Scales start from calibration and are learned (LSQ+). The trained weights go back into the graph and
the learned ranges replace the calibration ranges, so the ``qdq`` that follows emits exactly the
learned grid (``tests/passes/test_qat.py``).

``epochs=auto``: measure the val metric (``--data``) of the Q/DQ model after each epoch, keep the best
epoch (epoch 0 is the PTQ model ``int8`` emits, kept when no epoch beats it on val), stop once it is within
``within`` points of the float graph or after ``patience`` epochs without a better one. The best epoch
replaces PTQ only when it gains at least ``min_gain`` points on val: on the digits detector, where PTQ
costs 0.06-0.14 pt on test, QAT's val gains of 0.2-0.4 pt came with test changes of -0.06 to -0.26 pt.

Why the ONNX graph and not the torch module: the Q/DQ points are ONNX tensors (a SiLU's Sigmoid output,
a MaxPool's input) with no torch module of their own; training the graph that is emitted makes the
fake-quantization points equal the Q/DQ points by construction, for every target's placement. NNCF's
torch QAT places quantizers by its own hardware config (OpenVINO's), which is not ort-cpu's or
TensorRT's placement; ModelOpt (TensorRT) does not install here.
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import onnx

from yolocc.compiler.analyses import CALIBRATION, OUTPUT_SPLITS
from yolocc.compiler.errors import PassError, UsageError
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.onnxgraph import folded
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult

from . import fake_quant
from .bias_correction import CORRECTED_OPS, corrected
from .calib_data import load_calibration
from .calibrate import Calibrate
from .canonicalize import Canonicalize
from .fuse_bn import FuseBN
from .qdq import QDQ, QDQLayout, require_integer_rules

log = logging.getLogger(__name__)

#: qdq's placement parameters, which qat-train must share to fake-quantize the same tensors.
PLACEMENT_PARAMS = tuple(p for p in QDQ.params if p.name in ("exclude", "keep_tail_float", "float_head_convs",
                                                              "activations", "hybrid_stride"))

TRAIN_PARAMS = (
    Param("epochs", "int|auto", "auto", "QAT epochs, or auto: the val metric after each epoch, the best kept, "
          "stopping within `within` points of the float graph or after `patience` epochs without a better one",
          low=0, high=1000),
    Param("max_epochs", "int", 6, "epochs=auto: the most epochs it may take", low=1, high=1000),
    Param("patience", "int", 2, "epochs=auto: stop after this many epochs without a better val metric",
          low=1, high=1000),
    Param("within", "float", 0.0, "epochs=auto: points below the float graph's val metric that count as "
          "recovered", low=0.0, high=100.0),
    Param("min_gain", "float", 0.5, "epochs=auto: points of val metric the best epoch must gain over PTQ to "
          "replace it (on the digits detector, val gains of 0.2-0.4 pt did not carry over to the test split)",
          low=0.0, high=100.0),
    Param("images", "int", 512, "train images of --data per epoch (no labels are read)", low=1, high=1000000),
    Param("lr", "float", 1e-5, "Adam learning rate of the weights", low=1e-9, high=1.0),
    Param("lr_scale", "float", 1e-2, "Adam learning rate of the activation scales (of their logarithm: "
          "a step changes a scale by about this fraction) and zero points",
          low=0.0, high=1.0),
    Param("batch", "int", 16, "batch size", low=1, high=4096),
    Param("seed", "int", 0, "random seed (image order)", low=0, high=2**31 - 1),
)


class QATTrain(Pass):
    """Quantization-aware training of the float graph at the target's Q/DQ points (part of qat)."""

    name = "qat-train"
    stage = "onnx"
    requires = (CALIBRATION,)
    preserves = (CALIBRATION,)
    rejects = {"fp16": "QAT trains the float32 graph: choose one of qat and fp16 (or put qat first)",
               "quantized": "quantize once (drop the second int8/qat/qdq)"}
    params = PLACEMENT_PARAMS + TRAIN_PARAMS
    needs_data = True

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        import torch

        target = require_integer_rules(ctx.target, "qat")
        data = ctx.option("data")  # present: the pipeline refuses a needs_data pass without it
        a = self.args
        placement = {p.name: a[p.name] for p in PLACEMENT_PARAMS}
        qdq = QDQ(**placement)
        calibration = ir.analyses[CALIBRATION]
        layout = QDQLayout()
        ptq = qdq.build(ir, target, set(), layout)[0]  # what int8 emits: the layout, and epoch 0
        if layout.grid != qdq.args["activations"]:
            # The target's grid fell back on this CPU (QDQ.build): train, and emit every epoch, on that grid.
            qdq = QDQ(**{**placement, "activations": layout.grid})
        graph = with_bias_correction(folded(ir.onnx_model), calibration.get("bias_shifts") or {})
        points = [o.name for o in graph.graph.output]
        loss = DistillationLoss(ir.meta.get(OUTPUT_SPLITS, {}), points)
        torch.manual_seed(a["seed"])
        student = fake_quant.build(batched(graph), points, layout, qdq.scheme_for(target))
        teacher = fake_quant.build(batched(graph), points)
        images = load_calibration(str(data), a["images"], ir.input.shape, lambda im: ctx.frontend.preprocess(ir, im),
                                  ctx.progress_for("QAT images"))
        check_batched(teacher, graph, points, images[:2])

        def metric(model: onnx.ModelProto) -> float:
            m = ctx.val_metrics(ir, model)
            if m is None:
                raise UsageError(f"qat measures the val metric of each epoch: the {ir.frontend} frontend cannot "
                                 f"evaluate (choose epochs=N to train without it)")
            return m.value

        def candidate() -> tuple[onnx.ModelProto, dict]:
            trained = fake_quant.trained_model(graph, student)
            learned = {**calibration, "activations": {**calibration["activations"],
                                                      **fake_quant.ranges(student, layout)}}
            learned.pop("bias_shifts", None)  # already in the biases QAT starts from (with_bias_correction)
            return trained, learned

        def quantized(trained, learned) -> onnx.ModelProto:
            ir.set_onnx(trained)
            ir.analyses[CALIBRATION] = learned
            return qdq.build(ir, target, set())[0]

        auto = a["epochs"] == "auto"
        epochs = a["max_epochs"] if auto else int(a["epochs"])
        float_val = metric(graph) if auto else None
        original = ir.onnx_model
        history = []
        # epoch 0: exactly what int8 emits (PTQ), the model kept when no epoch beats it
        best = (metric(ptq) if auto else None, 0, None)
        if auto:
            history.append({"epoch": 0, "val": round(best[0], 4)})
        progress = ctx.progress_for("QAT epochs")
        optimizer = torch.optim.Adam([
            {"params": [p for n, p in student.module.named_parameters() if not _is_quantizer(n)], "lr": a["lr"]},
            {"params": [p for n, p in student.module.named_parameters() if _is_quantizer(n) and p.requires_grad],
             "lr": a["lr_scale"]}])
        rng = np.random.default_rng(a["seed"])
        started = time.perf_counter()
        for epoch in range(1, epochs + 1):
            mean_loss = train_epoch(student, teacher, images, optimizer, a["batch"], rng, loss)
            row = {"epoch": epoch, "loss": round(mean_loss, 6)}
            if auto:
                row["val"] = round(metric(quantized(*candidate())), 4)
                if row["val"] > best[0]:
                    best = (row["val"], epoch, copy.deepcopy(student.module.state_dict()))
            history.append(row)
            log.info("qat epoch %d/%d: %s", epoch, epochs, row)
            if progress:
                progress(epoch, epochs)
            if auto and (float_val - best[0] <= a["within"] / 100
                         or epoch - best[1] >= a["patience"]):
                break
        gain = (best[0] - history[0]["val"]) * 100 if auto else None
        kept_ptq = auto and (best[1] == 0 or gain < a["min_gain"])
        if kept_ptq:
            trained, learned = original, calibration
        else:
            if auto:
                student.module.load_state_dict(best[2])
            trained, learned = candidate()
        ir.set_onnx(trained)
        ir.analyses[CALIBRATION] = learned
        facts = {"target": target.name, "fake_quant_points": len(student.points),
                 "ranges": len(student.quantizers), "weights": len(student.weights), "images": int(len(images)),
                 "epochs": history, "seconds": round(time.perf_counter() - started, 1)}
        if auto:
            facts.update({"float_val": round(float_val, 4), "ptq_val": history[0]["val"],
                          "best_epoch": best[1], "best_val": round(best[0], 4), "gain_pts": round(gain, 2),
                          "kept": "ptq" if kept_ptq else "qat"})
        diagnostics = []
        if kept_ptq:
            diagnostics.append(f"the best epoch gained {gain:+.2f} pt on val over post-training quantization "
                               f"(min_gain={a['min_gain']}); the PTQ model is kept")
        return PassResult(not kept_ptq, facts, diagnostics)


class QAT(Pass):
    """INT8 quantization-aware training: canonicalize, fuse-bn, calibrate, qat-train, qdq (macro)."""

    name = "qat"
    stage = "torch"
    #: calibrate's parameters (the starting ranges), then qdq's placement and the training ones.
    params = Calibrate.params + PLACEMENT_PARAMS + TRAIN_PARAMS

    def expand(self, stage: str) -> list[Pass]:
        a = self.args
        torch_part = [Canonicalize(), FuseBN()] if stage == "torch" else []
        return torch_part + [
            Calibrate(**{p.name: a[p.name] for p in Calibrate.params}),
            QATTrain(**{p.name: a[p.name] for p in QATTrain.params}),
            QDQ(**{p.name: a[p.name] for p in PLACEMENT_PARAMS})]


def with_bias_correction(model: onnx.ModelProto, shifts: dict[str, list[float]]) -> onnx.ModelProto:
    """``model`` with calibration's bias correction (``{layer: per-channel drift}``) subtracted from the
    biases, as ``qdq`` would: QAT starts from exactly the PTQ model."""
    if not shifts:
        return model
    out = copy.deepcopy(model)
    inits = {i.name: i for i in out.graph.initializer}
    for node in out.graph.node:
        if node.name in shifts and node.op_type in CORRECTED_OPS and len(node.input) > 2 and node.input[2] in inits:
            bias = onnx.numpy_helper.to_array(inits[node.input[2]])
            inits[node.input[2]].CopyFrom(onnx.numpy_helper.from_array(corrected(bias, shifts[node.name]),
                                                                       node.input[2]))
    return out


def batched(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose Reshape targets copy the batch (0) where they hard-code the exported
    batch of 1, so training can run batches (checked by ``check_batched``)."""
    out = copy.deepcopy(model)
    inits = {i.name: i for i in out.graph.initializer}
    for node in out.graph.node:
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in inits:
            shape = onnx.numpy_helper.to_array(inits[node.input[1]]).copy()
            if shape.ndim == 1 and shape.size > 1 and shape[0] == 1:
                shape[0] = 0
                inits[node.input[1]].CopyFrom(onnx.numpy_helper.from_array(shape, node.input[1]))
    return out


def check_batched(teacher: fake_quant.FakeQuantGraph, graph: onnx.ModelProto, points: list[str],
                  images: np.ndarray) -> None:
    """Raise ``PassError`` unless the converted graph, run on a batch, gives what onnxruntime gives for
    each image alone (the conversion and ``batched`` kept the function)."""
    import onnxruntime as ort
    import torch

    probe = copy.deepcopy(graph)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(p, onnx.TensorProto.FLOAT, None) for p in points)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    with torch.no_grad():
        got = teacher.module(torch.from_numpy(images))
    for i, x in enumerate(images):
        for p, want, have in zip(points, session.run(None, {name: x[None]}), got):
            err = float(np.abs(want - have[i:i + 1].numpy()).max())
            if not err <= 1e-3 * max(1.0, float(np.abs(want).max())):
                raise PassError(f"qat: the graph converted for training differs from onnxruntime at '{p}' "
                                f"(max error {err:.3g}); this model cannot be trained by qat")


class DistillationLoss:
    """The QAT loss: how far the fake-quantized graph's outputs are from the float graph's, per named
    part of each output (``analyses.OUTPUT_SPLITS``):

    - ``scores`` (probabilities): binary cross-entropy against the teacher's probabilities;
    - ``boxes`` and each task's part (mask coefficients, keypoints, angle): L1 weighted by the teacher's
      best class score of each anchor (what a detection's mAP depends on), over the part's spread;
    - an output without named parts (a classifier's probabilities, a segmenter's prototypes): squared
      error over the teacher's variance.

    Each term is divided by its value on the first batch (plain PTQ), so every part starts at 1 and
    none drowns the others. ``__call__(got, want)``: lists of tensors in ``outputs`` order, each (N, ...)."""

    def __init__(self, splits: dict, outputs: list[str]):
        self.splits = splits
        self.outputs = outputs
        self.first: list[float] | None = None

    def terms(self, got, want) -> list:
        import torch

        terms = []
        for name, s, t in zip(self.outputs, got, want):
            parts = self.splits.get(name)
            if not parts:
                terms.append(torch.mean((s - t) ** 2) / (t.var() + 1e-12))
                continue
            weight = t[:, parts["scores"]].amax(1, keepdim=True) if "scores" in parts else torch.ones_like(t[:, :1])
            for part, sl in parts.items():
                if part == "scores":
                    p = s[:, sl].clamp(1e-6, 1 - 1e-6)
                    terms.append(torch.nn.functional.binary_cross_entropy(p, t[:, sl]) -
                                 torch.nn.functional.binary_cross_entropy(t[:, sl].clamp(1e-6, 1 - 1e-6), t[:, sl]))
                else:
                    err = (s[:, sl] - t[:, sl]).abs() * weight
                    width = t[:, sl].shape[1]
                    terms.append(err.sum() / (weight.sum() * width * (t[:, sl].std() + 1e-12)))
        return terms

    def __call__(self, got, want):
        terms = self.terms(got, want)
        if self.first is None:
            self.first = [max(x.detach().item(), 1e-12) for x in terms]
        return sum(x / f for x, f in zip(terms, self.first)) / len(terms)


def train_epoch(student: fake_quant.FakeQuantGraph, teacher: fake_quant.FakeQuantGraph, images: np.ndarray,
                optimizer, batch: int, rng: np.random.Generator, loss_fn: DistillationLoss) -> float:
    """One pass over ``images`` (N, C, H, W) in shuffled batches; returns the mean loss."""
    import torch

    order = rng.permutation(len(images))
    total, steps = 0.0, 0
    student.module.train()
    for start in range(0, len(order), batch):
        x = torch.from_numpy(images[order[start:start + batch]])
        with torch.no_grad():
            want = teacher.module(x)
        got = student.module(x)
        loss = loss_fn(got, want)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.detach().item()
        steps += 1
    return total / max(steps, 1)


def _is_quantizer(name: str) -> bool:
    return name.split(".")[-1] in ("log_scale", "zero_point")

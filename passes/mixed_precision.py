"""INT8 mixed precision (``int8:max_drop=PTS``): the fewest float layers that keep the val metric within
PTS points of the float model, checked by measuring, not by prediction.

1. Quantize everything the target allows; measure the val metric (``--data``). Within budget: done.
2. Rank the quantized convolutions by sensitivity: for each one, the model with only that layer (and
   its activation) left float is run on calibration images, and the gain in output fidelity against
   the float model (``measure.output_distance`` over the output's named parts: boxes, scores and the
   task's mask coefficients, keypoints or angle; a segmenter's prototypes whole) is its score
   (per-layer "alone left float"). Every quantized conv is ranked, the task branches' (``cv4``,
   ``proto``) included.
3. Leave the top 1, 2, 4, 8 ... layers float, measuring the val metric each time, until the drop is
   within PTS. The report lists the float layers, every step, and the latency they cost.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import onnx

from yolocc.compiler import measure
from yolocc.compiler.analyses import OUTPUT_SPLITS
from yolocc.compiler.errors import UsageError
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.passbase import PassContext

from .calib_data import load_calibration
from .float_region import ACTIVATION_OPS

log = logging.getLogger(__name__)

RANK_IMAGES = 8
Build = Callable[[set], tuple[onnx.ModelProto, dict, list]]


def quantized_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes whose weights come through DequantizeLinear."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1
            and producer.get(n.input[1]) is not None and producer[n.input[1]].op_type == "DequantizeLinear"]


def with_activation(model: onnx.ModelProto, conv: str) -> set[str]:
    """``conv`` plus the activation nodes computed only from its output (SiLU's Sigmoid and Mul)."""
    node = next(n for n in model.graph.node if n.name == conv)
    region, tensors = {conv}, set(node.output)
    for n in model.graph.node:  # topological order
        if n.op_type in ACTIVATION_OPS and n.input and all(i in tensors for i in n.input if i):
            region.add(n.name)
            tensors.update(n.output)
    return region


def quantize_within(ir: ModelIR, ctx: PassContext, build: Build, max_drop: float):
    """The Q/DQ model with the fewest float layers whose measured val drop is within ``max_drop`` points."""
    data = ctx.option("data")
    if not data:
        raise UsageError("int8:max_drop (mixed precision) measures accuracy: pass --data DATA.yaml")
    def metric(model: onnx.ModelProto) -> float:
        metrics = ctx.val_metrics(ir, model)
        if metrics is None:
            raise UsageError(f"int8:max_drop needs a frontend that evaluates accuracy ({ir.frontend} cannot)")
        return metrics.value

    progress = ctx.progress_for("int8 mixed precision: steps")
    base = metric(ir.onnx_model)
    model, facts, diagnostics = build(set())
    steps = [{"float_layers": 0, "val": round(metric(model), 4)}]
    steps[0]["drop_pts"] = round((base - steps[0]["val"]) * 100, 3)
    chosen: list[str] = []
    if steps[0]["drop_pts"] > max_drop:
        ranking = rank_layers(ir, ctx, build, model)
        k = 1
        while steps[-1]["drop_pts"] > max_drop and len(chosen) < len(ranking):
            chosen = [name for name, _ in ranking[:k]]
            extra = set().union(*(with_activation(ir.onnx_model, c) for c in chosen))
            model, facts, diagnostics = build(extra)
            val = metric(model)
            steps.append({"float_layers": len(chosen), "val": round(val, 4), "drop_pts": round((base - val) * 100, 3)})
            if progress:
                progress(len(steps), len(steps) + 1)
            k *= 2
        facts["sensitivity_top"] = [{"layer": n, "score": round(s, 6)} for n, s in ranking[:8]]
    met = steps[-1]["drop_pts"] <= max_drop
    if not met:
        diagnostics = diagnostics + [f"int8:max_drop={max_drop}: even with {len(chosen)} float layers the val "
                                     f"metric drops {steps[-1]['drop_pts']:.2f} pt"]
    facts["mixed_precision"] = {"max_drop": max_drop, "float_val": round(base, 4), "met": met,
                                "float_layers": chosen, "steps": steps,
                                "latency_cost_ms": _latency_cost(ctx, build, model, ir.input.shape) if chosen else 0.0}
    return model, facts, diagnostics


def rank_layers(ir: ModelIR, ctx: PassContext, build: Build, quantized: onnx.ModelProto) -> list[tuple[str, float]]:
    """Quantized layers by how much leaving each one alone float brings the output back to the float model's."""
    source = ctx.option("calib")
    images = load_calibration(str(source), RANK_IMAGES, ir.input.shape, lambda im: ctx.frontend.preprocess(ir, im))
    runtime = ctx.runtime
    splits = ir.meta.get(OUTPUT_SPLITS, {})

    def outputs(model: onnx.ModelProto) -> list[dict[str, np.ndarray]]:
        session = runtime.load(model.SerializeToString(), ctx.options.threads)
        return [session.run(x[None]) for x in images]

    ref = outputs(ir.onnx_model)

    def error(model: onnx.ModelProto) -> float:
        return sum(measure.output_distance(r, o, splits) for r, o in zip(ref, outputs(model)))

    all_quantized = error(quantized)
    layers = quantized_convs(quantized)
    progress = ctx.progress_for("int8 mixed precision: ranking layers")
    scores = []
    for i, name in enumerate(layers, 1):
        scores.append((name, all_quantized - error(build(with_activation(ir.onnx_model, name))[0])))
        if progress:
            progress(i, len(layers))
    return sorted(scores, key=lambda s: -s[1])


def _latency_cost(ctx: PassContext, build: Build, mixed: onnx.ModelProto, shape) -> float:
    """Milliseconds the float layers add: all-int8 and mixed timed round-robin on the target's runtime, on
    one input of ``shape`` (the IR's: a dynamic model is timed at its compile size), in turns of
    ``--latency-turn`` runs like the report."""
    full = build(set())[0]
    x = measure.timing_input(shape)
    t_full, t_mixed = measure.latencies_ms(ctx.runtime, [full.SerializeToString(), mixed.SerializeToString()], x,
                                           runs=20, threads=ctx.options.threads, turn=ctx.options.latency_turn)
    return round(t_mixed - t_full, 3)

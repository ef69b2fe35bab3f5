"""``qdq``: insert QuantizeLinear/DequantizeLinear from the calibration analysis (onnx-graphsurgeon).

Placement follows the target (``--target``, default ``ort-cpu``); the YOLO head's decode stays
float (see ``float_region``); weights become int8 initializers with per-channel DequantizeLinear.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import NamedTuple

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from yolocc.compiler.analyses import CALIBRATION, FLOAT_SCOPES
from yolocc.compiler.errors import PassError, UsageError
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.onnxgraph import copy_header, folded
from yolocc.compiler.params import Param
from yolocc.compiler.passbase import Pass, PassContext, PassResult
from yolocc.compiler.measure import cpu_isa
from yolocc.compiler.target import QuantScheme, Target, Verification

from .bias_correction import CORRECTED_OPS, corrected
from .float_region import matches, output_tail, scoped_nodes, thin_convs

log = logging.getLogger(__name__)

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def activation_qparams(lo: float, hi: float, dtype: str, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale (float32) and zero point (uint8 or int8; its dtype is the quantized type) of one activation
    tensor calibrated to ``[lo, hi]``.

    Asymmetric: ``dtype``'s whole range over ``[min(lo, 0), max(hi, 0)]``. Symmetric: zero point 0; S8
    over ``±max(|lo|, |hi|)``, or for U8 NNCF's signedness rule: U8 over ``[0, hi]`` where ``lo >= 0``,
    else S8 as above. On OpenVINO with AMX, zero-point-free activations made yolov8n's INT8 about 1.18x
    faster than U8 asymmetric ones (README, "On an AMX CPU: zero-point-free activations for OpenVINO")."""
    if symmetric and dtype == "uint8" and lo >= 0:
        return np.array(hi / 255.0 if hi > 0 else 1.0, np.float32), np.array(0, np.uint8)
    if symmetric:
        amax = max(abs(lo), abs(hi))
        return np.array(amax / 127.0 if amax > 0 else 1.0, np.float32), np.array(0, np.int8)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    zp = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    return np.array(scale, np.float32), np.array(zp, np.uint8 if dtype == "uint8" else np.int8)


def weight_qparams(w: np.ndarray, axis: int, min_scale: np.ndarray | None = None,
                   qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8: (quantized weights, scales); ``min_scale`` floors each scale;
    ``qmax`` is the largest quantized magnitude (127; 63 for 7-bit weights)."""
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(moved).max(1)
    scale = np.where(amax > 0, amax / float(qmax), 1.0).astype(np.float32)
    if min_scale is not None:
        scale = np.maximum(scale, min_scale).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


def _weight_axis(node: gs.Node) -> int:
    if node.op == "Gemm":
        return 0 if node.attrs.get("transB", 0) else 1
    if node.op == "MatMul":
        return node.inputs[1].values.ndim - 1
    return 0


def require_integer_rules(target: Target, asking: str = "") -> Target:
    """``target`` if it has a quantization scheme and Q/DQ placement; else ``UsageError`` naming it
    (``asking``: the feature that needs them, for the message)."""
    if target.scheme is None or target.placement is None:
        raise UsageError(f"{asking + ': ' if asking else ''}target '{target.name}' has no integer rules (no "
                         f"quantization scheme and Q/DQ placement); choose a target that quantizes "
                         f"(see 'yolocc targets')")
    return target


#: The largest weight magnitude of 7-bit weights (``Placement.narrow_weights_below_channels``).
NARROW_QMAX = 63


@dataclass
class QDQLayout:
    """Where ``QDQ.build`` put Q/DQ: ``activations`` maps each tensor given a QuantizeLinear/
    DequantizeLinear pair to the tensor whose range (scale and zero point) it uses: itself, its
    Concat/transparent group's representative, or the input of a pass-through op such as MaxPool;
    ``weights`` maps each node given per-channel int8 weights to the weight's channel axis."""

    activations: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    #: Members of the ranges ``share_concat_ranges`` unites -> the group's representative (every member's
    #: calibration range enters the union, even one whose own Q/DQ reuses another range).
    groups: dict[str, str] = field(default_factory=dict)
    #: Each range's (scale, zero point, quantized dtype "uint8" or "int8") as built.
    grids: dict[str, tuple[float, int, str]] = field(default_factory=dict)
    #: The ranges built on an asymmetric grid (a zero point to learn); the others have zero point 0.
    asymmetric: set[str] = field(default_factory=set)
    #: Tensors read as dequantized without a pair of their own (DequantizeLinear outputs, the outputs
    #: of transparent ops), with the range they carry.
    aliases: dict[str, str] = field(default_factory=dict)
    #: Nodes whose int8 weights use a narrower grid than -127..127 -> their largest magnitude (63: the
    #: 7-bit weights of ``Placement.narrow_weights_below_channels``).
    weight_qmax: dict[str, int] = field(default_factory=dict)
    #: The ``activations`` grid the layout was built on: the pass's own, or ``asymmetric`` where the
    #: target's zero-point-0 grid fell back on this CPU (``QDQ.build``); a later build of the same model
    #: passes it to get the same grid.
    grid: str = "target"

    def owner(self, tensor: str) -> str:
        """The range ``tensor`` (quantized, or read as dequantized) uses."""
        return self.activations.get(tensor) or self.aliases[tensor]


#: Below this ``Target.reference_fidelity`` (mean cosine of the runtime's outputs against onnxruntime's for
#: the same Q/DQ graph), the runtime does not compute what the graph says: a zero-point-0 grid is built
#: again with asymmetric activations. Measured on the digits detector, AVX-512 VNNI, OpenVINO 2026.4: 0.996-
#: 0.999 where both agree (asymmetric), 0.64-0.74 with zero point 0 (README).
REFERENCE_FIDELITY = 0.95


def _diverges(fidelity: float | None) -> bool:
    return fidelity is not None and fidelity < REFERENCE_FIDELITY


def _unlike(fidelity: float) -> str:
    """The words every reference-fidelity line shares."""
    return (f"the target's runtime computes outputs unlike the Q/DQ graph's on this CPU ({cpu_isa()}): "
            f"fidelity {fidelity:.3f} against onnxruntime's")


def _fmt(fidelity: float | None) -> str:
    return "not measured" if fidelity is None else f"{fidelity:.3f}"


class GridChoice(NamedTuple):
    """What ``QDQ.build`` decided for one graph's activation grid, made once per graph and pass instance:
    ``graph`` (the ``onnx.ModelProto`` it was made for), the ``activations`` value built (``asymmetric``
    where the target's zero-point-0 grid fell back), the terminal line (None: nothing to say), the
    runtime's ``reference_fidelity`` of that build (None: not measured) and whether ``line`` reports
    the fallback check of the target's own grid (``activation_grid_fallback`` in the facts), and the
    model that fidelity is of."""

    graph: onnx.ModelProto
    grid: str
    line: str | None
    fidelity: float | None
    fallback: bool
    #: The Q/DQ model ``fidelity`` was measured on (the first build): ``QDQ.call`` measures the emitted
    #: model again where it is another (other ranges, or layers left float by ``max_drop``).
    measured: onnx.ModelProto


class _Built(NamedTuple):
    """One ``QDQ._build``: the model, its report facts and diagnostics, the target's check of it, the
    layout it filled (or None) and whether any range has a zero point."""

    model: onnx.ModelProto
    facts: dict
    diagnostics: list[str]
    check: Verification
    layout: "QDQLayout | None"
    asymmetric: bool


class QDQ(Pass):
    """Insert Q/DQ for the target from the calibration ranges; the YOLO decode stays float."""

    name = "qdq"
    stage = "onnx"
    requires = (CALIBRATION,)
    provides = ("quantized",)
    makes = ("quantized",)
    rejects = {"fp16": "int8 quantizes the float32 graph: choose one of int8 and fp16 (or put int8 first)",
               "quantized": "quantize once (drop the second int8/qdq)"}
    params = (
        Param("exclude", "str", "", "node names/patterns kept float, separated by '|' (e.g. '/model.0/*')"),
        Param("keep_tail_float", "bool", True, "keep the output tail (YOLO decode, DFL, concat, sigmoid) float"),
        Param("float_head_convs", "bool", False, "also keep the head's last convolutions float"),
        Param("activations", "choice", "target", "activation grid: target (the target's own; openvino: zero point "
              "0, built again asymmetric where this CPU's OpenVINO would run zero-point-0 layers in float or "
              "compute them unlike onnxruntime; a grid chosen here is checked the same way and warned about), "
              "symmetric (zero point 0: U8 over [0, max] where the range is non-negative, else S8 over +-max), "
              "asymmetric (U8 over [min, max] with a zero point, NNCF's grid: on OpenVINO about 0.2 pt more "
              "accurate and 16-20% slower than zero point 0 on a trained YOLOv8n, README), hybrid (zero point 0 "
              "on tensors finer than stride hybrid_stride, asymmetric U8 on the coarser ones)",
              choices=("target", "symmetric", "asymmetric", "hybrid")),
        Param("hybrid_stride", "int", 16, "activations=hybrid: tensors at this stride (input size / tensor "
              "size) or coarser get asymmetric U8, finer ones zero point 0", low=1, high=1024),
        Param("max_drop", "float", None, "mixed precision: keep the most sensitive layers float until the val "
              "metric (--data) is within this many points of the float model, checked after the fact",
              low=0.0, high=100.0),
    )

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        target = require_integer_rules(ctx.target)
        if "quantized" in ir.analyses or _has_qdq(ir.onnx_model):
            raise UsageError("the model is already quantized (it has Q/DQ nodes); quantize it once")
        if self.args["max_drop"] is None:
            model, facts, diagnostics = self.build(ir, target, set())
        else:
            from .mixed_precision import quantize_within

            model, facts, diagnostics = quantize_within(ir, ctx, lambda extra: self.build(ir, target, extra),
                                                        self.args["max_drop"])
        diagnostics += self._check_emitted(model, target, facts)
        ir.set_onnx(model)
        ir.analyses["quantized"] = {"target": target.name}
        return PassResult(True, facts, diagnostics)

    def _check_emitted(self, model: onnx.ModelProto, target: Target, facts: dict) -> list[str]:
        """The emitted ``model``'s ``reference_fidelity`` where the grid choice measured another build of
        the graph (``calibrate:method=auto``'s first candidate, or fewer float layers under ``max_drop``):
        the facts then give the emitted model's, and a line says where it alone is below
        ``REFERENCE_FIDELITY``. Nothing is measured where the target has no reference or the choice
        measured this very model."""
        choice = getattr(self, "_grid_choice", None)
        if choice is None or choice.fidelity is None or choice.measured is model:
            return []
        fidelity = target.reference_fidelity(model)
        if fidelity is None:
            return []
        facts["reference_fidelity"] = round(fidelity, 4)
        if _diverges(fidelity) and not _diverges(choice.fidelity):
            return [f"the emitted graph's outputs on the target's runtime differ from onnxruntime's on this CPU "
                    f"({cpu_isa()}): fidelity {fidelity:.3f} (the first build of the graph: {choice.fidelity:.3f})"]
        return []

    def scheme_for(self, target: Target, activations: str | None = None) -> QuantScheme:
        """``target``'s quantization scheme with the ``activations`` grid applied (default: this pass's;
        ``target``: as is; ``symmetric``/``asymmetric``: zero point 0 or not, on the target's activation
        dtype)."""
        grid = activations or self.args["activations"]
        if grid == "target":
            return target.scheme
        return replace(target.scheme, activation_symmetric=grid in ("symmetric", "hybrid"))

    def build(self, ir: ModelIR, target, extra_float: set[str],
              layout: "QDQLayout | None" = None) -> tuple[onnx.ModelProto, dict, list[str]]:
        """The Q/DQ model of ``ir``'s graph for ``target`` with the nodes in ``extra_float`` kept float;
        returns (model, facts for the report, diagnostics). ``layout``, when given, is filled with where
        the Q/DQ went (what ``qat`` fake-quantizes).

        The grid is checked on the target's runtime (``Target.verify``): with ``activations=target`` on a
        target whose own grid has zero point 0, where the runtime still runs some Q/DQ layers in float on
        this machine, the graph is built again with U8 asymmetric activations and the build with fewer
        float layers is kept; the report says which (``activation_grid_fallback``). OpenVINO 2026.4 on CPUs
        without AMX (AVX2, AVX-512 VNNI) left 25 of a random-weights yolov8n's 63 convolutions in float with
        zero point 0 and none with asymmetric activations, which ran the model 1.7x faster (README,
        "OpenVINO: the grid is checked on this CPU"). Where every layer runs int8, the runtime's numbers are
        checked too (``Target.reference_fidelity``, the outputs against onnxruntime's for the same graph):
        below ``REFERENCE_FIDELITY`` the asymmetric build is kept if it agrees better. On the same CPUs
        OpenVINO computed the trained digits detector's class scores at a fidelity of 0.64-0.74 with zero
        point 0 (test mAP50-95 -7.8 pt at 640) and 0.996-0.999 asymmetric (-0.07 pt).

        A grid the user chose (``symmetric``, ``hybrid``, ``asymmetric``) is built as asked, but its
        reference fidelity is measured too and a warning line says where it is below ``REFERENCE_FIDELITY``
        (``activations=symmetric`` on the digits detector: 0.73, -16.7 pt test mAP50-95 on OpenVINO without
        AMX). The facts' ``reference_fidelity`` is that of this build's graph where it is the first build;
        ``call`` measures the emitted model again where it is not.

        The choice is made once per graph (``ir.onnx_model``) and pass instance: later builds of the same
        graph with other ranges (``calibrate:method=auto`` scores each candidate on the grid that will be
        emitted) reuse it rather than building twice."""
        grid = self.args["activations"]

        def fresh() -> QDQLayout | None:
            return QDQLayout() if layout is not None else None

        memo = getattr(self, "_grid_choice", None)  # this graph's GridChoice, once made
        if memo is not None and memo.graph is ir.onnx_model:
            built = self._build(ir, target, extra_float, fresh(), memo.grid)
            choice = memo
        else:
            built, choice = self._choose_grid(ir, target, extra_float, fresh, grid)
            self._grid_choice = choice
        line = choice.line
        if choice.fidelity is not None:
            built.facts["reference_fidelity"] = round(choice.fidelity, 4)
        if line and choice.fallback:
            built.facts["activation_grid_fallback"] = line
        if line:
            built.diagnostics.append(line)
        elif built.check.float_layers and not built.asymmetric:
            built.diagnostics.append("these layers read activations with zero point 0; "
                                     "-p int8:activations=asymmetric (NNCF's grid) may run them in int8")
        if layout is not None:
            for f in fields(QDQLayout):
                setattr(layout, f.name, getattr(built.layout, f.name))
        return built.model, built.facts, built.diagnostics + built.check.problems

    def _choose_grid(self, ir: ModelIR, target, extra_float: set[str], fresh: Callable[[], "QDQLayout | None"],
                     grid: str) -> tuple["_Built", "GridChoice"]:
        """The first build of ``ir``'s graph on the ``activations`` grid ``grid`` and what its check
        decided (``build``): with ``target`` on a zero-point-0 target grid, the asymmetric build where
        the runtime runs layers in float or computes the graph unlike onnxruntime; with a grid the user
        chose, a warning line where the runtime computes it unlike onnxruntime (nothing is changed)."""
        checked = grid == "target" and target.scheme.activation_symmetric
        built = self._build(ir, target, extra_float, fresh(), grid)
        fidelity = target.reference_fidelity(built.model) if not built.check.float_layers else None
        if not checked:
            line = None
            if _diverges(fidelity):
                line = (f"activations={grid}: {_unlike(fidelity)} (below {REFERENCE_FIDELITY}), so its accuracy "
                        f"here can be far from the graph's"
                        + ("; activations=target checks this and falls back" if grid != "target" else ""))
            return built, GridChoice(ir.onnx_model, grid, line, fidelity, False, built.model)
        if not (built.check.float_layers or _diverges(fidelity)):
            return built, GridChoice(ir.onnx_model, grid, None, fidelity, False, built.model)
        alt = self._build(ir, target, extra_float, fresh(), "asymmetric")
        alt_fidelity = target.reference_fidelity(alt.model) if not alt.check.float_layers else None
        if built.check.float_layers:
            line = (f"with zero point 0 the target's runtime runs {len(built.check.float_layers)} "
                    f"Q/DQ layers in float on this CPU ({cpu_isa()}); with U8 asymmetric activations "
                    f"(NNCF's grid) {len(alt.check.float_layers)}")
            better = len(alt.check.float_layers) < len(built.check.float_layers)
        else:
            line = (f"with zero point 0 {_unlike(fidelity)}; with U8 asymmetric activations (NNCF's grid) "
                    f"{_fmt(alt_fidelity)}")
            better = not alt.check.float_layers and not _diverges(alt_fidelity) and (
                alt_fidelity is None or alt_fidelity > fidelity)
        if better:
            return alt, GridChoice(ir.onnx_model, "asymmetric", line + ": the activations are asymmetric",
                                   alt_fidelity, True, alt.model)
        return built, GridChoice(ir.onnx_model, grid, line + ": zero point 0 is kept", fidelity, True, built.model)

    def _build(self, ir: ModelIR, target, extra_float: set[str], layout: "QDQLayout | None",
               activations: str) -> "_Built":
        """One Q/DQ build on the activation grid ``activations`` (a value of the ``activations`` param),
        checked with ``target.verify``."""
        scheme, placement = self.scheme_for(target, activations), target.placement
        calib = dict(ir.analyses[CALIBRATION]["activations"])
        shifts = ir.analyses[CALIBRATION].get("bias_shifts") or {}  # bias correction (see calibrate)
        graph = gs.import_onnx(folded(ir.onnx_model))  # weights behind Identity/Shape ops become constants
        patterns = [p.strip() for p in self.args["exclude"].split("|") if p.strip()]
        float_nodes = output_tail(graph, self.args["float_head_convs"]) if self.args["keep_tail_float"] else set()
        float_nodes |= scoped_nodes(graph, ir.meta.get(FLOAT_SCOPES, ()))  # e.g. RT-DETR's decoder
        thin = (thin_convs(graph, placement.float_below_channels) | target.extra_float_nodes(graph)) - float_nodes
        float_nodes |= thin | extra_float
        narrow = thin_convs(graph, placement.narrow_weights_below_channels)  # 7-bit weights (overflow fix)
        transparent = placement.transparent_ops
        candidates = [n for n in graph.nodes
                      if n.op in placement.input_ops or n.op in placement.passthrough_ops or n.op in transparent]
        quant = [n for n in candidates if n.name not in float_nodes and not matches(n.name, patterns)]
        if not quant:
            raise UsageError(f"qdq: every one of the {len(candidates)} quantizable layers is excluded; "
                             f"nothing to quantize (check exclude=)")
        shared = _share_concat_ranges(quant, calib, transparent) if placement.share_concat_ranges else {}
        if layout is not None:
            layout.groups.update(shared)
        fused = _fused_outputs(quant, placement.fused_activations)
        missing: list[str] = []
        qdq_of: dict[str, gs.Variable] = {}
        grid: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # scale and zero point of each dequantized tensor
        symmetric_at = _grid_rule(graph, scheme, activations, self.args["hybrid_stride"], shared)
        asymmetric: set[str] = set()  # the ranges (owners) built with a zero point

        def act(t: gs.Tensor, like: gs.Variable | None = None) -> gs.Variable | None:
            """The dequantized twin of activation ``t`` (inserting Q/DQ once per tensor); ``like``
            (a dequantized tensor) makes it reuse that tensor's scale and zero point."""
            if not isinstance(t, gs.Variable) or not t.name or t.dtype not in (np.float32, None) or t.name in fused:
                return None
            if t.name in qdq_of:
                return qdq_of[t.name]
            if any(id(t) == id(dq) for dq in qdq_of.values()):
                return t  # already the output of an inserted DequantizeLinear
            if like is not None:
                scale, zp = grid[like.name]
            elif t.name in calib:
                symmetric = symmetric_at(t)
                scale, zp = activation_qparams(*calib[t.name], scheme.activation_dtype, symmetric)
                if not symmetric:
                    asymmetric.add(shared.get(t.name, t.name))
            else:
                missing.append(t.name)
                return None
            dq = _insert_qdq(graph, t, scale, zp, qdq_of)
            grid[dq.name] = grid[t.name] = (scale, zp)
            if layout is not None:
                owner = layout.owner(like.name) if like is not None else shared.get(t.name, t.name)
                layout.activations[t.name] = layout.aliases[dq.name] = owner
                layout.grids.setdefault(owner, (float(scale), int(zp), zp.dtype.name))
            return dq

        n_weights = n_corrected = 0
        for node in quant:
            if node.op in WEIGHTED_OPS and len(node.inputs) > 1 and isinstance(node.inputs[1], gs.Constant):
                x_dq = act(node.inputs[0])
                if x_dq is None:
                    continue
                qmax = NARROW_QMAX if node.name in narrow else 127
                n_corrected += _quantize_weights(graph, node, float(grid[x_dq.name][0]), scheme.quantize_bias,
                                                 shifts.get(node.name), qmax)
                n_weights += 1
                if layout is not None:
                    layout.weights[node.name] = _weight_axis(node)
                    if qmax != 127:
                        layout.weight_qmax[node.name] = qmax
            elif node.op in transparent:
                # The runtime moves the dequantization through this op: quantize its inputs (one shared
                # range) and let consumers read its outputs as dequantized, with no Q/DQ of their own.
                ins = [act(t) for t in node.inputs
                       if isinstance(t, gs.Variable) and t.name and t.dtype in (np.float32, None)]
                grids = [grid.get(t.name) if t is not None else None for t in ins]
                if ins and all(g is not None for g in grids) and all(
                        np.array_equal(g[0], grids[0][0]) and np.array_equal(g[1], grids[0][1]) for g in grids):
                    for t in node.outputs:
                        qdq_of[t.name] = t
                        grid[t.name] = grids[0]
                        if layout is not None:
                            layout.aliases[t.name] = layout.owner(ins[0].name)
                continue
            elif node.op in placement.passthrough_ops:
                x_dq = act(node.inputs[0])
                if x_dq is not None:
                    for t in node.outputs:
                        act(t, like=x_dq)
                continue
            else:
                for t in [t for t in node.inputs if isinstance(t, gs.Variable)]:
                    if placement.fuses_conv_add and node.op == "Add" and _raw_conv_output(t):
                        continue  # the runtime fuses this Add into the Conv: no Q/DQ on the raw output
                    act(t)
            if node.op in placement.output_ops:
                for t in node.outputs:
                    act(t)
            elif placement.quantize_softmax_tail_inputs and node.op in WEIGHTED_OPS:
                for t in node.outputs:
                    if _moved_into_softmax(t, float_nodes, transparent):
                        act(t)
        graph.cleanup().toposort()
        if layout is not None:
            layout.asymmetric |= asymmetric
            layout.grid = activations
        model = gs.export_onnx(graph)
        copy_header(model, ir.onnx_model)
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as e:
            raise PassError(f"Q/DQ graph fails onnx.checker: {str(e).splitlines()[0]}") from e
        check = target.verify(model)
        diagnostics = []
        if missing:
            diagnostics.append(f"{len(missing)} tensors had no calibration range and stay float (first: {missing[0]})")
        if activations == "hybrid" and not asymmetric:
            diagnostics.append(f"activations=hybrid: no quantized tensor is known to be at stride "
                               f"{self.args['hybrid_stride']} or coarser (static input and tensor heights are "
                               f"needed), so every activation has zero point 0")
        facts = {"target": target.name, "quantized_nodes": len(quant), "weights": n_weights,
                 "activations": sum(1 for k, v in qdq_of.items() if v.name != k),
                 "activation_grid": scheme.describe() if activations != "hybrid" else
                 f"{scheme.describe()} finer than stride {self.args['hybrid_stride']}, U8 asym at it and coarser",
                 "float_tail_nodes": len(float_nodes - thin - extra_float),
                 "float_thin_conv_nodes": len(thin),
                 "excluded_by_pattern": sum(1 for n in candidates if matches(n.name, patterns)), **check.facts}
        if shifts:
            facts["bias_corrected"] = n_corrected
        return _Built(model, facts, diagnostics, check, layout, bool(asymmetric))


def _grid_rule(graph: gs.Graph, scheme: QuantScheme, activations: str, hybrid_stride: int,
               shared: dict[str, str]) -> Callable[[gs.Variable], bool]:
    """``symmetric(t)``: whether activation tensor ``t`` gets zero point 0. ``scheme``'s choice, except
    with ``activations=hybrid``: a tensor at stride ``hybrid_stride`` or coarser (the graph input's height
    over the tensor's, from shape inference) gets an asymmetric zero point, one finer keeps zero point 0.
    The tensors of one shared range (``shared``: member -> group, a concat or a Resize's input and output)
    take their finest member's stride, so the group keeps one grid. Unknown heights keep zero point 0."""
    if activations != "hybrid":
        return lambda t: scheme.activation_symmetric
    image = next((t for t in graph.inputs if t.shape is not None and len(t.shape) == 4), None)
    height = image.shape[2] if image is not None and isinstance(image.shape[2], int) else None
    tensors = graph.tensors()

    def stride(name: str) -> float:
        t = tensors.get(name)
        if height is None or t is None or t.shape is None or len(t.shape) != 4 or not isinstance(t.shape[2], int):
            return 0.0  # unknown: the finest, zero point 0
        return height / max(t.shape[2], 1)

    finest: dict[str, float] = {}
    for member, group in shared.items():
        finest[group] = min(finest.get(group, float("inf")), stride(member))

    def symmetric(t: gs.Variable) -> bool:
        s = finest[shared[t.name]] if t.name in shared else stride(t.name)
        return s < hybrid_stride
    return symmetric


def _moved_into_softmax(t: gs.Tensor, float_nodes: set[str], transparent: tuple[str, ...]) -> bool:
    """Whether every reader of ``t`` is in the float tail and every path from it goes only through ops
    the runtime runs on quantized data (the target's ``transparent`` ops: data movement) into a Softmax
    (YOLO's DFL box logits): never into a Sigmoid or other compute."""
    readers = list(t.outputs)
    if not readers:
        return False
    stack, seen = readers, set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.name not in float_nodes:
            return False
        if node.op == "Softmax":
            continue
        if node.op not in transparent:
            return False
        for out in node.outputs:
            if not out.outputs:
                return False  # a graph output read without the softmax
            stack.extend(out.outputs)
    return True


def _raw_conv_output(t: gs.Tensor) -> bool:
    """Whether ``t`` is the output of a Conv read directly (no activation between)."""
    return any(p.op == "Conv" for p in t.inputs)


def _share_concat_ranges(nodes, calib: dict, transparent: tuple[str, ...] = ()) -> dict[str, str]:
    """Give a Concat's inputs and output one range (their union), so the concatenation needs no
    requantization; likewise the inputs and outputs of ``transparent`` ops. Tensors linked through
    several of them end up in one group. Returns each grouped tensor's group (one member's name)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for node in nodes:
        if node.op != "Concat" and node.op not in transparent:
            continue
        names = [t.name for t in list(node.inputs) + list(node.outputs) if isinstance(t, gs.Variable) and t.name in calib]
        for other in names[1:]:
            parent[find(other)] = find(names[0])
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(find(name), []).append(name)
    for members in groups.values():
        lo = min(calib[m][0] for m in members)
        hi = max(calib[m][1] for m in members)
        for m in members:
            calib[m] = [lo, hi]
    return {name: find(name) for name in parent}


def _fused_outputs(nodes: list[gs.Node], activations: tuple[str, ...]) -> set[str]:
    """Names of weighted-op outputs read only by one activation in ``activations`` (both quantized):
    they stay unquantized so the runtime folds the activation into the integer op."""
    if not activations:
        return set()
    names = {n.name for n in nodes}
    fused = set()
    for node in nodes:
        if node.op not in WEIGHTED_OPS:
            continue
        for t in node.outputs:
            readers = list(t.outputs)
            if len(readers) == 1 and readers[0].op in activations and readers[0].name in names:
                fused.add(t.name)
    return fused


def _has_qdq(model) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _insert_qdq(graph: gs.Graph, t: gs.Variable, scale: np.ndarray, zp: np.ndarray,
                registry: dict[str, gs.Variable]) -> gs.Variable:
    s = gs.Constant(f"{t.name}_scale", scale)
    z = gs.Constant(f"{t.name}_zero_point", zp)
    q_out = gs.Variable(f"{t.name}_quantized", dtype=zp.dtype, shape=t.shape)
    dq_out = gs.Variable(f"{t.name}_dequantized", dtype=np.float32, shape=t.shape)
    consumers = list(t.outputs)
    graph.nodes.append(gs.Node("QuantizeLinear", f"{t.name}_QuantizeLinear", inputs=[t, s, z], outputs=[q_out]))
    graph.nodes.append(gs.Node("DequantizeLinear", f"{t.name}_DequantizeLinear", inputs=[q_out, s, z], outputs=[dq_out]))
    for node in consumers:
        node.inputs = [dq_out if x is t else x for x in node.inputs]
    registry[t.name] = dq_out
    return dq_out


def _quantize_weights(graph: gs.Graph, node: gs.Node, x_scale: float, quantize_bias: bool,
                      shift: list[float] | None = None, qmax: int = 127) -> bool:
    """int8 per-channel weights (and, if asked, int32 bias for Conv/Gemm) behind DequantizeLinear;
    ``shift`` (bias correction: the layer's drift per output channel) is subtracted from the bias
    first; ``qmax``: the largest weight magnitude (63: 7-bit weights). Returns whether the bias was
    corrected."""
    w = node.inputs[1]
    axis = _weight_axis(node)
    w_values = np.asarray(w.values, np.float32)
    bias = node.inputs[2] if len(node.inputs) > 2 and isinstance(node.inputs[2], gs.Constant) else None
    fixed = False
    if bias is not None and shift is not None and node.op in CORRECTED_OPS:
        values = np.asarray(bias.values, np.float32)
        new = corrected(values, shift)
        if new is not values:
            bias = gs.Constant(f"{node.name}_bias_corrected", new)
            node.inputs[2] = bias
            fixed = True
    need = None
    if quantize_bias and bias is not None:
        # int32 bias uses scale x_scale * w_scale: widen a channel's weight scale where its bias
        # would not fit (tiny weights next to a large bias), as onnxruntime's own quantizer does.
        need = np.abs(np.asarray(bias.values, np.float32)) / (x_scale * float(2 ** 30))
        if need.shape != (w_values.shape[axis],):
            need = None
    q, w_scale = weight_qparams(w_values, axis, need, qmax)
    base = f"{node.name}_weight"
    w_dq = gs.Variable(f"{base}_dequantized", dtype=np.float32, shape=list(q.shape))
    graph.nodes.append(gs.Node(
        "DequantizeLinear", f"{base}_DequantizeLinear",
        inputs=[gs.Constant(f"{base}_quantized", q), gs.Constant(f"{base}_scale", w_scale),
                gs.Constant(f"{base}_zero_point", np.zeros_like(w_scale, dtype=np.int8))],
        outputs=[w_dq], attrs={"axis": axis}))
    node.inputs[1] = w_dq
    if quantize_bias and bias is not None and node.op in ("Conv", "Gemm"):
        b_scale = (w_scale * x_scale).astype(np.float32)
        b = np.asarray(bias.values, np.float32)
        if b.shape == b_scale.shape:
            bq = np.round(b / b_scale).astype(np.int32)
            b_dq = gs.Variable(f"{node.name}_bias_dequantized", dtype=np.float32, shape=list(b.shape))
            graph.nodes.append(gs.Node(
                "DequantizeLinear", f"{node.name}_bias_DequantizeLinear",
                inputs=[gs.Constant(f"{node.name}_bias_quantized", bq), gs.Constant(f"{node.name}_bias_scale", b_scale),
                        gs.Constant(f"{node.name}_bias_zero_point", np.zeros_like(bq))],
                outputs=[b_dq], attrs={"axis": 0}))
            node.inputs[2] = b_dq
    return fixed

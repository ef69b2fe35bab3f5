"""The float ONNX graph as a trainable torch module with fake quantization at exactly the Q/DQ points
``qdq`` would insert (a ``QDQLayout``): the model ``qat`` trains.

The graph is converted with onnx2torch (one torch module per ONNX node, so the fake-quantization
points are the ONNX tensors themselves, not a guess at which torch op made them). Each quantized
activation gets an ``ActivationQuantizer`` (learned scale and zero point, LSQ+: torch's
``_fake_quantize_learnable_per_tensor_affine``); tensors that share a range in the Q/DQ model (a
Concat's inputs and output, a MaxPool's input and output) share one quantizer. Each node with int8
weights gets its weight fake-quantized per output channel, symmetric, scale ``max|w| / 127`` as ``qdq``
computes it (``torch.fake_quantize_per_channel_affine``, a straight-through estimator).

Not modelled in training (the emitted graph still has them): the int32 bias of targets that quantize
biases (error below half a bias step, ``x_scale * w_scale / 2``) and the widening of a weight scale
where a bias would overflow int32 (only for near-zero weight channels).
"""

from __future__ import annotations

import copy
import math
import operator
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from yolocc.compiler.errors import PassError, UsageError
from yolocc.compiler.target import QuantScheme

from .qdq import QDQLayout

INSTALL_HINT = "pip install 'yolocc[qat]' (or: pip install onnx2torch)"

# onnx2torch's Slice indexes with a list (a deprecation warning from torch on every forward).
warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing",
                        category=UserWarning)


def available() -> bool:
    """Whether onnx2torch (the ``qat`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("onnx2torch") is not None


def activation_bounds(dtype: str) -> tuple[int, int]:
    """The integer range QuantizeLinear clips an activation of ``dtype`` ("uint8" or "int8") to."""
    return (0, 255) if dtype == "uint8" else (-128, 127)


class ActivationQuantizer(nn.Module):
    """Per-tensor fake quantization with a learned scale and (asymmetric schemes) zero point.

    ``forward(x)``: x of any shape, float32; returns x quantized to the grid and dequantized.
    ``range()`` is the ``[min, max]`` that ``qdq.activation_qparams`` turns back into this exact scale
    and zero point (and ``dtype``, the quantized type ``qdq`` chose: under a symmetric U8 scheme, S8 where
    the calibrated range had negatives), so the learned grid reaches the emitted Q/DQ unchanged."""

    def __init__(self, scale: float, zero_point: int, scheme: QuantScheme, dtype: str):
        super().__init__()
        self.qmin, self.qmax = activation_bounds(dtype)
        self.symmetric = scheme.activation_symmetric
        self.log_scale = nn.Parameter(torch.tensor([math.log(float(scale))]))  # steps are relative
        self.zero_point = nn.Parameter(torch.tensor([float(zero_point)]), requires_grad=not self.symmetric)

    @property
    def scale(self) -> torch.Tensor:
        """The scale (1,), learned as its logarithm so an optimizer step changes it by a ratio."""
        return self.log_scale.exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grad_factor = 1.0 / math.sqrt(max(x[0].numel(), 1) * self.qmax)  # LSQ's gradient scale
        return torch._fake_quantize_learnable_per_tensor_affine(x, self.scale, self.zero_point, self.qmin,
                                                                self.qmax, grad_factor)

    def grid(self) -> tuple[float, int]:
        """(scale, zero point) as the Q/DQ model will hold them (float32 scale, integer zero point)."""
        zp = 0 if self.symmetric else int(np.clip(round(self.zero_point.detach().item()), self.qmin, self.qmax))
        return float(np.float32(self.scale.detach().item())), zp

    def range(self) -> list[float]:
        """``[min, max]`` of the learned grid (symmetric: ``±127 * scale``, or ``[0, 255 * scale]`` for U8)."""
        scale, zp = self.grid()
        if self.symmetric:
            return [0.0, 255.0 * scale] if self.qmin == 0 else [-127.0 * scale, 127.0 * scale]
        return [(self.qmin - zp) * scale, (self.qmax - zp) * scale]


class WeightQuantizer(nn.Module):
    """Symmetric per-channel int8 fake quantization of a weight (a ``torch.nn.utils.parametrize``
    parametrization): ``forward(w)`` returns ``w`` on the grid ``max|w[c]| / qmax`` of each output channel
    (``axis`` of the torch weight; ``qmax`` 127, or 63 for 7-bit weights, as ``qdq`` builds them), with
    straight-through gradients."""

    def __init__(self, axis: int = 0, qmax: int = 127):
        super().__init__()
        self.axis, self.qmax = axis, qmax

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        amax = w.detach().abs().transpose(0, self.axis).reshape(w.shape[self.axis], -1).amax(1)
        scale = torch.where(amax > 0, amax / float(self.qmax), torch.ones_like(amax))
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, self.axis, -self.qmax, self.qmax)


@dataclass
class FakeQuantGraph:
    """``module(x)`` returns the values of ``outputs`` (ONNX tensor names), in order.

    ``quantizers``: one per range (keyed by the layout's owner tensor); ``points``: the ONNX tensors
    fake-quantized (the Q/DQ points); ``weights``: ONNX node name -> the torch module holding its weight."""

    module: torch.fx.GraphModule
    outputs: list[str]
    quantizers: dict[str, ActivationQuantizer] = field(default_factory=dict)
    points: list[str] = field(default_factory=list)
    weights: dict[str, nn.Module] = field(default_factory=dict)


def build(model: onnx.ModelProto, outputs: list[str], layout: QDQLayout | None = None,
          scheme: QuantScheme | None = None) -> FakeQuantGraph:
    """``model`` (float ONNX) as a torch module returning the tensors ``outputs``; with ``layout`` and
    ``scheme``, fake-quantized at the layout's Q/DQ points. Raises ``PassError`` for a graph
    onnx2torch cannot convert or a quantized weight it does not hold as a module parameter."""
    try:
        from onnx2torch import convert
    except ImportError as e:
        raise UsageError(f"qat trains the ONNX graph through onnx2torch, which is not installed: {INSTALL_HINT}") from e

    renamed = copy.deepcopy(model)
    names = []
    for i, node in enumerate(renamed.graph.node):
        names.append(node.name)
        node.name = f"n{i}"
    try:
        gm = convert(renamed)
    except Exception as e:  # onnx2torch raises NotImplementedError/KeyError/... for what it lacks
        raise PassError(f"qat: onnx2torch cannot convert the graph ({type(e).__name__}: {str(e)[:160]})") from e
    value = _tensor_values(gm, renamed)
    graph = gm.graph
    fq = FakeQuantGraph(gm, list(outputs))
    if layout is not None:
        for i, node in enumerate(renamed.graph.node):
            name = names[i]
            if name not in layout.weights:
                continue
            module = gm.get_submodule(node.name)
            if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                raise PassError(f"qat: cannot train through the int8 weights of '{name}' ({node.op_type} became "
                                f"{type(module).__name__})")
            torch.nn.utils.parametrize.register_parametrization(
                module, "weight", WeightQuantizer(0, layout.weight_qmax.get(name, 127)))
            fq.weights[name] = module
        for tensor, owner in layout.activations.items():
            if tensor not in value:
                raise PassError(f"qat: the quantized tensor '{tensor}' has no value in the converted graph")
            if owner not in fq.quantizers:
                scale, zp, dtype = layout.grids[owner]
                grid = replace(scheme, activation_symmetric=owner not in layout.asymmetric)  # hybrid: per range
                fq.quantizers[owner] = ActivationQuantizer(scale, zp, grid, dtype)
            key = f"fq{len(fq.points)}"
            gm.add_submodule(key, fq.quantizers[owner])
            src = value[tensor]
            if src.op == "placeholder":
                anchor = next(iter(graph.nodes))
                while anchor.next.op == "placeholder":
                    anchor = anchor.next
            else:
                anchor = src
            with graph.inserting_after(anchor):
                q = graph.call_module(key, (src,))
            src.replace_all_uses_with(q, delete_user_cb=lambda user, q=q: user is not q)
            value[tensor] = q
            fq.points.append(tensor)
    missing = [t for t in outputs if t not in value]
    if missing:
        raise PassError(f"qat: no value for '{missing[0]}' in the converted graph")
    out = next(n for n in graph.nodes if n.op == "output")
    out.args = (tuple(value[t] for t in outputs),)
    graph.eliminate_dead_code()
    gm.recompile()
    return fq


def _tensor_values(gm: torch.fx.GraphModule, model: onnx.ModelProto) -> dict[str, torch.fx.Node]:
    """ONNX tensor name -> the fx node computing it (``model``'s nodes named ``n<i>``, as converted)."""
    by_name = {n.name: n for n in model.graph.node}
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    value: dict[str, torch.fx.Node] = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for name, node in zip(inputs, placeholders):
        value[name] = node
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in by_name:
            outs = [o for o in by_name[node.target].output if o]
            if len(outs) == 1:
                value[outs[0]] = node
        elif node.op == "call_function" and node.target is operator.getitem and node.args \
                and getattr(node.args[0], "target", None) in by_name:
            outs = by_name[node.args[0].target].output
            if isinstance(node.args[1], int) and node.args[1] < len(outs):
                value[outs[node.args[1]]] = node
    return value


def trained_model(model: onnx.ModelProto, fq: FakeQuantGraph) -> onnx.ModelProto:
    """``model`` with the weights and biases of ``fq``'s quantized layers replaced by the trained ones
    (float; ``qdq`` quantizes them). Raises ``PassError`` if a shape no longer matches."""
    out = copy.deepcopy(model)
    inits = {i.name: i for i in out.graph.initializer}
    nodes = {n.name: n for n in out.graph.node}
    for name, module in fq.weights.items():
        node = nodes[name]
        weight = module.parametrizations.weight.original.detach().cpu().numpy()  # float, behind the fake-quant
        if node.op_type == "Gemm" and not _attr(node, "transB", 0):
            weight = weight.T
        _replace(inits, node.input[1], weight, name)
        if len(node.input) > 2 and node.input[2] and module.bias is not None:
            _replace(inits, node.input[2], module.bias.detach().cpu().numpy(), name)
    return out


def ranges(fq: FakeQuantGraph, layout: QDQLayout) -> dict[str, list[float]]:
    """The learned ``[min, max]`` of every quantized tensor (its range's quantizer), for the
    calibration analysis that ``qdq`` reads; every member of a shared (Concat) range gets the group's,
    so the union ``qdq`` takes is the learned range itself."""
    learned = {tensor: fq.quantizers[owner].range() for tensor, owner in layout.activations.items()}
    learned.update({member: fq.quantizers[root].range() for member, root in layout.groups.items()
                    if root in fq.quantizers})
    return learned


def _attr(node: onnx.NodeProto, name: str, default):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _replace(inits: dict, name: str, values: np.ndarray, node: str) -> None:
    old = inits.get(name)
    if old is None:
        raise PassError(f"qat: the weight '{name}' of '{node}' is not an initializer")
    if tuple(old.dims) != values.shape:
        raise PassError(f"qat: trained weight of '{node}' has shape {values.shape}, the graph {tuple(old.dims)}")
    old.CopyFrom(numpy_helper.from_array(values.astype(np.float32), name))

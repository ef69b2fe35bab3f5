"""Bias correction: remove the mean shift that quantization adds to each convolution's output.

Rounding weights and clipping or rounding activations changes a layer's *mean* output, and a mean
shift passes through the following layers instead of averaging out. For every quantized Conv/Gemm
with a bias, the layer as the quantized model computes it (its input through the same
QuantizeLinear/DequantizeLinear, its int8 weights and its quantized bias, all dequantized: what the
integer kernel computes exactly, up to float rounding) runs beside the float layer on the float
model's own input to it; the per-output-channel mean of the difference over the calibration images
and the spatial positions is the layer's drift, and ``qdq`` subtracts it from the layer's bias
(from the float bias, or before the bias is quantized to int32 where the target quantizes biases).

This is NNCF's fast bias correction with one change: NNCF feeds each channel's *mean* input through
the quantized layer; this feeds the actual inputs, which also captures the zero padding at the
borders and the effect of clipping, which is not linear in the mean. Each layer reads float inputs,
so each drift is the layer's own: independent of which other layers are quantized or corrected
(mixed precision may leave any of them float afterwards). Layers without a bias are left alone.
No library function does this for an existing Q/DQ graph: NNCF's applies inside its own
quantization pipeline (its own graph and Q/DQ placement), onnxruntime's quantizer has none.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: Layer types whose bias is corrected (output channels on axis 1).
CORRECTED_OPS = ("Conv", "Gemm")
PREFIX = "bias_correction__"

Shifts = dict[str, list[float]]  # layer (node) name -> per-output-channel drift


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


class _Graph:
    """Lookups over one ONNX graph: producers by tensor name and initializer values."""

    def __init__(self, model: onnx.ModelProto):
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.inits = {t.name: t for t in model.graph.initializer}
        self.tensors = set(self.producer) | {i.name for i in model.graph.input} | set(self.inits)

    def value(self, name: str) -> np.ndarray | None:
        """An initializer's value, or a Constant node's, else None."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def dequantized(self, name: str) -> np.ndarray | None:
        """The float value of ``name`` when a DequantizeLinear of a constant produces it, else None."""
        node = self.producer.get(name)
        if node is None or node.op_type != "DequantizeLinear":
            return None
        q = self.value(node.input[0])
        scale = self.value(node.input[1])
        if q is None or scale is None:
            return None
        zp = self.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        scale = scale.astype(np.float64)
        zp = np.zeros_like(scale) if zp is None else zp.astype(np.float64)
        if scale.ndim == 1 and scale.size > 1:  # per channel along ``axis``
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        x = q.astype(np.float64) - zp
        return (x * scale).astype(np.float32)


def twin_model(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """``float_model`` with, for every quantized Conv/Gemm of ``qdq_model`` that has a bias, its
    quantized twin reading the float input, and one output per layer: the per-output-channel mean
    of (twin - float) on the input, shape (C,). Returns (the model, the layer names in output order).
    Layers are matched by node name (``qdq`` keeps the float model's names)."""
    fl, qd = _Graph(float_model), _Graph(qdq_model)
    float_nodes = {n.name: n for n in float_model.graph.node if n.name}
    opset = _opset(float_model)
    nodes, inits, outputs, layers = [], [], [], []
    for node in qdq_model.graph.node:
        if node.op_type not in CORRECTED_OPS or len(node.input) < 3 or not node.input[2]:
            continue
        twin = float_nodes.get(node.name)
        w = qd.dequantized(node.input[1])
        b = qd.dequantized(node.input[2])
        if b is None:
            b = qd.value(node.input[2])
        if twin is None or twin.op_type != node.op_type or w is None or b is None:
            continue
        k = len(layers)
        tag = f"{PREFIX}{k}"
        x = node.input[0]
        src = qd.producer.get(x)
        if src is not None and src.op_type == "DequantizeLinear" and qd.producer.get(src.input[0]) is not None \
                and qd.producer[src.input[0]].op_type == "QuantizeLinear":
            quant = qd.producer[src.input[0]]
            if quant.input[0] not in fl.tensors:
                continue
            values = [qd.value(name) for name in quant.input[1:] if name]  # scale [, zero point]
            if any(v is None for v in values):
                continue
            qparams = [f"{tag}_x_scale", f"{tag}_x_zero_point"][:len(values)]
            inits += [numpy_helper.from_array(v, name) for v, name in zip(values, qparams)]
            nodes += [helper.make_node("QuantizeLinear", [quant.input[0], *qparams], [f"{tag}_xq"], name=f"{tag}_q",
                                       **{a.name: helper.get_attribute_value(a) for a in quant.attribute}),
                      helper.make_node("DequantizeLinear", [f"{tag}_xq", *qparams], [f"{tag}_x"], name=f"{tag}_dq",
                                       **{a.name: helper.get_attribute_value(a) for a in src.attribute})]
            x = f"{tag}_x"
        elif x not in fl.tensors:
            continue
        inits += [numpy_helper.from_array(w, f"{tag}_w"), numpy_helper.from_array(b, f"{tag}_b")]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        nodes.append(helper.make_node(node.op_type, [x, f"{tag}_w", f"{tag}_b"], [f"{tag}_y"], name=f"{tag}_layer",
                                      **attrs))
        nodes.append(helper.make_node("Sub", [f"{tag}_y", twin.output[0]], [f"{tag}_diff"], name=f"{tag}_sub"))
        axes = [0] + list(range(2, w.ndim if node.op_type == "Conv" else 2))
        if opset >= 18:
            inits.append(numpy_helper.from_array(np.array(axes, np.int64), f"{tag}_axes"))
            nodes.append(helper.make_node("ReduceMean", [f"{tag}_diff", f"{tag}_axes"], [f"{tag}_drift"],
                                          name=f"{tag}_mean", keepdims=0))
        else:
            nodes.append(helper.make_node("ReduceMean", [f"{tag}_diff"], [f"{tag}_drift"], name=f"{tag}_mean",
                                          axes=axes, keepdims=0))
        outputs.append(helper.make_tensor_value_info(f"{tag}_drift", onnx.TensorProto.FLOAT, None))
        layers.append(node.name)
    model = onnx.ModelProto()
    model.CopyFrom(float_model)
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    return model, layers


def drift(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto, images: np.ndarray,
          threads: int = 0) -> Shifts:
    """Each corrected layer's mean output drift ``{layer: [C floats]}`` (quantized minus float, in the
    layer's output units) over ``images`` (N, C, H, W float32), one image at a time on onnxruntime's
    CPU provider (basic graph optimisations: the twin layers compute in float, nothing is fused).
    Empty when no quantized layer has a bias."""
    import onnxruntime as ort

    model, layers = twin_model(float_model, qdq_model)
    if not layers or len(images) == 0:
        return {}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    total = None
    for x in images:
        outs = sess.run(None, {name: x[None].astype(np.float32)})
        total = [o.astype(np.float64) for o in outs] if total is None else [t + o for t, o in zip(total, outs)]
    return {layer: (t / len(images)).astype(np.float32).tolist() for layer, t in zip(layers, total)}


def corrected(bias: np.ndarray, shift: list[float] | None) -> np.ndarray:
    """``bias`` (C,) less the layer's drift ``shift`` (C floats); ``bias`` unchanged when there is
    none or its length differs."""
    if shift is None or len(shift) != bias.shape[0] or bias.ndim != 1:
        return bias
    return (bias.astype(np.float64) - np.asarray(shift, np.float64)).astype(np.float32)

"""A checker for TensorRT's explicit-quantization constraints on a Q/DQ ONNX graph.

Rules checked (from TensorRT's documented explicit-quantization behaviour):
- every Q/DQ is INT8 with zero-point 0 (symmetric) and positive scales;
- weight DequantizeLinear is per-channel on axis 0 (one scale per output channel) for Conv;
- every quantized Conv reads its activation and its weight through DequantizeLinear;
- a Conv output that an activation reads is never quantized directly (TensorRT fuses Conv+activation,
  then Q); a Conv without activation may be quantized at its output (TensorRT fuses Conv+Q);
- each QuantizeLinear feeds DequantizeLinear nodes with the same scale and zero point;
- a residual Add that reads one dequantized input reads the other one dequantized too, unless that
  other input is a Conv's raw output (TensorRT fuses the Add into that Conv).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


#: Elementwise activations TensorRT fuses into the convolution before them (SiLU is Sigmoid + Mul).
ACTIVATIONS = ("Sigmoid", "Mul", "Relu", "LeakyRelu", "Clip", "HardSwish", "HardSigmoid", "Tanh")


def check_tensorrt_qdq(model: onnx.ModelProto) -> list[str]:
    """All violations found (empty when the graph follows the rules)."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    problems: list[str] = []

    def const(name: str):
        return inits.get(name)

    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            scale, zp = const(n.input[1]), const(n.input[2]) if len(n.input) > 2 else None
            if scale is None or np.any(scale <= 0):
                problems.append(f"{n.name}: scale must be a positive constant")
            if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
                problems.append(f"{n.name}: zero point must be int8 0 (symmetric)")
        if n.op_type == "QuantizeLinear":
            for c in consumers.get(n.output[0], []):
                if c.op_type != "DequantizeLinear" or c.input[1:] != n.input[1:]:
                    problems.append(f"{n.name}: must feed DequantizeLinear with the same scale/zero point")
            src = producer.get(n.input[0])
            activated = any(c.op_type in ACTIVATIONS for c in consumers.get(n.input[0], []))
            if src is not None and src.op_type == "Conv" and activated:
                problems.append(f"{n.name}: quantizes the raw output of Conv '{src.name}' (fuse its activation first)")
        if n.op_type == "Conv":
            dq_w = producer.get(n.input[1])
            dq_x = producer.get(n.input[0])
            if dq_w is not None and dq_w.op_type == "DequantizeLinear":
                axis = next((a.i for a in dq_w.attribute if a.name == "axis"), 1)
                w = const(dq_w.input[0])
                scale = const(dq_w.input[1])
                if axis != 0 or w is None or scale is None or scale.shape != (w.shape[0],):
                    problems.append(f"{n.name}: weights must be quantized per channel on axis 0")
                if dq_x is None or dq_x.op_type != "DequantizeLinear":
                    problems.append(f"{n.name}: quantized weights but float activation input")
        if n.op_type == "Add" and len(n.input) == 2 and not any(i in inits for i in n.input):
            dq = [producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input]
            # TensorRT fuses an Add into the Conv producing one input (Conv+Add): that raw input stays float.
            fused = [producer.get(i) is not None and producer[i].op_type == "Conv" for i in n.input]
            if any(dq) and not all(d or f for d, f in zip(dq, fused)):
                problems.append(f"{n.name}: residual Add has one quantized and one float input")
    return problems

"""YOLO-aware float region: the graph tail that must stay in floating point.

Walking back from the graph outputs through non-compute ops (and stopping after the first
Conv/Gemm/MatMul met on each path) collects the head's decode: the box/score concat, the DFL
softmax and conv, the final sigmoid and the box arithmetic, and (optionally) the last
convolutions whose raw outputs feed them. Quantizing that tail is what drives a naive INT8 YOLO to 0 mAP: box coordinates
(0-640) and class scores (0-1) would share one quantized tensor.

Every task's decode is in this tail, because it lies between the head's last convolutions and the
outputs: a segmenter's mask-coefficient reshapes and concat and its prototypes' last SiLU, a pose
model's keypoint decode (``(k * 2 + grid - 0.5) * stride`` and the visibility sigmoid), an OBB
model's angle (``(sigmoid - 0.25) * pi``) and rotated-box decode (Cos, Sin and their arithmetic).
Each branch's last convolution (``cv2``/``cv3``/``cv4``, ``proto``) is quantized with its own output
range, so the decode reads only per-branch Q/DQ (``tests/passes/test_task_int8.py``).

No task needs more kept float by default (measured, not assumed: yolov8n at 160 px on the digit
fixtures, ``-p int8`` on ort-cpu, the task's own metric against the float model in points, val / test):

    task (metric)           int8 (auto)    + task branch's last convs float   float_head_convs=true   int8:max_drop=0.1
    segment (mask mAP50-95) +0.22 / -0.22  +0.25 / -0.19 (cv4.*.2, proto.cv3) +0.29 / -0.23           +0.22 / -0.22 (0 float)
    pose (pose mAP50-95)    -0.60 / -0.32  -0.31 / -0.33 (cv4.*.2)            -0.22 / -0.19           -0.05 / +0.03 (32 float)
    obb (OBB mAP50-95)      -0.36 / -0.29  -0.43 / -0.26 (cv4.*.2)            -0.23 / -0.26           -0.09 / -0.20 (4 float)

(minmax: seg +0.13 / +0.16, pose -0.69 / -0.80, obb -0.61 / -0.53; with the task branch float +0.29 /
+0.13, -0.53 / -0.66, -0.65 / -0.61.) Keeping a task branch's last convolutions float gains at most
+0.29 pt on val (pose) and nothing on test (-0.01), under the +0.2 pt on val confirmed on test a
default rule must pay; the whole head's last convolutions float pays at most +0.13 pt on test. The
mixed-precision ranking (``int8:max_drop``) does reach into the task branches where they matter (pose:
its 32 float layers include the three ``cv4`` output convolutions), and remains the way to buy back
a task's last tenths of a point.
"""

from __future__ import annotations

import fnmatch

import onnx_graphsurgeon as gs

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Elementwise activations (SiLU is Sigmoid + Mul) that follow a float conv into the float region.
ACTIVATION_OPS = ("Sigmoid", "Mul", "Relu", "LeakyRelu", "Clip", "HardSwish", "HardSigmoid", "Tanh")


def output_tail(graph: gs.Graph, include_last_convs: bool = True) -> set[str]:
    """Names of the nodes in the float tail; ``include_last_convs=False`` leaves the last
    Conv/Gemm of each path out of it (they are quantized, with per-branch output ranges)."""
    tail: set[str] = set()
    stack = [t for t in graph.outputs]
    seen: set[int] = set()
    while stack:
        tensor = stack.pop()
        for node in tensor.inputs:  # producer(s)
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op in COMPUTE_OPS and not _after_softmax(node):
                if include_last_convs:
                    tail.add(node.name)
                continue  # a compute layer ends the tail
            tail.add(node.name)
            stack.extend(t for t in node.inputs if isinstance(t, gs.Variable))
    return tail


def scoped_nodes(graph: gs.Graph, scopes) -> set[str]:
    """Names of the nodes the exporter named under one of the module ``scopes`` (``/model.28/...`` for
    ``model.28``): a whole submodule kept float (``analyses.FLOAT_SCOPES``)."""
    prefixes = tuple(f"/{s}/" for s in scopes)
    return {n.name for n in graph.nodes if prefixes and n.name.startswith(prefixes)}


def thin_convs(graph: gs.Graph, below: int) -> set[str]:
    """Names of the (ungrouped) convolutions with fewer than ``below`` input channels, such as a
    3-channel stem, plus the activation ops computed only from their outputs (e.g. their SiLU)."""
    region: set[str] = set()
    if below <= 0:
        return region
    for node in graph.nodes:  # topological order, as imported
        if node.op == "Conv" and node.attrs.get("group", 1) == 1 and len(node.inputs) > 1:
            w = node.inputs[1]
            if isinstance(w, gs.Constant) and w.values.ndim > 1 and w.values.shape[1] < below:
                region.add(node.name)
        elif node.op in ACTIVATION_OPS:
            producers = [p for t in node.inputs if isinstance(t, gs.Variable) for p in t.inputs]
            if producers and all(p.name in region for p in producers):
                region.add(node.name)
    return region


def _after_softmax(node: gs.Node) -> bool:
    """DFL: a fixed conv or MatMul applied to a softmax (or the Exp of one written out) over box bins
    is part of the decode."""
    data = [t for t in node.inputs if isinstance(t, gs.Variable)]  # the MatMul form has the bins first
    src = data[0].inputs if data else []
    hops = 0
    while src and hops < 3:
        if src[0].op in ("Softmax", "Exp"):
            return True
        src = src[0].inputs[0].inputs if src[0].inputs and isinstance(src[0].inputs[0], gs.Variable) else []
        hops += 1
    return False


def matches(name: str, patterns: list[str]) -> bool:
    """Whether a node name matches any exclusion (exact name, substring, or fnmatch glob)."""
    return any(p == name or p in name or fnmatch.fnmatchcase(name, p) for p in patterns)

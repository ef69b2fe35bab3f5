"""The yolocc-sparsify plugin: a ``sparsify`` pass, an ``onnx-gz`` emitter and an ``example-edge`` target
(its own quantization scheme, Q/DQ placement rule and ``verify``; no change to yolocc itself).

Exposed under the ``yolocc`` entry-point group as ``sparsify`` (see ``pyproject.toml``), so yolocc
lists its pass with provider ``sparsify`` and ``YOLOCC_DISABLE_PLUGINS=sparsify`` turns it off.
Everything yolocc-specific comes from ``yolocc.compiler.plugin_api``, the stable plugin surface.
"""

from __future__ import annotations

import copy
import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from yolocc.compiler.plugin_api import (Emitter, ExportError, ModelIR, Param, Pass, PassContext, PassResult, Placement,
                                        QuantScheme, Runtime, Target, Verification, hookimpl, write_atomic)

#: ONNX ops whose second input is a weight tensor we may sparsify.
WEIGHT_OPS = ("Conv", "Gemm")


# --------------------------------------------------------------------------------------- pass
def weight_initializers(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The float initializers used as the weight (input 1) of a Conv or Gemm in the main graph,
    each once even when several nodes share it. Weights behind DequantizeLinear (int8 graphs) or
    produced by other nodes are not initializers of these ops and are left alone."""
    by_name = {t.name: t for t in model.graph.initializer}
    seen: dict[str, onnx.TensorProto] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in WEIGHT_OPS or len(node.input) < 2:
            continue
        name = node.input[1]
        tensor = by_name.get(name)
        if tensor is None or name in seen:
            continue
        if onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).kind != "f":
            continue
        seen[name] = tensor
    return list(seen.values())


def magnitude_prune(weights: np.ndarray, ratio: float) -> np.ndarray:
    """A copy of ``weights`` with the ``round(ratio * size)`` smallest-magnitude entries set to 0
    (ties broken by position, so the result is deterministic)."""
    flat = np.array(weights, copy=True).reshape(-1)
    k = int(round(ratio * flat.size))
    if k > 0:
        order = np.argsort(np.abs(flat), kind="stable")
        flat[order[:k]] = 0
    return flat.reshape(weights.shape)


class Sparsify(Pass):
    """Unstructured magnitude pruning: zero the smallest-|w| fraction of each Conv/Gemm weight."""

    name = "sparsify"
    stage = "onnx"
    params = (
        Param("ratio", "float", 0.5, "fraction of each weight tensor set to zero", low=0.0, high=1.0,
              high_open=True),
        Param("min_size", "int", 1024, "skip weight tensors with fewer elements than this", low=0),
    )

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        ratio, min_size = self.args["ratio"], self.args["min_size"]
        changes: dict[str, Any] = {"sparsity": 0.0, "tensors": 0, "zeroed": 0, "weights": 0, "skipped": 0}
        if ratio == 0:
            return PassResult(False, changes, ["ratio=0: nothing to sparsify"])
        model = copy.deepcopy(ir.onnx_model)
        candidates = weight_initializers(model)
        diagnostics: list[str] = []
        modified = False
        for tensor in candidates:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                diagnostics.append(f"skipped '{tensor.name}': weights stored as external data")
                changes["skipped"] += 1
                continue
            weights = numpy_helper.to_array(tensor)
            if weights.size < min_size:
                changes["skipped"] += 1
                continue
            pruned = magnitude_prune(weights, ratio)
            if not np.array_equal(pruned, weights):
                tensor.CopyFrom(numpy_helper.from_array(pruned.astype(weights.dtype, copy=False), tensor.name))
                modified = True
            changes["tensors"] += 1
            changes["zeroed"] += int(np.count_nonzero(pruned == 0))
            changes["weights"] += int(pruned.size)
        if changes["weights"]:
            changes["sparsity"] = round(changes["zeroed"] / changes["weights"], 4)
        else:
            diagnostics.append(f"no Conv/Gemm weight initializer has min_size={min_size} or more elements "
                               f"({len(candidates)} candidate(s))")
        if modified:
            onnx.checker.check_model(model)
            ir.set_onnx(model)
        return PassResult(modified, changes, diagnostics)


# ------------------------------------------------------------------------------------ emitter
def gzip_bytes(data: bytes) -> bytes:
    """gzip ``data`` deterministically: no file name, mtime 0, fixed level."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


class OnnxGzEmitter(Emitter):
    """Writes a gzip-compressed ONNX model (``model.onnx.gz``); ``gunzip`` gives the plain ``.onnx``.

    yolocc picks the emitter whose suffix matches the longest end of the output path, so
    ``model.onnx.gz`` comes here while ``model.tar.gz`` is refused before any pass runs. Sparse
    weights compress well, which is why it pairs with ``sparsify``.
    """

    name = "onnx-gz"
    suffixes = (".onnx.gz",)

    def emit(self, ir: ModelIR, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        path = Path(path)
        if ir.stage == "torch":
            from yolocc.compiler import lowering  # the core's lowering API

            lowering.lower(ir, options.get("opset", lowering.DEFAULT_OPSET), options.get("dynamic_batch", False))
        model = ir.onnx_model
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"the compiled ONNX model is invalid: {str(e).splitlines()[0]}") from e
        data = model.SerializeToString()
        blob = gzip_bytes(data)
        write_atomic(path, blob)
        return {"compressed_bytes": len(blob), "uncompressed_bytes": len(data),
                "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)}


# ------------------------------------------------------------------------------------- target
#: The weighted ops this example accelerator runs in int8.
EDGE_OPS = ("Conv", "Gemm")


def weighted_layers(names_and_ops) -> list[str]:
    """Names of the Conv/Gemm layers, in graph order, from ``(name, op)`` pairs."""
    return [name for name, op in names_and_ops if op in EDGE_OPS]


class ExampleEdgeSession:
    """One model on the example accelerator's runtime (here: onnxruntime with basic graph optimizations
    only, standing in for a vendor SDK); counts the images it ran."""

    def __init__(self, runtime: "ExampleEdgeRuntime", model_bytes: bytes, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.runtime, self.sess = runtime, ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.runtime.images += int(x.shape[0])
        outs = self.sess.run(None, {self.sess.get_inputs()[0].name: x.astype(np.float32)})
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(self.outputs, outs)}


class ExampleEdgeRuntime(Runtime):
    """The example accelerator's runtime. It has no file format other tools load (no
    ``native_artifact``), so yolocc measures accuracy on it by running its sessions in process; the
    ``images`` counter shows that it did."""

    name = "example-edge runtime (onnxruntime, basic optimizations)"

    def __init__(self):
        self.images = 0

    def load(self, model_bytes: bytes, threads: int = 0) -> ExampleEdgeSession:
        return ExampleEdgeSession(self, model_bytes, threads)


class ExampleEdgeTarget(Target):
    """An example edge accelerator: symmetric int8 (zero point 0) on the inputs of Conv and Gemm
    only, everything between them (Add, ReLU, pooling ...) in float on dequantized values, and its
    own placement rule: the first and the last weighted layer stay float, as many small accelerators
    require (the input layer sees raw pixels, the last one produces the scores). ``verify`` checks
    the finished Q/DQ graph against those rules (symmetric int8, every quantized tensor read by a
    Conv/Gemm, first and last layer float) and reports what it found. The whole target is this class."""

    name = "example-edge"
    doc = ("example edge accelerator (yolocc-sparsify): symmetric int8 on Conv/Gemm inputs only, "
           "first and last weighted layers float")
    scheme = QuantScheme(activation_dtype="int8", activation_symmetric=True, quantize_bias=False)
    placement = Placement(input_ops=EDGE_OPS)

    def __init__(self):
        self._runtime = ExampleEdgeRuntime()

    def runtime(self) -> ExampleEdgeRuntime:
        """Latency, fidelity and ``--data`` accuracy all run on the accelerator's runtime."""
        return self._runtime

    def extra_float_nodes(self, graph) -> set[str]:
        """The first and the last Conv/Gemm of the graph (an onnx-graphsurgeon graph) stay float."""
        layers = weighted_layers((node.name, node.op) for node in graph.nodes)
        return {layers[0], layers[-1]} if layers else set()

    def verify(self, model: onnx.ModelProto) -> Verification:
        nodes = list(model.graph.node)
        inits = {t.name: t for t in model.graph.initializer}
        producer = {out: n for n in nodes for out in n.output}
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in nodes:
            for name in n.input:
                consumers.setdefault(name, []).append(n)
        layers = weighted_layers((n.name, n.op_type) for n in nodes)
        by_name = {n.name: n for n in nodes}
        int8 = [name for name in layers if by_name[name].input[1] in producer
                and producer[by_name[name].input[1]].op_type == "DequantizeLinear"]
        problems = []
        for q in (n for n in nodes if n.op_type == "QuantizeLinear"):
            zp = numpy_helper.to_array(inits[q.input[2]]) if len(q.input) > 2 and q.input[2] in inits else None
            if zp is None or zp.dtype != np.int8 or zp.any():
                problems.append(f"'{q.name}': activations must be symmetric int8 (zero point 0)")
            readers = [c for dq in consumers.get(q.output[0], []) for c in consumers.get(dq.output[0], [])]
            if not any(c.op_type in EDGE_OPS for c in readers):
                problems.append(f"'{q.name}' quantizes a tensor that only float ops read")
        if layers and set(int8) & {layers[0], layers[-1]}:
            problems.append("the first and last weighted layers must stay float")
        return Verification(facts={"edge_int8_layers": len(int8),
                                   "edge_float_layers": [name for name in layers if name not in int8]},
                            problems=problems[:5])


# -------------------------------------------------------------------------------------- hooks
@hookimpl
def yolocc_register_passes(registry):
    registry.add_pass(Sparsify)


@hookimpl
def yolocc_register_emitters(registry):
    registry.add_emitter(OnnxGzEmitter())


@hookimpl
def yolocc_register_targets(registry):
    registry.add_target(ExampleEdgeTarget())

"""ONNX-stage views: the networkx graph, parameter and MAC counts of an ``onnx.ModelProto``."""

from __future__ import annotations

import numpy as np
import networkx as nx
import onnx
from onnx import helper, numpy_helper, shape_inference

#: The default-domain opset of the small probe graphs yolocc builds itself (ceilings, channel sweeps).
PROBE_OPSET = 17


def portable(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lower ``model``'s IR version (in place; returned) to the lowest its opsets allow, so that an
    onnxruntime older than the onnx package that built the graph still loads it.

    ``onnx.helper.make_model`` (and some torch exporters) write the installed onnx's newest IR version:
    14 with onnx 1.23, which onnxruntime 1.30 refuses ("Unsupported model IR version: 14, max supported IR
    version: 13"). yolocc's graphs use nothing newer than their opsets need (opset 17: IR 8), so the
    serialized bytes no longer depend on which onnx built them."""
    needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    model.ir_version = min(model.ir_version, needed)
    return model


def probe_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    """A checked, ``portable`` model of ``graph`` at ``PROBE_OPSET`` (a measurement probe, not a user model)."""
    model = portable(helper.make_model(graph, opset_imports=[helper.make_opsetid("", PROBE_OPSET)]))
    onnx.checker.check_model(model)
    return model


def static_dims(value_info) -> list[int]:
    """The shape of a graph input/output/value_info, symbolic dimensions read as 1."""
    return [d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim]


def fixed_input(model: onnx.ModelProto, shape: list[int]) -> onnx.ModelProto:
    """``model`` with its first input's symbolic dimensions set from ``shape`` (a copy; ``model`` itself
    when none is symbolic), so shape inference gives the sizes one run at ``shape`` has (e.g. MACs)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if all(d.HasField("dim_value") for d in dims):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for d, v in zip(out.graph.input[0].type.tensor_type.shape.dim, shape):
        if not d.HasField("dim_value"):
            d.dim_value = int(v)
    return out


def graph_from_onnx(model: onnx.ModelProto) -> nx.DiGraph:
    """One node per ONNX node, keyed by node name; edges follow tensors."""
    g = nx.DiGraph()
    producer: dict[str, str] = {}
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        g.add_node(name, op=node.op_type, kind="op", inputs=list(node.input), outputs=list(node.output))
        for t in node.output:
            producer[t] = name
    for name, data in g.nodes(data=True):
        for t in data["inputs"]:
            if t in producer:
                g.add_edge(producer[t], name, tensor=t)
    return g


def initializer_elements(model: onnx.ModelProto) -> int:
    """Number of elements held in initializers and Constant nodes with more than one element."""
    total = sum(int(np.prod(t.dims)) for t in model.graph.initializer if int(np.prod(t.dims)) > 1)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and int(np.prod(a.t.dims)) > 1:
                    total += int(np.prod(a.t.dims))
    return total


#: The last few graphs ``folded`` returned, by the SHA-256 of the input's bytes: calibration's candidates
#: (``calibrate:method=auto``: 17 Q/DQ builds of one float graph) fold the same graph again and again, at
#: 0.8 s each for yolov8n at 160 px on 2 cores against about 0.05 s to hash it.
_FOLDED: dict[str, bytes] = {}
_FOLDED_KEEP = 4


def folded(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold with onnx-graphsurgeon, shape subgraphs (e.g. from ``chunk``) included:
    shape inference exposes shapes, folding turns Shape ops into constants; repeat until stable.

    A new ``ModelProto`` on every call (the caller may edit it); a graph folded in the last few calls
    is not folded again (``_FOLDED``, by content)."""
    import hashlib

    try:
        data = model.SerializeToString()
    except ValueError:  # over protobuf's 2 GiB: folded without the memo
        return _fold(model)
    key = hashlib.sha256(data).hexdigest()
    if key not in _FOLDED:
        if len(_FOLDED) >= _FOLDED_KEEP:
            _FOLDED.pop(next(iter(_FOLDED)))
        _FOLDED[key] = _fold(model).SerializeToString()
    return onnx.load_from_string(_FOLDED[key])


def _fold(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx_graphsurgeon as gs

    out = model
    for _ in range(4):
        graph = gs.import_onnx(shape_inference.infer_shapes(out))
        n_before = len(graph.nodes)
        graph.fold_constants(error_ok=True).cleanup().toposort()
        out = gs.export_onnx(graph)
        if len(graph.nodes) == n_before:
            break
    copy_header(out, model)
    return out


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Static tensor shapes of ``model`` after folding."""
    try:
        model = folded(model)
    except Exception:  # folding is only a help for inference; fall back to the raw graph
        pass
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[vi.name] = static_dims(vi)
    for t in model.graph.initializer:
        shapes[t.name] = list(t.dims)
    return shapes


def node_macs(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-accumulates per Conv, ConvTranspose, Gemm and MatMul node (batch as exported), by node
    name (a node without a name, or one whose name an earlier node took, is keyed by its first output).
    Nodes whose shapes are unknown are left out."""
    shapes = _shapes(model)
    consts = {t.name: t for t in model.graph.initializer}
    # QDQ graphs: a weight reaches Conv through DequantizeLinear; follow it to the initializer.
    dq_src = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    per_node: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or not node.output:
            continue
        out = shapes.get(node.output[0])
        w_name = node.input[1] if len(node.input) > 1 else ""
        w_shape = shapes.get(w_name) or shapes.get(dq_src.get(w_name, ""))
        if w_shape is None and dq_src.get(w_name) in consts:
            w_shape = list(consts[dq_src[w_name]].dims)
        if not out or not w_shape:
            continue
        key = node.name if node.name and node.name not in per_node else node.output[0]
        if node.op_type == "Conv":
            per_node[key] = int(np.prod(out)) * int(np.prod(w_shape[1:]))
        elif node.op_type == "ConvTranspose":
            x = shapes.get(node.input[0])
            if x:
                per_node[key] = int(np.prod(x)) * int(np.prod(w_shape[1:]))
        else:  # Gemm / MatMul: out elements times the reduced dimension
            a = shapes.get(node.input[0])
            if a:
                per_node[key] = int(np.prod(out)) * int(a[-1])
    return per_node


def macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul nodes (batch as exported): the sum
    of ``node_macs``."""
    return sum(node_macs(model).values())


def initializer_array(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    return None


def copy_header(model: onnx.ModelProto, like: onnx.ModelProto) -> None:
    """Give a rebuilt model (e.g. from onnx-graphsurgeon) the opset, IR version, producer and
    metadata of the model it was made from."""
    model.ir_version = like.ir_version
    del model.opset_import[:]
    model.opset_import.extend(like.opset_import)
    del model.metadata_props[:]
    model.metadata_props.extend(like.metadata_props)
    model.producer_name, model.producer_version = like.producer_name, like.producer_version

"""onnxgraph.node_macs / macs: per-node multiply-accumulates from a graph's static shapes."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from yolocc.compiler import onnxgraph


def _model():
    """x [1,4,8,8] -> conv "c" (8 out, 3x3, pad 1) -> conv unnamed (2 out, 1x1) -> conv also named "c"
    (2 out, 1x1, stride 2) -> flatten -> Gemm "fc" (32 -> 5)."""
    w = lambda name, *shape: numpy_helper.from_array(np.ones(shape, np.float32), name)  # noqa: E731
    inits = [w("w1", 8, 4, 3, 3), w("w2", 2, 8, 1, 1), w("w3", 2, 2, 1, 1), w("wf", 5, 32)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "w2"], ["b"], kernel_shape=[1, 1]),
             helper.make_node("Conv", ["b", "w3"], ["d"], name="c", kernel_shape=[1, 1], strides=[2, 2]),
             helper.make_node("Flatten", ["d"], ["f"]),
             helper.make_node("Gemm", ["f", "wf"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_node_macs_keys_unnamed_and_repeated_names_by_output():
    per_node = onnxgraph.node_macs(_model())
    assert per_node == {"c": 8 * 8 * 8 * 4 * 9,  # out elements x (in channels x kernel)
                        "b": 2 * 8 * 8 * 8,      # no name: its output
                        "d": 2 * 4 * 4 * 2,      # "c" taken: its output
                        "fc": 5 * 32}
    assert onnxgraph.macs(_model()) == sum(per_node.values())


def test_folded_folds_a_graph_once_and_returns_a_new_model_each_time(monkeypatch):
    """calibrate's candidates fold one float graph many times: the second call is served from the memo,
    and an edit to one returned model reaches neither the memo nor the input."""
    calls = []
    fold = onnxgraph._fold
    monkeypatch.setattr(onnxgraph, "_FOLDED", {})
    monkeypatch.setattr(onnxgraph, "_fold", lambda m: calls.append(1) or fold(m))
    model = _model()
    first = onnxgraph.folded(model)
    first.graph.node[0].name = "edited"
    second = onnxgraph.folded(_model())
    assert len(calls) == 1 and second.graph.node[0].name == "c" and model.graph.node[0].name == "c"
    assert second.SerializeToString() == fold(_model()).SerializeToString()
    changed = _model()
    changed.graph.initializer[0].float_data[:] = [2.0] * (8 * 4 * 9)
    changed.graph.initializer[0].ClearField("raw_data")
    onnxgraph.folded(changed)
    assert len(calls) == 2  # other weights: folded anew

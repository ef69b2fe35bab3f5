"""Every ONNX graph yolocc builds carries the lowest IR version its opsets allow, so an onnxruntime
older than the installed onnx still loads it (onnx 1.23 writes IR 14; onnxruntime 1.30 reads up to 13:
seen on a GPU machine, where ``-p prune`` failed with "Unsupported model IR version: 14")."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from yolocc.compiler import channels, lowering, onnxgraph
from yolocc.plugins import ort_ceiling

OPSET17_IR = helper.find_min_ir_version_for([helper.make_opsetid("", 17)])


def _identity_graph() -> onnx.GraphProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    return helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])


def test_portable_lowers_a_newer_ir_version():
    model = helper.make_model(_identity_graph(), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 14  # what onnx 1.23's make_model writes
    assert onnxgraph.portable(model) is model
    assert model.ir_version == OPSET17_IR == 8
    onnx.checker.check_model(model)


def test_portable_keeps_what_a_newer_opset_needs():
    model = helper.make_model(_identity_graph(), opset_imports=[helper.make_opsetid("", 21)])
    onnxgraph.portable(model)
    assert model.ir_version == helper.find_min_ir_version_for([helper.make_opsetid("", 21)]) > OPSET17_IR


def test_probe_graphs_are_portable():
    assert ort_ceiling.gemm_model(8, 16, 8).ir_version == OPSET17_IR
    assert channels.qdq_conv_model(8, 8).ir_version == OPSET17_IR


def test_exported_model_is_portable(compiler):
    ir = compiler.load("yolov8n.yaml", 64)
    assert onnx.load_from_string(lowering.onnx_bytes(ir)).ir_version == OPSET17_IR

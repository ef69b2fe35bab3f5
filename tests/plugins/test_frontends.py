import pytest
import torch

from yolocc.compiler.errors import UsageError
from tests.conftest import IMGSZ, small_cnn


@pytest.mark.parametrize("cfg, task, outputs", [
    ("yolov8n.yaml", "detect", ["output0"]), ("yolov8n-seg.yaml", "segment", ["output0", "output1"]),
    ("yolov8n-pose.yaml", "pose", ["output0"]), ("yolov8n-cls.yaml", "classify", ["output0"]),
    ("yolo11n.yaml", "detect", ["output0"]), ("yolov5nu.yaml", "detect", ["output0"]),
])
def test_ultralytics_yaml(compiler, cfg, task, outputs):
    ir = compiler.load(cfg, IMGSZ)
    assert (ir.frontend, ir.task, ir.output_names, ir.stage) == ("ultralytics", task, outputs, "torch")
    assert ir.input.shape == (1, 3, IMGSZ, IMGSZ)
    assert f"model.{len(ir.module.model) - 1}" in ir.protected


def test_yaml_weights_are_deterministic(compiler):
    a, b = compiler.load("yolov8n.yaml", IMGSZ), compiler.load("yolov8n.yaml", IMGSZ)
    assert all(torch.equal(p, q) for p, q in zip(a.module.parameters(), b.module.parameters()))


def test_imgsz_from_checkpoint_then_default(compiler, tmp_path):
    from yolocc.plugins.ultralytics_frontend import checkpoint_dict

    ir = compiler.load("yolov8n.yaml")
    assert ir.input.imgsz == 640
    ir.meta["ultralytics"]["train_args"] = {"imgsz": 320}
    path = tmp_path / "m.pt"
    torch.save(checkpoint_dict(ir), path)
    assert compiler.load(path).input.imgsz == 320
    assert compiler.load(path, 256).input.imgsz == 256


def test_plain_torch_pickle(compiler, cnn_path):
    ir = compiler.load(cnn_path, 64, trust_model=True)
    assert (ir.frontend, ir.task, ir.input.shape, ir.output_names) == ("torch", "generic", (1, 3, 64, 64), ["output0"])


def test_coupling_groups_and_graph(compiler):
    ir = compiler.load(small_cnn(), 64)
    g = ir.graph
    assert g.has_edge("stem.0", "stem.1") and g.nodes["stem.0"]["out_channels"] == 32
    groups = {grp.root: grp for grp in ir.coupling_groups()}
    # The residual add couples stem.0's output with block.3's output.
    residual = next(grp for grp in groups.values() if ("block.3", "out") in grp.members)
    assert ("stem.0", "out") in residual.members and residual.prunable
    assert "head" not in groups  # the output layer is protected: its group is not offered


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b"not a checkpoint at all"), "not a valid PyTorch checkpoint"),
    (lambda p: torch.save({"weight": torch.zeros(3)}, p), "state_dict has no architecture"),
])
def test_bad_model_files(compiler, tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(UsageError, match=message):
        compiler.load(path)


def test_corrupt_onnx_and_missing_yaml(compiler, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(UsageError, match="not a valid ONNX model"):
        compiler.load(bad)
    with pytest.raises(UsageError, match="does not exist"):
        compiler.load(tmp_path / "nope.yaml")


def test_imgsz_must_fit_stride(compiler):
    with pytest.raises(UsageError, match="multiple of the model stride 32"):
        compiler.load("yolov8n.yaml", 100)

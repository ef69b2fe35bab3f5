import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.conftest import IMGSZ


def _io(path):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ({i.name: i.shape for i in sess.get_inputs()}, {o.name: o.shape for o in sess.get_outputs()})


@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolov8n-seg.yaml", "yolov8n-cls.yaml"])
def test_pruned_onnx_keeps_io_of_unpruned_export(compiler, tmp_path, cfg):
    base, pruned = tmp_path / "base.onnx", tmp_path / "pruned.onnx"
    compiler.compile(cfg, [], base, imgsz=IMGSZ, measure=False)
    result = compiler.compile(cfg, ["prune:0.25"], pruned, imgsz=IMGSZ, measure=False)
    assert _io(base) == _io(pruned)
    model = onnx.load(str(pruned))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    assert result.report.artifact["outputs"] == {k: list(v) for k, v in _io(base)[1].items()}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["task"] in ("detect", "segment", "classify") and meta["producer"] == "yolocc"


def test_dynamic_batch(compiler, tmp_path):
    out = tmp_path / "dyn.onnx"
    compiler.compile("yolov8n.yaml", ["prune:0.25"], out, imgsz=IMGSZ, dynamic_batch=True, measure=False)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"images": np.zeros((2, 3, IMGSZ, IMGSZ), np.float32)})[0]
    assert y.shape[0] == 2 and sess.get_inputs()[0].shape[0] == "batch"


def test_same_compile_gives_same_bytes(compiler, tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    compiler.compile("yolov8n.yaml", ["prune:0.25", "fuse-bn"], a, imgsz=IMGSZ, measure=False)
    compiler.compile("yolov8n.yaml", ["prune:0.25", "fuse-bn"], b, imgsz=IMGSZ, measure=False)
    assert a.read_bytes() == b.read_bytes()


RELOAD = """
import json, sys, torch
from ultralytics import YOLO
from yolocc.compiler.api import Compiler
model = YOLO(sys.argv[1])
y = model.model.eval()(torch.rand(1, 3, {imgsz}, {imgsz}))
ir = Compiler().load(sys.argv[1])
print(json.dumps({{"params": sum(p.numel() for p in model.model.parameters()), "shape": list(y[0].shape),
                   "yolocc_params": ir.param_count(), "imgsz": ir.input.imgsz}}))
"""


def test_pruned_checkpoint_reloads_in_fresh_process(compiler, tmp_path):
    out = tmp_path / "pruned.pt"
    result = compiler.compile("yolov8n.yaml", ["prune:0.25", "fuse-bn"], out, imgsz=IMGSZ, measure=False)
    proc = subprocess.run([sys.executable, "-c", RELOAD.format(imgsz=IMGSZ), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["params"] == info["yolocc_params"]
    # the .pt holds stock modules: folded BNs come back as pass-through BNs, DFL's bins as its conv weight
    assert abs(info["params"] / result.ir.param_count() - 1) < 0.01
    assert info["shape"] == [1, 84, 525]


def test_plain_torch_model_reloads(compiler, tmp_path, cnn_path):
    import torch

    out = tmp_path / "pruned_cnn.pt"
    compiler.compile(cnn_path, ["prune:0.5"], out, imgsz=64, measure=False, trust_model=True)
    model = torch.load(out, weights_only=False)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 10)
    assert model.stem[0].out_channels == 16


def test_pt_after_onnx_stage_is_refused(compiler, tmp_path):
    from yolocc.compiler.errors import ExportError

    with pytest.raises(ExportError, match="after 'simplify'; write a .onnx file"):
        compiler.compile("yolov8n.yaml", ["simplify"], tmp_path / "x.pt", imgsz=IMGSZ, measure=False)
    assert not (tmp_path / "x.pt").exists()

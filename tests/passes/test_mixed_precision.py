"""int8:max_drop keeps the most sensitive layers float until the *measured* drop is within budget."""

import onnx

from yolocc.compiler.metrics import Metrics

from yolocc.passes.mixed_precision import quantized_convs


def fake_metric(frontend_cls, monkeypatch):
    """Accuracy that falls 1 point per quantized convolution: a budget then needs float layers."""
    def evaluate(self, ir, onnx_bytes, data, runtime, split="val"):
        return Metrics("acc", {"acc": 1.0 - 0.01 * len(quantized_convs(onnx.load_from_string(onnx_bytes)))})

    monkeypatch.setattr(frontend_cls, "evaluate", evaluate)


def test_mixed_precision_leaves_named_layers_float(compiler, cnn_path, calib_dir, tmp_path, monkeypatch):
    from yolocc.plugins.torch_frontend import TorchFrontend

    fake_metric(TorchFrontend, monkeypatch)
    out = tmp_path / "m.onnx"
    result = compiler.compile(str(cnn_path), ["int8:max_drop=1.5"], out, imgsz=32, calib=str(calib_dir),
                              data=str(calib_dir), latency_runs=2, cache_dir=str(tmp_path / "cache"), trust_model=True)
    qdq = next(s for s in result.report.stages if s.name == "qdq")
    mp = qdq.changes["mixed_precision"]
    assert mp["met"] and mp["steps"][0]["drop_pts"] > 1.5 and mp["steps"][-1]["drop_pts"] <= 1.5
    model = onnx.load(str(out))
    float_convs = set(mp["float_layers"])
    assert float_convs and float_convs.isdisjoint(quantized_convs(model))
    assert all(n in {x.name for x in model.graph.node} for n in float_convs)
    assert qdq.metrics["acc"] == 1.0 - 0.01 * len(quantized_convs(model))  # checked after the fact


def test_within_budget_from_the_start_keeps_everything_int8(compiler, cnn_path, calib_dir, tmp_path, monkeypatch):
    from yolocc.plugins.torch_frontend import TorchFrontend

    fake_metric(TorchFrontend, monkeypatch)
    result = compiler.compile(str(cnn_path), ["int8:max_drop=50"], tmp_path / "m.onnx", imgsz=32,
                              calib=str(calib_dir), data=str(calib_dir), latency_runs=2,
                              cache_dir=str(tmp_path / "cache"), trust_model=True)
    mp = next(s for s in result.report.stages if s.name == "qdq").changes["mixed_precision"]
    assert mp["met"] and mp["float_layers"] == [] and len(mp["steps"]) == 1

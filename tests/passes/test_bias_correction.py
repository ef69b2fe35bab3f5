"""Bias correction (``int8:bias_correction``): each quantized layer's mean output drift, measured on the
calibration images, is subtracted from its bias, and with ``auto`` kept only where the held-out fidelity
improves.

The constructed model: one 3x3 convolution reading 8 channels of ``100 + N(0, 1)``, its bias cancelling
the offset, so the float output is zero-mean with unit-scale variation. Per-channel int8 weights are off
by up to half a step each; times the input's offset of 100, that is a constant shift of each output
channel about half as large as the output's own variation: quantization biases the mean, and removing
that bias restores the output (fidelity about 0.90 -> 0.99).
"""

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from yolocc.passes import bias_correction
from yolocc.passes.bias_correction import twin_model

OFFSET = 100.0


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))


class Offset(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(8, 16, 3)
        with torch.no_grad():
            self.c.bias.copy_(-OFFSET * self.c.weight.sum((1, 2, 3)))

    def forward(self, x):
        return self.c(x)


@pytest.fixture()
def offset_model(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "offset.pt"
    torch.save(Offset().eval(), path)
    return path


@pytest.fixture(scope="module")
def offset_calib(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("offset") / "calib.npz"
    np.savez(path, x=(OFFSET + rng.normal(0, 1, (40, 8, 32, 32))).astype(np.float32))
    return path


def _compile(compiler, model, calib, spec, out):
    res = compiler.compile(model, [spec], out, imgsz=32, trust_model=True, calib=str(calib), measure=False)
    stages = {s.name: s for s in res.report.stages}
    return stages["calibrate"].changes, stages["qdq"].changes


def test_auto_keeps_correction_that_restores_the_mean(compiler, tmp_path, offset_model, offset_calib):
    facts, qdq = _compile(compiler, offset_model, offset_calib, "int8", tmp_path / "q.onnx")
    bc = facts["bias_correction"]
    assert bc["mode"] == "auto" and bc["layers"] == 1 and bc["kept"] and bc["scored_on"] == "held-out images"
    # cross-fitted (40 samples, 4 folds): each fold's drift measured on the other 30 samples and scored on
    # its 10, so all 40 are scored, uncorrected exactly as the chosen method was scored
    assert facts["folds"] == 4 and (bc["images"], bc["scored_images"]) == (30, 40)
    assert bc["fidelity_before"] == pytest.approx(facts["fidelity"][facts["chosen"]], abs=2e-6)
    one, _ = _compile(compiler, offset_model, offset_calib, "int8:folds=1", tmp_path / "one.onnx")
    assert one["bias_correction"]["scored_images"] == 10  # one split: a quarter held out
    assert one["bias_correction"]["fidelity_before"] == pytest.approx(one["fidelity"][one["chosen"]], abs=2e-6)
    assert bc["fidelity_before"] < 0.95 and bc["fidelity_after"] > 0.98
    assert qdq["bias_corrected"] == 1
    assert "bias correction of 1 layers kept (fidelity" in facts["note"]
    # The int32 bias of the corrected graph differs from the uncorrected one by the measured drift.
    _compile(compiler, offset_model, offset_calib, "int8:bias_correction=false", tmp_path / "plain.onnx")
    fixed, plain = (_bias(onnx.load(str(tmp_path / p))) for p in ("q.onnx", "plain.onnx"))
    assert np.abs(plain - fixed).max() == pytest.approx(bc["max_abs_shift"], rel=0.05)


def _bias(model):
    g = bias_correction._Graph(model)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    return g.dequantized(conv.input[2])


def test_auto_skips_correction_that_does_not_help(compiler, tmp_path, offset_model, offset_calib, monkeypatch):
    real = bias_correction.drift

    def wrong(*args, **kwargs):  # twice the drift, the wrong way: correcting makes the output worse
        return {k: [-2 * v for v in s] for k, s in real(*args, **kwargs).items()}

    monkeypatch.setattr(bias_correction, "drift", wrong)
    facts, qdq = _compile(compiler, offset_model, offset_calib, "int8", tmp_path / "q.onnx")
    bc = facts["bias_correction"]
    assert bc["layers"] == 1 and not bc["kept"] and bc["fidelity_after"] < bc["fidelity_before"]
    assert "bias_corrected" not in qdq and "bias correction of 1 layers not kept" in facts["note"]
    _compile(compiler, offset_model, offset_calib, "int8:bias_correction=false", tmp_path / "plain.onnx")
    assert (tmp_path / "q.onnx").read_bytes() == (tmp_path / "plain.onnx").read_bytes()


def test_auto_decides_by_task_agreement_first(compiler, tmp_path, offset_model, offset_calib, monkeypatch):
    """Where the frontend measures task agreement, it decides (fidelity only breaks its ties), as it ranks
    the methods: a stand-in agreement that rewards the mean shift the correction removes rejects the
    correction although the fidelity improves; the report and the line carry both."""
    from yolocc.compiler.interfaces import Frontend
    from yolocc.compiler.metrics import Metrics

    def shifted(self, ir, reference, outputs):
        gap = abs(float(np.mean(next(iter(outputs.values())) - next(iter(reference.values())))))
        return Metrics("agreement", {"agreement": gap})

    monkeypatch.setattr(Frontend, "agreement", shifted)
    facts, qdq = _compile(compiler, offset_model, offset_calib, "int8", tmp_path / "q.onnx")
    bc = facts["bias_correction"]
    assert bc["fidelity_after"] > bc["fidelity_before"] + 0.03
    assert bc["agreement_after"] < bc["agreement_before"] and not bc["kept"] and "bias_corrected" not in qdq
    assert "not kept (agreement " in facts["note"]


def test_forced_and_off(compiler, tmp_path, offset_model, offset_calib):
    facts, qdq = _compile(compiler, offset_model, offset_calib, "int8:method=minmax,bias_correction=true",
                          tmp_path / "q.onnx")
    bc = facts["bias_correction"]
    assert bc["mode"] is True and bc["kept"] and qdq["bias_corrected"] == 1
    assert bc["scored_on"].startswith("the range images") and bc["fidelity_after"] > bc["fidelity_before"]
    # A fixed method leaves it off unless asked (its bytes stay those of the method alone).
    facts, qdq = _compile(compiler, offset_model, offset_calib, "int8:method=minmax", tmp_path / "m.onnx")
    assert "bias_correction" not in facts and "bias_corrected" not in qdq
    facts, _ = _compile(compiler, offset_model, offset_calib, "int8:bias_correction=false", tmp_path / "a.onnx")
    assert "bias_correction" not in facts and "bias correction" not in facts["note"]


def test_drift_is_zero_after_correction(compiler, tmp_path, offset_model, offset_calib):
    """The twin graph measures the drift the correction removed: re-measured on the corrected graph
    (same images) it is gone, up to the int32 bias's rounding."""
    _compile(compiler, offset_model, offset_calib, "int8:method=minmax,bias_correction=false", tmp_path / "p.onnx")
    _compile(compiler, offset_model, offset_calib, "int8:method=minmax,bias_correction=true", tmp_path / "c.onnx")
    float_model = _float(compiler, offset_model, tmp_path)
    x = np.load(offset_calib)["x"]
    before = bias_correction.drift(float_model, onnx.load(str(tmp_path / "p.onnx")), x)
    after = bias_correction.drift(float_model, onnx.load(str(tmp_path / "c.onnx")), x)
    (layer,) = before
    assert np.abs(before[layer]).max() > 0.2 and np.abs(after[layer]).max() < 1e-3


def _float(compiler, model, tmp_path):
    compiler.compile(model, [], tmp_path / "f.onnx", imgsz=32, trust_model=True, measure=False)
    return onnx.load(str(tmp_path / "f.onnx"))


def test_twin_model_skips_layers_without_bias():
    """A quantized layer without a bias has nothing to correct: no twin, no output."""
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    float_model = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [w]))
    model, layers = twin_model(float_model, float_model)
    assert layers == [] and bias_correction.drift(float_model, float_model, np.zeros((1, 2, 4, 4), np.float32)) == {}


def test_float_bias_target(compiler, tmp_path, offset_model, offset_calib):
    """A target that keeps biases float (TensorRT's scheme) gets the corrected float bias."""
    outs, qdq = {}, {}
    for bc in ("true", "false"):
        res = compiler.compile(offset_model, [f"int8:bias_correction={bc}"], tmp_path / f"{bc}.onnx", imgsz=32,
                               trust_model=True, calib=str(offset_calib), measure=False, target="tensorrt")
        qdq[bc] = next(s for s in res.report.stages if s.name == "qdq").changes
        outs[bc] = onnx.load(str(tmp_path / f"{bc}.onnx"))
    assert qdq["true"]["bias_corrected"] == 1 and "bias_corrected" not in qdq["false"]
    inits = {bc: {i.name: i for i in m.graph.initializer} for bc, m in outs.items()}
    conv = {bc: next(n for n in m.graph.node if n.op_type == "Conv") for bc, m in outs.items()}
    assert conv["true"].input[2] in inits["true"] and conv["false"].input[2] in inits["false"]  # float, no int32
    fixed = onnx.numpy_helper.to_array(inits["true"][conv["true"].input[2]])
    plain = onnx.numpy_helper.to_array(inits["false"][conv["false"].input[2]])
    assert np.abs(fixed - plain).max() > 0.2

"""``qat``: the fake-quantization points are the target's Q/DQ points, and what QAT learns reaches the
emitted ONNX (a random-weight yolov8n at a small size; the digits numbers are in benchmarks/qat.py)."""

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from yolocc.compiler.analyses import CALIBRATION
from yolocc.compiler.onnxgraph import folded
from yolocc.compiler.options import CompileOptions
from yolocc.passes import fake_quant
from yolocc.passes.mixed_precision import quantized_convs
from yolocc.passes.qat import DistillationLoss, batched
from yolocc.passes.qdq import QDQ, QDQLayout

IMGSZ = 64
TARGETS = ("ort-cpu", "openvino", "tensorrt")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def calibrated(calib_dir):
    """yolov8n (random weights, imgsz 64), BN folded and calibrated (minmax) on conftest's eight images."""
    from yolocc.compiler.api import Compiler

    folder = calib_dir
    compiler = Compiler()
    ir = compiler.load("yolov8n.yaml", IMGSZ)
    compiler.apply(ir, ["canonicalize", "fuse-bn", "calibrate:method=minmax"], CompileOptions(calib=str(folder)))
    return compiler, ir, folder


def _qdq_points(model: onnx.ModelProto) -> set[str]:
    """The activation tensors the Q/DQ model quantizes (each QuantizeLinear's input)."""
    return {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}


def _layout(compiler, ir, target_name, **qdq_args):
    target = compiler.target(target_name)[0]
    layout = QDQLayout()
    qdq = QDQ(**qdq_args)
    model = qdq.build(ir, target, set(), layout)[0]
    graph = folded(ir.onnx_model)
    fq = fake_quant.build(batched(graph), [o.name for o in graph.graph.output], layout, qdq.scheme_for(target))
    return target, layout, model, fq


@pytest.mark.parametrize("target_name", TARGETS)
def test_fake_quant_points_are_the_qdq_points(calibrated, target_name):
    compiler, ir, _ = calibrated
    _, layout, model, fq = _layout(compiler, ir, target_name)
    assert fq.points, "nothing fake-quantized"
    assert set(fq.points) == _qdq_points(model)
    assert set(fq.weights) == set(quantized_convs(model))
    # One quantizer per range: tensors sharing a range in the Q/DQ model share a quantizer.
    scales = {n.input[0]: numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == n.input[1]))
              for n in model.graph.node if n.op_type == "QuantizeLinear"}
    for tensor, owner in layout.activations.items():
        assert np.isclose(float(scales[tensor]), fq.quantizers[owner].grid()[0], rtol=1e-6)


def test_fake_quant_weights_are_the_emitted_int8_weights(calibrated):
    """Each fake-quantized weight is on the grid ``qdq`` emits for it, the openvino stem's 7-bit grid
    included (a finer training grid would not be what runs)."""
    compiler, ir, _ = calibrated
    _, layout, model, fq = _layout(compiler, ir, "openvino")
    assert set(layout.weight_qmax.values()) == {63}  # the RGB stem
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.name not in fq.weights:
            continue
        w = dq[node.input[1]]
        q, scale = inits[w.input[0]], inits[w.input[1]]
        steps = fq.weights[node.name].weight.detach().numpy() / scale.reshape([-1] + [1] * (q.ndim - 1))
        assert np.abs(steps - np.round(steps)).max() < 1e-3, node.name  # on the emitted scale's grid
        assert np.abs(np.round(steps)).max() == np.abs(q.astype(np.int32)).max(), node.name  # same range


@pytest.mark.parametrize("target_name,qdq_args", [(t, {}) for t in TARGETS] + [
    ("openvino", {"activations": "hybrid", "hybrid_stride": 16})], ids=[*TARGETS, "openvino-hybrid"])
def test_learned_scales_reach_the_emitted_onnx(calibrated, target_name, qdq_args):
    """Moved scales and zero points come back from ``qdq`` on the same ranges; with ``activations=hybrid``
    the fake quantizers learn a zero point exactly where the emitted grid has one."""
    compiler, base, _ = calibrated
    ir = base.snapshot()
    target, layout, _, fq = _layout(compiler, ir, target_name, **qdq_args)
    if qdq_args:
        assert 0 < len(layout.asymmetric) < len(fq.quantizers)
        assert {o for o, q in fq.quantizers.items() if not q.symmetric} == layout.asymmetric
    with torch.no_grad():  # what training does: move every scale and (asymmetric) zero point
        for i, q in enumerate(fq.quantizers.values()):
            q.log_scale.add_(math.log(1.0 + 0.01 * (i % 7 + 1)))
            if not q.symmetric:
                q.zero_point.add_(i % 5 - 2)
    calibration = ir.analyses[CALIBRATION]
    ir.analyses[CALIBRATION] = {**calibration, "activations": {**calibration["activations"],
                                                               **fake_quant.ranges(fq, layout)}}
    model = QDQ(**{**qdq_args, "activations": layout.grid}).build(ir, target, set())[0]  # the layout's grid
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quantize = {n.input[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    moved = 0
    for tensor, owner in layout.activations.items():
        scale, zero_point = fq.quantizers[owner].grid()
        node = quantize[tensor]
        assert float(inits[node.input[1]]) == pytest.approx(scale, rel=1e-6), tensor
        assert int(inits[node.input[2]]) == zero_point, tensor
        moved += not np.isclose(scale, layout.grids[owner][0], rtol=1e-4, atol=0)
    assert moved > len(layout.activations) // 2


def test_fake_quant_graph_matches_the_float_graph_without_quantizers(calibrated):
    compiler, ir, _ = calibrated
    graph = folded(ir.onnx_model)
    import onnxruntime as ort

    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    plain = fake_quant.build(batched(graph), [o.name for o in graph.graph.output])
    with torch.no_grad():
        got = plain.module(torch.from_numpy(x))[0].numpy()
    assert np.abs(got - want).max() <= 1e-3 * max(1.0, np.abs(want).max())


def test_distillation_loss_is_zero_only_at_the_teacher():
    splits = {"output0": {"boxes": slice(0, 4), "scores": slice(4, 6)}}
    loss = DistillationLoss(splits, ["output0"])
    t = torch.cat([torch.rand(2, 4, 10) * 64, torch.rand(2, 2, 10)], 1)
    s = t + 0.5 * torch.randn_like(t) * torch.tensor([1.0] * 4 + [0.05] * 2).view(1, 6, 1)
    s[:, 4:] = s[:, 4:].clamp(0.01, 0.99)
    first = loss([s], [t])
    assert float(first) == pytest.approx(1.0)  # each term starts at 1 (divided by its first value)
    assert float(loss([t.clone()], [t])) == pytest.approx(0.0, abs=1e-4)


def test_qat_trains_and_emits_the_same_placement_as_int8(calibrated, tmp_path):
    compiler, _, folder = calibrated
    data = tmp_path / "data.yaml"
    data.write_text(f"train: {folder}\nval: {folder}\nnames:\n  0: a\n")
    opts = CompileOptions(imgsz=IMGSZ, calib=str(folder), data=str(data))

    def quantized(spec: str):
        ir = compiler.load("yolov8n.yaml", IMGSZ)
        compiler.apply(ir, [spec], opts)
        return ir

    a = quantized("int8:method=minmax").onnx_model
    # epochs=1 trains without measuring val (a random-weight model has no metric to keep the best by)
    ir = quantized("qat:method=minmax,epochs=1,images=8,batch=4,lr_scale=0.05")
    b = ir.onnx_model
    facts = next(p["changes"] for p in ir.provenance if p["pass"] == "qat-train")
    assert facts["fake_quant_points"] == len(_qdq_points(b)) and len(facts["epochs"]) == 1
    assert _qdq_points(a) == _qdq_points(b)
    scale = lambda m: {i.name: float(numpy_helper.to_array(i)) for i in m.graph.initializer  # noqa: E731
                       if i.name.endswith("_scale") and numpy_helper.to_array(i).ndim == 0}
    sa, sb = scale(a), scale(b)
    assert sum(not np.isclose(sa[k], sb[k], rtol=1e-4, atol=0) for k in sa) > len(sa) // 4  # learned


def test_qat_needs_data(cli, tmp_path, calibrated):
    _, _, folder = calibrated
    code, out, err = cli("yolov8n.yaml", "--imgsz", "64", "-p", "qat", "--calib", folder, "-o", tmp_path / "m.onnx")
    assert code == 2
    assert "--data" in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_qat_plan_shows_its_parts(cli):
    code, out, _ = cli("yolov8n.yaml", "--imgsz", "64", "-p", "qat", "--dry-run")
    assert code == 0
    for part in ("calibrate", "qat-train", "qdq"):
        assert part in out

"""calibrate / qdq / int8 / fp16 on yolov8n at a small size, with real (generated) images."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from yolocc.compiler.errors import PassError, UsageError
from tests.conftest import IMGSZ


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))


def _compile(compiler, tmp_path, passes, target="ort-cpu", calib=None, **kw):
    out = tmp_path / "q.onnx"
    res = compiler.compile("yolov8n.yaml", passes, out, imgsz=IMGSZ, calib=str(calib) if calib else None,
                           target=target, measure=False, **kw)
    return res, onnx.load(str(out))


def test_int8_expands_and_quantizes(compiler, tmp_path, calib_dir):
    res, model = _compile(compiler, tmp_path, ["int8"], calib=calib_dir)
    assert [s.pass_.name if s.pass_ else "lower" for s in res.plan] == ["canonicalize", "fuse-bn", "lower",
                                                                         "calibrate", "qdq"]
    qdq = res.report.stages[-1].changes
    fusion = qdq["ort_fusion"]
    # Every conv but the 3-channel stem runs as QLinearConv (canonicalize turned the DFL conv into a
    # float softmax + MatMul); the stem conv and its SiLU (Sigmoid, Mul) stay float on ort-cpu.
    assert fusion["qlinear_convs"] == fusion["convs"] - 1 and fusion["float_convs_after"] == 1
    assert qdq["float_thin_conv_nodes"] == 3
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(weights) == qdq["weights"] == 62


def test_decode_tail_stays_float(compiler, tmp_path, calib_dir):
    _, model = _compile(compiler, tmp_path, ["int8"], calib=calib_dir)
    producer = {o: n for n in model.graph.node for o in n.output}
    out = producer[model.graph.output[0].name]
    assert out.op_type == "Concat"  # boxes + scores concat is float: fed by no DequantizeLinear
    for name in out.input:
        assert producer[name].op_type != "DequantizeLinear"
    head_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name.endswith((".2/Conv"))
                  and n.name.startswith("/model.22/")]
    assert len(head_convs) == 6  # the last box/class convs: int8, but each branch keeps its own range
    for conv in head_convs:
        q = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == conv.output[0]]
        assert len(q) == 1
    sig = [n for n in model.graph.node if n.name == "/model.22/Sigmoid"]  # the class-score sigmoid
    assert sig and all(producer[i].op_type != "DequantizeLinear" for n in sig for i in n.input)
    dfl = [n for n in model.graph.node if "/dfl/" in n.name]
    assert {n.op_type for n in dfl} >= {"Softmax", "MatMul"}
    assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for n in dfl for i in n.input)


def test_output_fidelity_on_random_weights(compiler, tmp_path, calib_dir):
    base = tmp_path / "fp32.onnx"
    compiler.compile("yolov8n.yaml", [], base, imgsz=IMGSZ, measure=False)
    _, model = _compile(compiler, tmp_path, ["int8"], calib=calib_dir)
    x = np.random.default_rng(1).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    ref = ort.InferenceSession(str(base)).run(None, {"images": x})[0]
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"images": x})[0]
    assert got.shape == ref.shape
    assert np.abs(got[:, :4] - ref[:, :4]).max() / np.abs(ref[:, :4]).max() < 0.05  # boxes
    assert np.abs(got[:, 4:] - ref[:, 4:]).max() < 0.05  # scores


def test_tensorrt_target_passes_checker_and_runs(compiler, tmp_path, calib_dir):
    from yolocc.plugins.tensorrt_check import check_tensorrt_qdq

    res, model = _compile(compiler, tmp_path, ["int8"], target="tensorrt", calib=calib_dir)
    assert check_tensorrt_qdq(model) == [] and res.report.stages[-1].changes["tensorrt_rule_violations"] == 0
    zps = [t for t in model.graph.initializer if t.name.endswith("_zero_point")]
    assert zps and all(t.data_type == onnx.TensorProto.INT8 for t in zps)
    y = ort.InferenceSession(model.SerializeToString()).run(None, {"images": np.zeros((1, 3, IMGSZ, IMGSZ), np.float32)})
    assert y[0].shape == (1, 84, 525)


def test_checker_catches_violations(compiler, tmp_path, calib_dir):
    from yolocc.plugins.tensorrt_check import check_tensorrt_qdq

    _, model = _compile(compiler, tmp_path, ["int8"], target="ort-cpu", calib=calib_dir)
    problems = check_tensorrt_qdq(model)  # U8 asymmetric, conv outputs quantized: not TensorRT-shaped
    assert any("zero point must be int8 0" in p for p in problems)
    assert any("raw output of Conv" in p for p in problems)


def test_calibration_cache_hit(compiler, tmp_path, calib_dir):
    first, _ = _compile(compiler, tmp_path, ["int8"], calib=calib_dir)
    second, _ = _compile(compiler, tmp_path, ["int8"], calib=calib_dir)
    cal = [s for s in first.report.stages if s.name == "calibrate"][0].changes
    cal2 = [s for s in second.report.stages if s.name == "calibrate"][0].changes
    assert (cal["cache"], cal2["cache"]) == ("miss", "hit")
    # 8 images, none to spare: cross-fitted, every image scored once, the choice refit on all 8
    assert (cal["images"], cal["held_out_images"], cal["folds"]) == (8, 8, 4)


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_methods_on_plain_cnn(compiler, tmp_path, cnn_path, method):
    arr = tmp_path / "calib.npz"
    np.savez(arr, x=np.random.default_rng(0).random((6, 3, 64, 64), dtype=np.float32))
    res = compiler.compile(cnn_path, [f"int8:method={method},n=4"], tmp_path / "q.onnx", imgsz=64, trust_model=True,
                           calib=str(arr), measure=False)
    cal = [s for s in res.report.stages if s.name == "calibrate"][0].changes
    assert cal["method"] == method and cal["images"] == 4
    assert res.report.stages[-1].changes["ort_fusion"]["qlinear_convs"] == 3  # all but the 3-channel stem


def test_float_head_convs_option(compiler, tmp_path, calib_dir):
    res, _ = _compile(compiler, tmp_path, ["int8:float_head_convs=true"], calib=calib_dir)
    assert res.report.stages[-1].changes["ort_fusion"]["float_convs_after"] == 6 + 1  # + the stem


def test_exclude_keeps_named_layers_float(compiler, tmp_path, calib_dir):
    res, model = _compile(compiler, tmp_path, ["int8:exclude=/model.1/*|/model.2/cv1/*"], calib=calib_dir)
    producer = {o: n for n in model.graph.node for o in n.output}
    second = next(n for n in model.graph.node if n.name == "/model.1/conv/Conv")
    assert producer.get(second.input[1]) is None
    assert res.report.stages[-1].changes["excluded_by_pattern"] >= 2


@pytest.mark.parametrize("target, stem_float, stem_weight_max", [("ort-cpu", True, None), ("tensorrt", False, 127),
                                                                 ("openvino", False, 63)])
def test_thin_stem_conv_float_only_where_the_target_says(compiler, tmp_path, calib_dir, target, stem_float,
                                                          stem_weight_max):
    if target == "openvino":
        pytest.importorskip("openvino")
    _, model = _compile(compiler, tmp_path, ["int8"], target=target, calib=calib_dir)
    producer = {o: n for n in model.graph.node for o in n.output}
    stem = next(n for n in model.graph.node if n.name == "/model.0/conv/Conv")
    weight_dq = producer.get(stem.input[1])
    assert (weight_dq is None) == stem_float
    # on ort-cpu the float stem reads the float input; its SiLU output is what gets quantized
    assert (producer.get(stem.input[0]) is None) == stem_float
    if stem_weight_max is not None:
        # openvino narrows the quantized stem's weights to 7 bits (Placement.narrow_weights_below_channels,
        # NNCF's first-layer overflow fix); tensorrt keeps the full int8 range
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
        assert int(np.abs(inits[weight_dq.input[0]].astype(np.int32)).max()) == stem_weight_max


def test_npy_calibration(compiler, tmp_path):
    arr = tmp_path / "calib.npy"
    np.save(arr, np.random.default_rng(0).random((3, 3, IMGSZ, IMGSZ), dtype=np.float32))
    res, _ = _compile(compiler, tmp_path, ["int8"], calib=arr)
    cal = [s for s in res.report.stages if s.name == "calibrate"][0].changes
    # method=auto scores every sample with ranges from the others: 3 samples, 3 folds (leave-one-out)
    assert (cal["images"], cal["held_out_images"], cal["folds"]) == (3, 3, 3)
    one, _ = _compile(compiler, tmp_path, ["int8:folds=1"], calib=arr)
    cal = [s for s in one.report.stages if s.name == "calibrate"][0].changes
    assert (cal["images"], cal["held_out_images"]) == (2, 1)  # one split: a quarter (at least one) held out


def test_fp16_keeps_io_float32(compiler, tmp_path):
    res, model = _compile(compiler, tmp_path, ["fp16"])
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert res.report.stages[-1].changes["bytes_after"] < 0.6 * res.report.stages[-1].changes["bytes_before"]


# ---------------------------------------------------------------- bad input
def test_int8_without_calib(compiler, tmp_path):
    with pytest.raises(UsageError, match="int8 needs calibration data: pass --calib"):
        _compile(compiler, tmp_path, ["int8"])


def test_empty_and_unreadable_calibration(compiler, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PassError, match="has no images"):
        _compile(compiler, tmp_path, ["int8"], calib=empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    (bad / "b.jpg").write_bytes(b"")
    with pytest.raises(PassError, match=r"0 of 2 could be read \(first unreadable: '.*a.png'\)"):
        _compile(compiler, tmp_path, ["int8"], calib=bad)


def test_bad_npy_shape(compiler, tmp_path):
    arr = tmp_path / "calib.npy"
    np.save(arr, np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(PassError, match=r"samples of shape \[3, 32, 32\]; the model takes \[3, 160, 160\]"):
        _compile(compiler, tmp_path, ["int8"], calib=arr)


def test_nan_calibration_rejected(compiler, tmp_path):
    arr = tmp_path / "calib.npy"
    np.save(arr, np.full((2, 3, IMGSZ, IMGSZ), np.nan, np.float32))
    with pytest.raises(PassError, match="NaN or Inf"):
        _compile(compiler, tmp_path, ["int8"], calib=arr)


def test_everything_excluded(compiler, tmp_path, calib_dir):
    with pytest.raises(PassError, match="every one of the .* quantizable layers is excluded"):
        _compile(compiler, tmp_path, ["int8:exclude=*"], calib=calib_dir)


@pytest.mark.parametrize("spec, message", [("int8:method=magic", "must be one of auto, minmax"), ("int8:n=0", ">= 1")])
def test_bad_int8_arguments(compiler, tmp_path, calib_dir, spec, message):
    with pytest.raises(UsageError, match=message):
        _compile(compiler, tmp_path, [spec], calib=calib_dir)


def test_unknown_target(compiler, tmp_path, calib_dir):
    with pytest.raises(UsageError, match="unknown target 'tpu'; available targets: openvino, ort-cpu, tensorrt"):
        _compile(compiler, tmp_path, ["int8"], target="tpu", calib=calib_dir)


def test_int8_bytes_are_deterministic(compiler, tmp_path, calib_dir, monkeypatch):
    outs = []
    for i in range(2):
        monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / f"cache{i}"))  # recalibrate each time
        out = tmp_path / f"q{i}.onnx"
        compiler.compile("yolov8n.yaml", ["int8"], out, imgsz=IMGSZ, calib=str(calib_dir), measure=False)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


# ------------------------------------------------------------------ the grid checked on the target's runtime
def _picky_compiler(hopeless: bool = False, miscomputes: bool = False, first_measured: bool = False):
    """A compiler with a plugin target ``picky``: zero point 0 is its own grid, and its "runtime" runs a Q/DQ
    conv in float when its input is S8 with zero point 0 (the pattern OpenVINO 2026.4 left in float on CPUs
    without AMX), or every Q/DQ conv in float whatever the grid (``hopeless``). ``miscomputes``: it runs
    every layer int8 but computes a graph whose activations all have zero point 0 unlike the graph says
    (reference fidelity 0.6, else 0.999), as OpenVINO 2026.4 did on the digits detector without AMX.
    ``first_measured``: every layer int8, fidelity 0.97 for the first graph it is asked about and 0.98
    for any later one (which graph was measured shows in the report)."""
    from types import ModuleType

    from onnx import numpy_helper

    from yolocc.compiler.api import Compiler
    from yolocc.compiler.hookspecs import hookimpl
    from yolocc.compiler.registry import get_plugin_manager
    from yolocc.compiler.target import Placement, QuantScheme, Target, Verification

    seen = []  # the graphs reference_fidelity was asked about (first_measured)

    class Picky(Target):
        name = "picky"
        scheme = QuantScheme(activation_dtype="uint8", activation_symmetric=True, quantize_bias=False)
        placement = Placement(input_ops=("Conv", "Add"))

        def verify(self, model):
            inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
            producer = {o: n for n in model.graph.node for o in n.output}
            floats = []
            for n in model.graph.node:
                dq = producer.get(n.input[0]) if n.op_type == "Conv" else None
                if dq is None or dq.op_type != "DequantizeLinear":
                    continue
                zp = inits[dq.input[2]]
                if not miscomputes and (hopeless or (zp.dtype == np.int8 and not zp.any())):
                    floats.append(n.name)
            return Verification(facts={"picky_float": len(floats)}, float_layers=floats)

        def reference_fidelity(self, model):
            if first_measured:
                seen.append(model)
                return 0.97 if model is seen[0] else 0.98
            if not miscomputes:
                return None
            inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
            zps = [inits[q.input[2]] for q in model.graph.node if q.op_type == "QuantizeLinear"]
            return 0.6 if hopeless or not any(z.any() for z in zps) else 0.999

    plugin = ModuleType("picky_plugin")

    @hookimpl
    def yolocc_register_targets(registry):
        registry.add_target(Picky())

    plugin.yolocc_register_targets = yolocc_register_targets
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(plugin, name="picky_plugin")
    return Compiler(pm)


def test_zero_point_grid_falls_back_where_the_runtime_miscomputes_it(tmp_path, calib_dir):
    """Every layer int8, but the runtime's outputs for the zero-point-0 graph disagree with the reference
    execution's (``Target.reference_fidelity`` below ``REFERENCE_FIDELITY``): the asymmetric build is kept
    where it agrees, with both fidelities said; where neither agrees, zero point 0 stays."""
    res, model = _compile(_picky_compiler(miscomputes=True), tmp_path, ["int8:method=minmax"], target="picky",
                          calib=calib_dir)
    facts, diagnostics = res.report.stages[-1].changes, res.report.stages[-1].diagnostics
    assert facts["activation_grid"] == "U8 asym" and facts["picky_float"] == 0
    line = facts["activation_grid_fallback"]
    assert "fidelity 0.600" in line and "0.999" in line and "the activations are asymmetric" in line
    assert line in diagnostics and facts["reference_fidelity"] == 0.999

    res, _ = _compile(_picky_compiler(hopeless=True, miscomputes=True), tmp_path, ["int8:method=minmax"],
                      target="picky", calib=calib_dir)
    facts = res.report.stages[-1].changes
    assert facts["activation_grid"] == "U8/S8 sym (zero point 0)" and facts["picky_float"] == 0
    assert "fidelity 0.600" in facts["activation_grid_fallback"]
    assert "zero point 0 is kept" in facts["activation_grid_fallback"]


def test_a_chosen_grid_the_runtime_miscomputes_is_kept_with_a_warning(tmp_path, calib_dir):
    """``activations=symmetric`` asked for explicitly: built as asked (no fallback), but where the runtime
    computes it unlike the reference execution the terminal says so, and the facts carry the fidelity."""
    res, _ = _compile(_picky_compiler(miscomputes=True), tmp_path, ["int8:method=minmax,activations=symmetric"],
                      target="picky", calib=calib_dir)
    stage = res.report.stages[-1]
    assert stage.changes["activation_grid"] == "U8/S8 sym (zero point 0)"
    assert "activation_grid_fallback" not in stage.changes and stage.changes["reference_fidelity"] == 0.6
    line = next(d for d in stage.diagnostics if "activations=symmetric" in d)
    assert "fidelity 0.600" in line and "activations=target checks this" in line

    res, _ = _compile(_picky_compiler(miscomputes=True), tmp_path, ["int8:method=minmax,activations=asymmetric"],
                      target="picky", calib=calib_dir)
    stage = res.report.stages[-1]
    assert stage.changes["reference_fidelity"] == 0.999
    assert not any("computes outputs unlike" in d for d in stage.diagnostics)


def test_the_grid_check_is_reported_after_calibration_candidates(tmp_path, calib_dir):
    """``calibrate:method=auto`` builds the graph once per candidate; the grid is chosen on the first build
    and the emitted model's report still carries the check (the fallback line and the fidelity)."""
    res, _ = _compile(_picky_compiler(miscomputes=True), tmp_path, ["int8"], target="picky", calib=calib_dir)
    facts = res.report.stages[-1].changes
    assert facts["activation_grid"] == "U8 asym" and facts["reference_fidelity"] == 0.999
    assert "the activations are asymmetric" in facts["activation_grid_fallback"]


def test_the_emitted_model_is_the_one_whose_fidelity_is_reported(tmp_path, calib_dir):
    """The grid is chosen on calibrate's first candidate build; the report's ``reference_fidelity`` is
    measured again on the model written (its own ranges), not carried over from that first build."""
    res, _ = _compile(_picky_compiler(first_measured=True), tmp_path, ["int8"], target="picky", calib=calib_dir)
    assert res.report.stages[-1].changes["reference_fidelity"] == 0.98

    # one build only (a fixed method): the first graph measured is the one written, measured once
    res, _ = _compile(_picky_compiler(first_measured=True), tmp_path, ["int8:method=minmax"], target="picky",
                      calib=calib_dir)
    assert res.report.stages[-1].changes["reference_fidelity"] == 0.97


def test_zero_point_grid_falls_back_where_the_runtime_runs_it_in_float(tmp_path, calib_dir):
    """``activations=target`` on a zero-point-0 target: where the target's check finds Q/DQ layers its runtime
    runs in float, the graph is built again asymmetric and kept if fewer layers stay float, and the report and
    the terminal say so; an explicit grid is kept as asked, with the way out named."""
    compiler = _picky_compiler()
    res, model = _compile(compiler, tmp_path, ["int8:method=minmax"], target="picky", calib=calib_dir)
    facts, diagnostics = res.report.stages[-1].changes, res.report.stages[-1].diagnostics
    assert facts["activation_grid"] == "U8 asym" and facts["picky_float"] == 0
    assert "the activations are asymmetric" in facts["activation_grid_fallback"]
    assert facts["activation_grid_fallback"] in diagnostics
    zps = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.UINT8 and not t.dims]
    assert any(onnx.numpy_helper.to_array(z) != 0 for z in zps)

    res, _ = _compile(compiler, tmp_path, ["int8:method=minmax,activations=symmetric"], target="picky",
                      calib=calib_dir)
    facts, diagnostics = res.report.stages[-1].changes, res.report.stages[-1].diagnostics
    assert facts["activation_grid"] == "U8/S8 sym (zero point 0)" and facts["picky_float"] > 0
    assert "activation_grid_fallback" not in facts
    assert any("activations=asymmetric" in d for d in diagnostics)

    res, _ = _compile(_picky_compiler(hopeless=True), tmp_path, ["int8:method=minmax"],
                      target="picky", calib=calib_dir)
    facts = res.report.stages[-1].changes
    assert facts["activation_grid"] == "U8/S8 sym (zero point 0)"  # asymmetric did not help: the target's own grid
    assert "zero point 0 is kept" in facts["activation_grid_fallback"]

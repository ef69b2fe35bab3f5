"""The openvino target and the OpenVINO IR emitter (plugins/openvino_target.py, openvino_emitter.py).

Without OpenVINO installed only the registration and the missing-dependency paths run; the rest
needs ``openvino`` (``pip install 'yolocc[openvino]'``) and is skipped otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import IMGSZ
from yolocc.compiler.measure import cpu_isa

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def calib_npy(tmp_path_factory):
    """Eight preprocessed inputs (smooth images in [0, 1]) for yolov8n at IMGSZ."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:IMGSZ, 0:IMGSZ] / IMGSZ
    x = np.stack([np.stack([np.sin(6 * xx + i) * 0.5 + 0.5, np.cos(5 * yy - i) * 0.5 + 0.5, xx * yy])
                  for i in range(8)]).astype(np.float32)
    x = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    path = tmp_path_factory.mktemp("calib") / "calib.npy"
    np.save(path, x)
    return path


def _no_openvino(monkeypatch):
    """Make ``openvino`` unimportable for this test, whether or not it is installed."""
    for name in [m for m in sys.modules if m == "openvino" or m.startswith("openvino.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "openvino", None)


# ------------------------------------------------------------------ without OpenVINO
def test_target_and_emitter_are_registered():
    from yolocc.compiler.registry import build_registry, get_plugin_manager

    reg = build_registry(get_plugin_manager(load_entry_points=False))
    target = reg.target("openvino")
    assert reg.targets["openvino"].provider == "yolocc.plugins.builtin"
    assert target.scheme.activation_dtype == "uint8" and target.scheme.activation_symmetric  # U8/S8, zero point 0
    assert not target.scheme.quantize_bias  # OpenVINO adds a float bias in the fused post-op
    assert "Sigmoid" not in target.placement.input_ops and "Mul" not in target.placement.input_ops  # SiLU fuses
    assert target.placement.output_ops in ((), ("Concat",))  # Q/DQ on inputs, as NNCF places them
    emitter = reg.emitter_for("runs/yolo_openvino_model")
    assert emitter.name == "openvino" and emitter.writes_folder
    assert (target.default_emitter, target.default_suffix) == ("openvino", "_openvino_model")


def test_missing_openvino_target_exits_2_with_install_command(cli, cnn_path, tmp_path, monkeypatch):
    _no_openvino(monkeypatch)
    from yolocc.plugins.openvino_target import OpenVinoTarget

    assert "pip install" in OpenVinoTarget().available()
    out = tmp_path / "m_openvino_model"
    code, _, err = cli(cnn_path, "--trust-model", "--imgsz", 64, "--target", "openvino", "-o", out, "--no-measure")
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "pip install 'yolocc[openvino]'" in err
    assert not out.exists() and list(tmp_path.glob(".*partial*")) == []


def test_missing_openvino_ir_output_exits_2_and_leaves_nothing(cli, cnn_path, tmp_path, monkeypatch):
    _no_openvino(monkeypatch)
    out = tmp_path / "m_openvino_model"
    code, _, err = cli(cnn_path, "--trust-model", "--imgsz", 64, "-o", out, "--no-measure")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "openvino" in p.name]


def test_metadata_is_typed_for_ultralytics():
    from yolocc.plugins.openvino_emitter import ultralytics_metadata

    model = onnx.ModelProto()
    for key, value in {"names": "{0: 'a', 1: 'b c'}", "imgsz": "[160, 160]", "stride": "32", "task": "detect",
                       "batch": "1", "dynamic": "False", "version": "8.4.190", "producer": "yolocc"}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    meta = ultralytics_metadata(model)
    assert meta["names"] == {0: "a", 1: "b c"} and meta["imgsz"] == [160, 160] and meta["stride"] == 32
    assert meta["version"] == "8.4.190" and meta["task"] == "detect"
    assert meta["args"] == {"batch": 1, "dynamic": False, "nms": False} and "dynamic" not in meta


# ------------------------------------------------------------------ with OpenVINO
def _compile_int8(compiler, tmp_path, calib, output="q.onnx", model="yolov8n.yaml", spec="int8", **kw):
    out = tmp_path / output
    res = compiler.compile(model, [spec], out, imgsz=IMGSZ, calib=str(calib), target="openvino",
                           measure=False, **kw)
    return res, out


def test_placement_is_what_openvino_runs_in_int8(compiler, tmp_path, calib_npy):
    pytest.importorskip("openvino")
    from yolocc.compiler.target import Placement

    # The target's own grid, asked for by name: the default checks it on this CPU and may fall back
    # (test_the_default_grid_runs_every_qdq_conv_in_int8).
    res, out = _compile_int8(compiler, tmp_path, calib_npy, spec="int8:activations=symmetric")
    model = onnx.load(str(out))
    nodes = list(model.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quant = [n for n in nodes if n.op_type == "QuantizeLinear"]
    # Activations without zero points (NNCF's symmetric activations): U8 where the calibrated range is
    # non-negative (the image), S8 where it has negatives (SiLU outputs).
    assert quant and not any(inits[q.input[2]].any() for q in quant)
    dtypes = {inits[q.input[2]].dtype for q in quant}
    assert dtypes == {np.dtype(np.uint8), np.dtype(np.int8)}, dtypes
    # Nothing inside a SiLU: the Sigmoid's output and the product Mul's inputs are never quantized.
    assert not [q for q in quant if producer.get(q.input[0]) is not None and producer[q.input[0]].op_type == "Sigmoid"]
    # Weights: symmetric int8 per output channel; biases stay float.
    convs = [n for n in nodes if n.op_type == "Conv"]
    qconvs = [c for c in convs if c.input[1] in producer and producer[c.input[1]].op_type == "DequantizeLinear"]
    for c in qconvs:
        dq = producer[c.input[1]]
        assert inits[dq.input[0]].dtype == np.int8 and not inits[dq.input[2]].any()
        assert len(c.input) < 3 or c.input[2] in inits  # float bias initializer, no int32 DequantizeLinear
    # The 3-channel stem runs in int8 like NNCF's (a float stem costs a float conv and two reorders on
    # OpenVINO), reading the quantized image, with 7-bit weights (NNCF's first-layer overflow fix) where
    # every other conv uses the full int8 range.
    stem = convs[0]
    assert stem in qconvs and inits[producer[stem.input[1]].input[0]].shape[1] == 3
    assert producer[stem.input[0]].op_type == "DequantizeLinear"
    assert producer[producer[stem.input[0]].input[0]].input[0] == model.graph.input[0].name
    weight_max = {c.name: int(np.abs(inits[producer[c.input[1]].input[0]].astype(np.int32)).max()) for c in qconvs}
    assert weight_max[stem.name] == 63 and all(v == 127 for n, v in weight_max.items() if n != stem.name)
    # The head's last convs are quantized on their input; the box branch's (cv2, read through reshapes
    # and a concat by the DFL softmax) also on its output, so OpenVINO moves the box logits in u8; the class
    # branch's (cv3, read by the Sigmoid) output stays float (Placement.quantize_softmax_tail_inputs).
    head_last = [c for c in qconvs if c.name.startswith("/model.22/") and c.name.endswith("2/Conv")]
    assert len(head_last) == 6
    out_quantized = {c.name: any(n.op_type == "QuantizeLinear" for n in consumers.get(c.output[0], []))
                     for c in head_last}
    assert out_quantized == {c.name: "/cv2." in c.name for c in head_last}
    if "transparent_ops" in Placement.__dataclass_fields__:
        # Data movement carries the dequantization: no Q/DQ on the outputs of Concat/Split/MaxPool/Resize.
        moved = [n for n in nodes if n.op_type in ("Concat", "Split", "MaxPool", "Resize")]
        requant = [n.name for n in moved for o in n.output
                   for c in consumers.get(o, []) if c.op_type == "QuantizeLinear"]
        assert moved and requant == []
    facts = res.report.stages[-1].changes
    assert facts["target"] == "openvino"
    int8, total = map(int, facts["openvino_int8_layers"].split("/"))
    assert total == len(qconvs)
    assert facts["activation_grid"] == "U8/S8 sym (zero point 0)"
    conv_precision = facts["openvino_runtime_precision"]["Convolution"]
    assert conv_precision.get("u8", 0) + conv_precision.get("i8", 0) == int8
    diagnostics = res.report.stages[-1].diagnostics
    # With AMX every zero-point-0 conv of this random-weights model runs in int8; without it (AVX2, AVX-512
    # VNNI) OpenVINO 2026.4 left some in float (README, "OpenVINO: the grid is checked on this CPU"). Where
    # it does, the user is told which, and how out.
    assert int8 == total or (any("in float" in d for d in diagnostics)
                             and any("activations=asymmetric" in d for d in diagnostics)), (int8, total, cpu_isa())


def test_the_default_grid_runs_every_qdq_conv_in_int8(compiler, tmp_path, calib_npy):
    """``-p int8 --target openvino`` checks its zero-point-0 grid on this CPU's OpenVINO and falls back to
    asymmetric activations where OpenVINO would run Q/DQ convolutions in float: on every ISA the
    result runs each of them in int8, and a fallback is said on the terminal."""
    pytest.importorskip("openvino")
    res, _ = _compile_int8(compiler, tmp_path, calib_npy)
    facts, diagnostics = res.report.stages[-1].changes, res.report.stages[-1].diagnostics
    int8, total = map(int, facts["openvino_int8_layers"].split("/"))
    assert int8 == total and total > 60, (facts["openvino_int8_layers"], cpu_isa())
    if "activation_grid_fallback" in facts:
        assert facts["activation_grid"] == "U8 asym" and facts["activation_grid_fallback"] in diagnostics
        assert f"({cpu_isa()})" in facts["activation_grid_fallback"]
    else:
        assert facts["activation_grid"] == "U8/S8 sym (zero point 0)" and diagnostics == []


def test_the_default_int8_computes_on_openvino_what_its_graph_says(compiler, tmp_path):
    """The trained digits detector's ``-p int8 --target openvino``: OpenVINO's outputs match onnxruntime's
    for the emitted Q/DQ graph on every ISA. Without AMX, OpenVINO 2026.4 computed the zero-point-0 graph's
    class scores at a fidelity of 0.73 (test mAP50-95 -16.7 pt at 160 on AVX-512 VNNI), so there the
    default falls back to asymmetric activations and says why."""
    pytest.importorskip("openvino")
    from yolocc.passes.qdq import REFERENCE_FIDELITY
    from yolocc.plugins.openvino_target import OpenVinoTarget

    out = tmp_path / "digits.onnx"
    res = compiler.compile(str(DIGITS / "weights" / "yolov8n-digits.pt"), ["int8:method=minmax"], out, imgsz=IMGSZ,
                           calib=str(DIGITS / "data" / "calib" / "images"), calib_n=16, target="openvino",
                           measure=False)
    facts, diagnostics = res.report.stages[-1].changes, res.report.stages[-1].diagnostics
    fidelity = OpenVinoTarget().reference_fidelity(onnx.load(str(out)))
    assert fidelity >= REFERENCE_FIDELITY, (fidelity, facts["activation_grid"], cpu_isa())
    if "activation_grid_fallback" in facts:
        assert facts["activation_grid"] == "U8 asym" and facts["activation_grid_fallback"] in diagnostics
    else:
        assert facts["reference_fidelity"] >= REFERENCE_FIDELITY


def test_activation_grid_choice(compiler, tmp_path, calib_npy):
    """``qdq:activations=asymmetric`` (through ``int8``) gives the openvino target NNCF's grid: U8 over the
    calibrated [min, max] with a zero point where the range has negatives, zero point 0 where it has none;
    the same ranges, so the image's grid is unchanged. ``symmetric`` is the target's own grid."""
    pytest.importorskip("openvino")

    def grids(spec, name):
        out = tmp_path / name
        res = compiler.compile("yolov8n.yaml", [spec], out, imgsz=IMGSZ, calib=str(calib_npy), target="openvino",
                               measure=False)
        model = onnx.load(str(out))
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        quant = {q.input[0]: (float(inits[q.input[1]]), inits[q.input[2]]) for q in model.graph.node
                 if q.op_type == "QuantizeLinear"}
        return quant, res.report.stages[-1].changes

    sym, sym_facts = grids("int8:method=minmax,activations=symmetric", "sym.onnx")
    asym, asym_facts = grids("int8:method=minmax,activations=asymmetric", "asym.onnx")
    default, default_facts = grids("int8:method=minmax", "default.onnx")
    assert (sym_facts["activation_grid"], asym_facts["activation_grid"]) == ("U8/S8 sym (zero point 0)", "U8 asym")
    # The default is the target's own grid, or the asymmetric one where OpenVINO runs zero point 0 in float here.
    same = asym if "activation_grid_fallback" in default_facts else sym
    assert set(sym) == set(asym) and {k: v[0] for k, v in default.items()} == {k: v[0] for k, v in same.items()}
    assert {zp.dtype for _, zp in asym.values()} == {np.dtype(np.uint8)}
    shifted = [k for k, (_, zp) in asym.items() if int(zp) != 0]
    assert shifted and all(sym[k][1].dtype == np.int8 for k in shifted)  # the ranges with negatives
    for k in shifted:  # 255 levels over [min, max] instead of 127 over +-max: a finer step
        assert asym[k][0] < sym[k][0]
    image = next(k for k, (_, zp) in sym.items() if zp.dtype == np.uint8)
    assert asym[image][0] == sym[image][0] and int(asym[image][1]) == 0


def test_hybrid_grid_puts_zero_points_only_at_coarse_strides(compiler, tmp_path, calib_npy):
    """``activations=hybrid``: U8 with a zero point on tensors at stride ``hybrid_stride`` or coarser,
    zero point 0 on the finer ones; a concat's inputs keep one grid (their finest member decides)."""
    pytest.importorskip("openvino")
    out = tmp_path / "hybrid.onnx"
    res = compiler.compile("yolov8n.yaml", ["int8:method=minmax,activations=hybrid,hybrid_stride=16"], out,
                           imgsz=IMGSZ, calib=str(calib_npy), target="openvino", measure=False)
    assert res.report.stages[-1].changes["activation_grid"].endswith("U8 asym at it and coarser")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(out)))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    height = {v.name: v.type.tensor_type.shape.dim[2].dim_value for v in model.graph.value_info
              if len(v.type.tensor_type.shape.dim) == 4}
    height.update({i.name: IMGSZ for i in model.graph.input})
    quant = {n.input[0]: (float(inits[n.input[1]]), inits[n.input[2]]) for n in model.graph.node
             if n.op_type == "QuantizeLinear"}
    coarse = {t for t in quant if IMGSZ / height[t] >= 16}
    assert all(int(quant[t][1]) == 0 for t in set(quant) - coarse)
    fine_grids = {(quant[t][0], int(quant[t][1])) for t in set(quant) - coarse}
    for t in coarse:  # U8 asymmetric, unless it shares its range with a finer tensor (a Resize's input)
        assert quant[t][1].dtype == np.uint8 or (quant[t][0], 0) in fine_grids, t
    shifted = [t for t in coarse if int(quant[t][1]) != 0]
    assert shifted and len(coarse) < len(quant), (len(shifted), len(coarse), len(quant))
    grid = {n.output[0]: (float(inits[n.input[1]]), int(inits[n.input[2]])) for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[1] in inits and inits[n.input[1]].size == 1}
    for concat in (n for n in model.graph.node if n.op_type == "Concat"):
        grids = {grid[i] for i in concat.input if i in grid}
        assert len(grids) <= 1, (concat.name, grids)
    # A stride no tensor reaches: all zero point 0, and the report says why.
    res = compiler.compile("yolov8n.yaml", ["int8:method=minmax,activations=hybrid,hybrid_stride=1024"],
                           tmp_path / "none.onnx", imgsz=IMGSZ, calib=str(calib_npy), target="openvino", measure=False)
    assert any("every activation has zero point 0" in d for d in res.report.stages[-1].diagnostics)


def test_verify_reports_a_conv_openvino_runs_in_float(tmp_path, calib_npy, compiler):
    pytest.importorskip("openvino")
    from yolocc.plugins.openvino_target import OpenVinoTarget

    _, out = _compile_int8(compiler, tmp_path, calib_npy)
    model = onnx.load(str(out))
    # Break one conv's activation quantization: feed it the float tensor in front of its Q/DQ.
    producer = {o: n for n in model.graph.node for o in n.output}
    victim = next(n for n in model.graph.node if n.op_type == "Conv" and n.name == "/model.1/conv/Conv")
    dq = producer[victim.input[0]]
    assert dq.op_type == "DequantizeLinear"
    before = OpenVinoTarget().verify(model)
    int8_before, total = map(int, before.facts["openvino_int8_layers"].split("/"))
    assert not any("/model.1/conv/Conv" in p for p in before.problems)
    victim.input[0] = producer[dq.input[0]].input[0]
    check = OpenVinoTarget().verify(model)
    int8, total_after = map(int, check.facts["openvino_int8_layers"].split("/"))
    assert (int8, total_after) == (int8_before - 1, total) and any("/model.1/conv/Conv" in p for p in check.problems)
    assert set(check.float_layers) - set(before.float_layers) == {"/model.1/conv/Conv"}


def test_ir_folder_loads_matches_and_is_deterministic(compiler, tmp_path, calib_npy):
    ov = pytest.importorskip("openvino")
    import yaml

    from yolocc.plugins.openvino_target import OpenVinoRuntime

    res, folder = _compile_int8(compiler, tmp_path, calib_npy, "a_openvino_model")
    _, again = _compile_int8(compiler, tmp_path, calib_npy, "b_openvino_model")
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.yaml", "model.bin", "model.xml"]
    for name in ("model.xml", "model.bin", "metadata.yaml"):
        assert (folder / name).read_bytes() == (again / name).read_bytes(), name
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert meta["task"] == "detect" and meta["imgsz"] == [IMGSZ, IMGSZ] and meta["stride"] == 32
    assert len(meta["names"]) == 80 and meta["batch"] == 1
    art = res.report.artifact
    assert art["emitter"] == "openvino" and art["outputs"] == {"output0": [1, 84, 525 * IMGSZ ** 2 // 160 ** 2]}
    assert art["fake_quantize"] > 0
    # The IR runs what the report measured: same outputs as the compiled ONNX on the OpenVINO runtime.
    x = np.load(calib_npy)[:1]
    ir_out = ov.Core().compile_model(str(folder / "model.xml"), "CPU").create_infer_request().infer({0: x})[0]
    ref = OpenVinoRuntime().load(res.ir.onnx_model.SerializeToString(), threads=1).run(x)["output0"]
    np.testing.assert_allclose(ir_out, ref, rtol=1e-4, atol=1e-3)


def test_runtime_measures_the_report_on_openvino(tmp_path, cnn_path):
    ov = pytest.importorskip("openvino")
    import yaml

    from yolocc.compiler.api import compile_model

    rj = tmp_path / "r.json"
    folder = tmp_path / "m_openvino_model"  # the default emitter of the target; the torch stage is lowered first
    result = compile_model(str(cnn_path), ["fuse-bn"], folder, imgsz=64, target="openvino", trust_model=True,
                           latency_runs=3, threads=1, reports=[rj])
    assert result.report.artifact["emitter"] == "openvino" and (folder / "model.xml").is_file()
    assert yaml.safe_load((folder / "metadata.yaml").read_text()) == {"producer": "yolocc"}  # no Ultralytics keys
    latency = json.loads(rj.read_text())["latency"]
    assert latency["runtime"] == "OpenVINO CPU" and latency["version"] == ov.__version__
    assert latency["threads"] == 1 and latency["isa"]
    stages = result.report.stages
    assert all(s.latency_ms and s.latency_ms > 0 for s in stages)
    assert stages[-1].fidelity["output0"]["cosine"] > 0.9999  # fuse-bn is exact: OpenVINO agrees


@pytest.mark.slow
def test_ultralytics_validates_the_ir_folder_of_the_digits_detector(tmp_path):
    pytest.importorskip("openvino")
    from ultralytics import YOLO

    from yolocc.compiler.api import compile_model

    data = DIGITS / "data" / "digits.yaml"
    if not data.exists():
        pytest.skip("digits data not generated (python examples/digits/make_dataset.py)")
    folder = tmp_path / "digits_openvino_model"
    compile_model(str(DIGITS / "weights" / "yolov8n-digits.pt"), ["int8"], folder, target="openvino",
                  calib=str(DIGITS / "data" / "calib" / "images"), measure=False)
    res = YOLO(str(folder), task="detect").val(data=str(data), split="test", imgsz=160, batch=1, device="cpu",
                                               plots=False, verbose=False, workers=0, project=str(tmp_path))
    assert res.box.map > 0.58  # FP32 0.609 on this split; NNCF INT8 0.606-0.607


def test_ceiling_is_the_faster_of_the_matmul_and_the_convolution(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from yolocc.plugins import openvino_ceiling
    from yolocc.plugins.openvino_target import compile_cpu

    assert openvino_ceiling.measure_conv(compile_cpu, channels=16, spatial=8, threads=1, runs=2, warmup=1) > 0
    monkeypatch.setattr(openvino_ceiling, "measure_gemm", lambda *a, **k: 10.0)
    monkeypatch.setattr(openvino_ceiling, "measure_conv", lambda *a, **k: 25.0)
    conv_wins = openvino_ceiling.int8_ceiling_gmacs(compile_cpu, 1, tmp_path / "a")
    assert conv_wins["gmacs"] == 25.0 and "MatMul" in conv_wins["op"] and "Conv3x3" in conv_wins["op"]
    monkeypatch.setattr(openvino_ceiling, "measure_gemm", lambda *a, **k: 40.0)
    assert openvino_ceiling.int8_ceiling_gmacs(compile_cpu, 1, tmp_path / "b")["gmacs"] == 40.0

"""The example third-party plugin in examples/yolocc-sparsify, pip-installed like a user would.

The module fixture pip-installs the package (offline: no deps, no build isolation, no index) into
the running venv and uninstalls it when the module ends, so it does not leak into other tests.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tests.conftest import small_cnn

PKG_DIR = Path(__file__).resolve().parents[2] / "examples" / "yolocc-sparsify"
DIST = "yolocc-sparsify"
IMGSZ = 64


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300)


def _is_installed() -> bool:
    try:
        importlib.metadata.distribution(DIST)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _forget_module() -> None:
    for name in [m for m in sys.modules if m == "yolocc_sparsify" or m.startswith("yolocc_sparsify.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(scope="module", autouse=True)
def installed(tmp_path_factory):
    """Install the example plugin from a copy of its folder (the build leaves build/ and
    *.egg-info next to the sources; the copy keeps them out of the repository)."""
    src = tmp_path_factory.mktemp("plugin-src") / "yolocc-sparsify"
    shutil.copytree(PKG_DIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    was_installed = _is_installed()
    proc = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(src))
    assert proc.returncode == 0, f"pip install of {src} failed:\n{proc.stdout}\n{proc.stderr}"
    _forget_module()
    assert _is_installed()
    try:
        yield
    finally:
        if not was_installed:
            proc = _pip("uninstall", "-y", "-q", DIST)
            assert proc.returncode == 0, proc.stderr
        _forget_module()
        assert was_installed or not _is_installed()


def _plugin():
    return importlib.import_module("yolocc_sparsify.plugin")


def _weights(model: onnx.ModelProto, min_size: int = 1024) -> dict[str, np.ndarray]:
    """Conv/Gemm weight initializers with at least ``min_size`` elements, by name."""
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            if w.size >= min_size:
                out[node.input[1]] = w
    return out


def _zero_fraction(weights: dict[str, np.ndarray]) -> float:
    return sum(int(np.count_nonzero(w == 0)) for w in weights.values()) / sum(w.size for w in weights.values())


def test_passes_lists_sparsify_with_entry_point_provider(cli):
    code, out, _ = cli("passes", "--json")
    assert code == 0
    passes = {p["name"]: p for p in json.loads(out)["passes"]}
    sp = passes["sparsify"]
    assert sp["provider"] == "sparsify" and sp["stage"] == "onnx" and sp["doc"]
    assert [(q["name"], q["type"], q["default"]) for q in sp["params"]] == [("ratio", "float", 0.5),
                                                                           ("min_size", "int", 1024)]
    assert passes["prune"]["provider"] == "yolocc.passes.builtin"  # built-ins still there


def test_registry_has_emitter_and_target_from_plugin():
    from yolocc.compiler.registry import build_registry, get_plugin_manager

    reg = build_registry(get_plugin_manager())
    assert reg.emitters["onnx-gz"].provider == "sparsify"
    assert reg.emitter_for("model.onnx.gz").name == "onnx-gz"
    assert reg.targets["example-edge"].provider == "sparsify" and reg.target("example-edge").doc


def test_cli_compile_reaches_requested_sparsity(cli, cnn_path, tmp_path):
    out, rj = tmp_path / "out.onnx", tmp_path / "r.json"
    code, _, err = cli(cnn_path, "--trust-model", "--imgsz", IMGSZ, "-p", "sparsify:0.5", "-o", out, "--report", rj,
                       "--no-measure")
    assert code == 0, err
    report = json.loads(rj.read_text())
    stage = report["stages"][-1]
    assert stage["name"] == "sparsify" and stage["modified"] is True
    assert abs(stage["changes"]["sparsity"] - 0.5) <= 0.02
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    weights = _weights(model)
    assert len(weights) == stage["changes"]["tensors"] == 3  # three 3x3 convs; stem conv and head are < 1024
    assert abs(_zero_fraction(weights) - 0.5) <= 0.02
    for w in weights.values():  # per tensor, not just overall
        assert abs(np.count_nonzero(w == 0) / w.size - 0.5) <= 0.02
    small = _weights(model, min_size=0)
    assert all(np.count_nonzero(w == 0) == 0 for name, w in small.items() if name not in weights)  # skipped
    assert {p.key: p.value for p in model.metadata_props}["producer"] == "yolocc"  # metadata kept


def test_python_api_with_string_and_pass_object(tmp_path):
    from yolocc.compiler.api import compile_model

    base_out, out = tmp_path / "base.onnx", tmp_path / "s.onnx"
    compile_model(small_cnn(), [], base_out, imgsz=IMGSZ, measure=False)
    result = compile_model(small_cnn(), ["sparsify:ratio=0.3"], out, imgsz=IMGSZ, measure=False)
    changes = result.report.stages[-1].changes
    assert abs(changes["sparsity"] - 0.3) <= 0.02 and changes["tensors"] == 3
    base, sparse = _weights(onnx.load(str(base_out))), _weights(onnx.load(str(out)))
    assert base.keys() == sparse.keys()
    for name, w in sparse.items():  # magnitude pruning: kept weights unchanged, the smallest ones zeroed
        kept = w != 0
        np.testing.assert_array_equal(w[kept], base[name][kept])
        assert np.abs(base[name][~kept]).max() <= np.abs(base[name][kept]).min()

    Sparsify = _plugin().Sparsify
    out2 = tmp_path / "obj.onnx"
    result = compile_model(small_cnn(), [Sparsify(ratio=0.3, min_size=0)], out2, imgsz=IMGSZ, measure=False)
    changes = result.report.stages[-1].changes
    assert changes["tensors"] == 5 and abs(changes["sparsity"] - 0.3) <= 0.02  # now the stem conv and head too
    assert abs(_zero_fraction(_weights(onnx.load(str(out2)), min_size=0)) - 0.3) <= 0.02

    result = compile_model(small_cnn(), [Sparsify(ratio=0.0)], None, imgsz=IMGSZ, measure=False)
    assert result.report.stages[-1].modified is False and result.report.stages[-1].changes["tensors"] == 0


@pytest.mark.parametrize("spec, message", [("sparsify:1.0", "ratio must be < 1.0"),
                                           ("sparsify:-0.1", "ratio must be >= 0.0"),
                                           ("sparsify:min_size=x", "min_size must be an integer")])
def test_bad_arguments_are_usage_errors(cli, cnn_path, tmp_path, spec, message):
    code, _, err = cli(cnn_path, "--trust-model", "--imgsz", IMGSZ, "-p", spec, "-o", tmp_path / "x.onnx",
                       "--no-measure")
    assert code == 2 and message in err and "Traceback" not in err


def test_onnx_gz_emitter_writes_loadable_deterministic_gzip(tmp_path):
    from yolocc.compiler.api import Compiler

    compiler = Compiler()
    dense, a, b = tmp_path / "dense.onnx.gz", tmp_path / "a.onnx.gz", tmp_path / "b.onnx.gz"
    compiler.compile(small_cnn(), [], dense, imgsz=IMGSZ, measure=False)  # torch stage: emitter lowers
    result = compiler.compile(small_cnn(), ["sparsify:0.7"], a, imgsz=IMGSZ, measure=False)
    compiler.compile(small_cnn(), ["sparsify:0.7"], b, imgsz=IMGSZ, measure=False)
    assert a.read_bytes() == b.read_bytes()  # gzip with mtime 0: same bytes every time
    art = result.report.artifact
    assert art["emitter"] == "onnx-gz" and art["compressed_bytes"] == a.stat().st_size == art["size_bytes"]
    for path in (dense, a):
        data = gzip.decompress(path.read_bytes())
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        y = sess.run(None, {name: np.zeros((1, 3, IMGSZ, IMGSZ), np.float32)})[0]
        assert y.shape == (1, 10)
    assert len(gzip.decompress(a.read_bytes())) == art["uncompressed_bytes"]
    assert a.stat().st_size < 0.8 * dense.stat().st_size  # zeros compress
    assert list(tmp_path.glob(".*.tmp")) == []  # atomic write left nothing behind


def test_gz_output_that_is_not_onnx_gz_is_refused(cli, cnn_path, tmp_path):
    code, _, err = cli(cnn_path, "--trust-model", "--imgsz", IMGSZ, "-o", tmp_path / "model.gz", "--no-measure")
    assert code == 2 and "no emitter writes '.gz'" in err and not (tmp_path / "model.gz").exists()


def _qdq_facts(model: onnx.ModelProto) -> dict:
    """What a Q/DQ graph quantized: activation zero-point dtypes, the ops whose outputs are quantized,
    the ops fed by a dequantized activation, and the Conv/Gemm layers whose weights are int8."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    act_dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in
              {q.output[0] for q in quant}}
    fed = {n.op_type for n in model.graph.node if any(i in act_dq for i in n.input)}
    int8 = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] in producer
            and producer[n.input[1]].op_type == "DequantizeLinear"]
    layers = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    return {"zp": {(inits[q.input[2]].dtype.name, bool(inits[q.input[2]].any())) for q in quant},
            "after": {producer[q.input[0]].op_type for q in quant if q.input[0] in producer},
            "fed": fed, "int8": int8, "layers": layers}


def test_example_edge_target_places_its_own_qdq_and_verifies(cli, cnn_path, tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((4, 3, IMGSZ, IMGSZ), dtype=np.float32))
    graphs, reports = {}, {}
    for target in ("example-edge", "ort-cpu"):
        out, rj = tmp_path / f"{target}.onnx", tmp_path / f"{target}.json"
        code, _, err = cli(cnn_path, "--trust-model", "--imgsz", IMGSZ, "-p", "int8", "--calib", calib,
                           "--target", target, "-o", out, "--report", rj, "--no-measure")
        assert code == 0, err
        graphs[target], reports[target] = _qdq_facts(onnx.load(str(out))), json.loads(rj.read_text())
    edge, ort_cpu = graphs["example-edge"], graphs["ort-cpu"]
    # Its scheme: symmetric int8 activations (zero point 0), where ort-cpu uses asymmetric uint8.
    assert edge["zp"] == {("int8", False)} and ("uint8", True) in ort_cpu["zp"]
    # Its placement: Q/DQ only on the inputs of Conv/Gemm, so the residual Add's output stays float
    # (ort-cpu quantizes it, and the outputs of the convs, for its integer kernels).
    assert "Conv" in edge["fed"] and edge["after"] == {"Relu"} and {"Add", "Conv"} <= ort_cpu["after"]
    # Its own rule: the first and the last weighted layer (stem conv, Gemm head) stay float.
    layers = edge["layers"]
    assert len(layers) == 5 and edge["int8"] == layers[1:-1] and layers[-1] in ort_cpu["int8"]
    # Its verify: facts in the report, no rule violations.
    qdq = reports["example-edge"]["stages"][-1]
    assert qdq["name"] == "qdq" and qdq["changes"]["target"] == "example-edge"
    assert qdq["changes"]["edge_int8_layers"] == 3 and qdq["changes"]["edge_float_layers"] == [layers[0], layers[-1]]
    assert qdq["diagnostics"] == [] and "edge_int8_layers" not in reports["ort-cpu"]["stages"][-1]["changes"]


def test_example_edge_verify_reports_violations(tmp_path):
    from yolocc.compiler.api import compile_model

    out = tmp_path / "ort.onnx"
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((4, 3, IMGSZ, IMGSZ), dtype=np.float32))
    compile_model(small_cnn(), ["int8"], out, imgsz=IMGSZ, calib=str(calib), target="ort-cpu", measure=False)
    check = _plugin().ExampleEdgeTarget().verify(onnx.load(str(out)))  # an ort-cpu graph breaks its rules
    assert any("symmetric int8" in p for p in check.problems)
    assert any("only float ops" in p for p in check.problems)  # e.g. the quantized output of the Gemm head
    assert check.facts["edge_int8_layers"] == len(_qdq_facts(onnx.load(str(out)))["int8"])


def test_disable_env_removes_the_plugin(cli, cnn_path, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_DISABLE_PLUGINS", "other, sparsify")
    code, out, _ = cli("passes", "--json")
    names = {p["name"] for p in json.loads(out)["passes"]}
    assert code == 0 and "sparsify" not in names and "prune" in names
    code, _, err = cli(cnn_path, "--trust-model", "--imgsz", IMGSZ, "-p", "sparsify", "-o", tmp_path / "x.onnx",
                       "--no-measure")
    assert code == 2 and "unknown pass 'sparsify'" in err
    from yolocc.compiler.registry import build_registry, get_plugin_manager

    reg = build_registry(get_plugin_manager())
    assert "onnx-gz" not in reg.emitters and "example-edge" not in reg.targets and not reg.broken
    monkeypatch.delenv("YOLOCC_DISABLE_PLUGINS")
    assert "sparsify" in build_registry(get_plugin_manager()).passes


BROKEN = "yolocc_broken_example_plugin"


def _broken_plugin(root: Path) -> None:
    """A distribution with an entry point in group ``yolocc`` whose module raises ImportError."""
    (root / f"{BROKEN}.py").write_text("raise ImportError('needs the_missing_sdk')\n")
    info = root / f"{BROKEN}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {BROKEN}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[yolocc]\nbroken-example = {BROKEN}\n")


def test_broken_plugin_is_skipped_and_named(cli, tmp_path, monkeypatch, caplog):
    from yolocc.compiler.errors import PipelineError
    from yolocc.compiler.registry import build_registry, get_plugin_manager

    _broken_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    reg = build_registry(get_plugin_manager())
    assert {"prune", "fuse-bn", "simplify", "int8"} <= set(reg.passes)  # built-ins survive
    assert "sparsify" in reg.passes  # so do the plugins that do load
    assert "ImportError" in reg.broken["broken-example"] and "the_missing_sdk" in reg.broken["broken-example"]
    assert "broken-example" in caplog.text and "YOLOCC_DISABLE_PLUGINS" in caplog.text
    with pytest.raises(PipelineError, match="unknown pass 'nope'.*failed to load: broken-example"):
        reg.pass_class("nope")
    assert BROKEN not in sys.modules

    code, out, _ = cli("passes", "--json")
    assert code == 0 and "broken-example" in json.loads(out)["broken_plugins"]

    monkeypatch.setenv("YOLOCC_DISABLE_PLUGINS", "broken-example")  # the warning's advice works
    assert build_registry(get_plugin_manager()).broken == {}


DIGITS_DIR = Path(__file__).resolve().parents[2] / "examples" / "digits"
DIGITS_YAML = DIGITS_DIR / "data" / "digits.yaml"
needs_digits = pytest.mark.skipif(not DIGITS_YAML.exists(), reason="the digits fixture is generated by make")


def test_strategies_lists_the_plugins_strategy(cli):
    code, out, err = cli("strategies", "--json")
    assert code == 0, err
    entries = {e["name"]: e for e in json.loads(out)["strategies"]}
    assert entries["uniform"]["provider"] == "sparsify-search" and entries["ladder"]["provider"] == "yolocc.strategies.builtin"


@needs_digits
def test_accuracy_is_measured_on_the_third_party_targets_runtime():
    """example-edge's runtime has no native artifact: --data accuracy runs through its own sessions
    (its image counter moves by the val split's size), and agrees with onnxruntime's own backend."""
    from yolocc.compiler.api import Compiler

    compiler = Compiler()
    kwargs = dict(data=str(DIGITS_YAML), latency_runs=0)
    runtime = compiler.target("example-edge")[1]
    before = runtime.images
    edge = compiler.compile(str(DIGITS_DIR / "weights/yolov8n-digits.pt"), [], None, target="example-edge", **kwargs)
    val_images = len(list((DIGITS_DIR / "data/val/images").glob("*.png")))
    assert runtime.images - before >= val_images
    assert edge.report.latency == {} or "example-edge" in edge.report.latency.get("runtime", "")
    ort_cpu = compiler.compile(str(DIGITS_DIR / "weights/yolov8n-digits.pt"), [], None, **kwargs)
    assert abs(edge.report.stages[0].metrics["mAP50-95"] - ort_cpu.report.stages[0].metrics["mAP50-95"]) < 0.002


@needs_digits
def test_the_plugins_strategy_runs_the_budget(cli, tmp_path, tiny_digits):
    """`--search uniform` (one file in the plugin, nothing in yolocc changed) runs its trials and picks one
    (on the tiny copy of the digits data, whose 16 val images make any drop noise: a wide budget)."""
    out, rj = tmp_path / "m.onnx", tmp_path / "r.json"
    code, _, err = cli(DIGITS_DIR / "weights/yolov8n-digits.pt", "--max-drop", "50", "--search", "uniform",
                       "--data", tiny_digits / "digits.yaml", "--calib", tiny_digits / "calib/images", "--calib-n", "16",
                       "-o", out, "--report", rj, "--latency-runs", "2")
    assert code == 0, err
    b = json.loads(rj.read_text())["budget"]
    assert b["search"] == "uniform" and b["met"] and out.exists()
    assert [c["name"] for c in b["candidates"]] == ["input", "int8", "prune:0.1 + int8", "prune:0.2 + int8"]
    within = [c for c in b["candidates"][1:] if c["within"]]
    assert b["final"]["name"] == min(within, key=lambda c: c["macs"])["name"]

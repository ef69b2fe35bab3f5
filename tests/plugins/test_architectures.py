"""Architectures from the wild: the stock P2/P6 variants prune with correct channel coupling, RT-DETR
loads, quantizes with its decoder float and refuses what it cannot do at plan time, and TensorRT's
placement follows its rules inside attention blocks (YOLO11 C2PSA, YOLOv10 PSA/SCDown)."""

import json

import numpy as np
import onnx
import pytest
import torch

from yolocc.compiler.options import CompileOptions
from yolocc.compiler.torchgraph import flatten_outputs

#: Stock Ultralytics P2/P6 variants (Ultralytics 8.4 ships no YOLO11 P2/P6 YAML).
VARIANTS = ["yolov8n-p2.yaml", "yolov8n-p6.yaml", "yolov5n-p6.yaml", "yolo26n-p2.yaml", "yolo26n-p6.yaml",
            "yolov8n-seg-p6.yaml", "yolov8n-pose-p6.yaml"]


def _outputs(module, x):
    with torch.no_grad():
        return [t.clone() for t in flatten_outputs(module(x))]


@pytest.mark.parametrize("yaml", VARIANTS)
def test_p2_p6_variants_canonicalize_exactly_and_prune(compiler, yaml):
    ir = compiler.load(yaml, 128)
    x = ir.example_inputs()
    ref = _outputs(ir.module, x)
    params = ir.param_count()
    compiler.apply(ir, ["canonicalize"], CompileOptions())
    canon = _outputs(ir.module, x)
    assert max(float((a - b).abs().max() / (a.abs().max() + 1e-9)) for a, b in zip(ref, canon)) < 1e-5
    compiler.apply(ir, ["prune:0.25"], CompileOptions())
    pruned = _outputs(ir.module, x)  # runs: every pruned conv still fits its neighbours
    assert [t.shape for t in pruned] == [t.shape for t in ref] and ir.param_count() < 0.8 * params
    # and it goes back to stock Ultralytics blocks for a portable .pt (C2Split -> C2, C2fSplit -> C2f ...)
    import copy

    from yolocc.plugins.ultralytics_canonical import decanonicalize

    stock = copy.deepcopy(ir.module)
    decanonicalize(stock)
    assert not [type(m).__name__ for m in stock.modules() if type(m).__module__.startswith("yolocc")]
    assert max(float((a - b).abs().max()) for a, b in zip(pruned, _outputs(stock, x))) < 1e-4


def test_v8_p6_head_c2_blocks_are_split_for_pruning(compiler):
    """YOLOv8-P6's head uses C2, whose cv1(x).chunk(2) torch-pruning coupled wrongly (96 against 72
    channels): canonicalize rewrites it into two convolutions, as it does C2f."""
    ir = compiler.load("yolov8n-p6.yaml", 128)
    result = compiler.apply(ir, ["canonicalize"], CompileOptions())
    assert {type(m).__name__ for m in ir.module.modules()} >= {"C2Split", "C2fSplit"}
    assert "C2" not in {type(m).__name__ for m in ir.module.modules()} and result is not None


def test_rtdetr_yaml_loads_and_exports(cli, tmp_path):
    out = tmp_path / "rt.onnx"
    code, _, err = cli("rtdetr-l.yaml", "--imgsz", "160", "--no-measure", "-o", out)
    assert code == 0, err
    from yolocc.plugins.ort_runtime import OrtSession

    y = OrtSession(out.read_bytes()).run(np.zeros((1, 3, 160, 160), np.float32))
    (shape,) = [v.shape for v in y.values()]
    assert shape[:2] == (1, 300)  # 300 queries: boxes and class scores


@pytest.mark.parametrize("pass_", ["prune:0.25", "sensitivity"])
def test_rtdetr_refuses_channel_graph_passes_at_plan_time(cli, tmp_path, pass_, calib_dir):
    out = tmp_path / "rt.onnx"
    code, _, err = cli("rtdetr-l.yaml", "--imgsz", "160", "-p", pass_, "--calib", calib_dir, "--no-measure", "-o", out)
    line = err.strip()
    assert code == 2 and "\n" not in line and not out.exists()
    assert f"pass '{pass_.split(':')[0]}' cannot run on 'rtdetr-l.yaml': torch-pruning cannot trace" in line


def test_rtdetr_fuse_bn_is_exact_without_a_dependency_graph(compiler):
    """fuse-bn folds Ultralytics' own Conv blocks when torch-pruning cannot trace the model. Compared on
    the features the decoder reads (its top-k query selection turns 1e-7 differences into other queries)."""
    ir = compiler.load("rtdetr-l.yaml", 160)
    x = ir.example_inputs()

    def features(module):
        seen = []
        hooks = [module.model[i].register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
                 for i in module.model[-1].f]
        try:
            _outputs(module, x)
        finally:
            for h in hooks:
                h.remove()
        return seen

    ref = features(ir.module)
    result = compiler.compile(ir, ["fuse-bn"], None, measure=False)
    fuse = next(s for s in result.report.stages if s.name == "fuse-bn")
    assert fuse.changes["pairs_from"] == "frontend blocks" and fuse.changes["folded"] > 50
    out = features(result.ir.module)
    assert max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(ref, out)) < 1e-4


def test_rtdetr_int8_keeps_the_decoder_float(compiler, calib_dir, tmp_path):
    from yolocc.compiler import lowering
    from yolocc.compiler.measure import fidelity
    from yolocc.plugins.ort_runtime import OrtSession

    fp32 = compiler.load("rtdetr-l.yaml", 160)
    ref_bytes = lowering.onnx_bytes(fp32)
    res = compiler.compile("rtdetr-l.yaml", ["int8:method=minmax"], None, imgsz=160, calib=str(calib_dir),
                           measure=False, cache_dir=str(tmp_path / "cache"))
    model = res.ir.onnx_model
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    weighted = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1]
    decoder = [n for n in weighted if n.name.startswith("/model.28/")]
    assert decoder and not any(n.input[1] in dq_out for n in decoder)  # decoder weights stay float
    assert sum(n.input[1] in dq_out for n in weighted) > 50  # the backbone and encoder are int8
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    fid = fidelity(OrtSession(ref_bytes).run(x), OrtSession(model.SerializeToString()).run(x), None)
    assert fid["output0"]["cosine"] > 0.99


@pytest.mark.parametrize("yaml", ["yolo11n.yaml", "yolov10n.yaml"])
def test_tensorrt_placement_follows_its_rules_in_attention_blocks(cli, tmp_path, calib_dir, yaml):
    from yolocc.plugins.tensorrt_check import check_tensorrt_qdq

    out, rj = tmp_path / "m.onnx", tmp_path / "r.json"
    code, _, err = cli(yaml, "--imgsz", "160", "-p", "int8:method=minmax", "--target", "tensorrt", "--calib",
                       calib_dir, "--no-measure", "-o", out, "--report", rj)
    assert code == 0, err
    model = onnx.load(str(out))
    assert check_tensorrt_qdq(model) == []
    qdq = next(s for s in json.loads(rj.read_text())["stages"] if s["name"] == "qdq")
    assert qdq["changes"]["tensorrt_rule_violations"] == 0
    if yaml == "yolo11n.yaml":  # C2PSA: the residual Adds after the attention's projection convs
        producer = {o: n for n in model.graph.node for o in n.output}
        adds = [n for n in model.graph.node if n.op_type == "Add" and n.name.startswith("/model.10/")
                and any(producer.get(i) is not None and producer[i].op_type == "Conv" for i in n.input)]
        assert adds  # fused Conv+Add: the raw conv input stays float, the residual input is quantized
        assert all(any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)
                   for n in adds)

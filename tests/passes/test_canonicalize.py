import pytest
import torch

from yolocc.passes.canonicalize import Canonicalize
from yolocc.plugins.ultralytics_canonical import C2fSplit
from tests.conftest import IMGSZ, pass_ctx, small_cnn


def _max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


@pytest.mark.parametrize("cfg, expected", [("yolov8n.yaml", 8), ("yolo11n.yaml", 8), ("yolov8n-seg.yaml", 8)])
def test_c2f_split_is_exact(compiler, cfg, expected):
    ir = compiler.load(cfg, IMGSZ)
    x = ir.example_inputs().double()
    ir.module.double()
    with torch.no_grad():
        before = ir.module(x)
    result = Canonicalize()(ir, pass_ctx(ir))
    assert result.modified and result.changes["rewrites"]["C2f->C2fSplit"] == expected
    assert result.changes["rewrites"]["DFL->DFLMatMul"] == 1
    assert sum(isinstance(m, C2fSplit) for m in ir.module.modules()) == expected
    with torch.no_grad():
        after = ir.module(x)
    before = before if isinstance(before, (list, tuple)) else [before]
    after = after if isinstance(after, (list, tuple)) else [after]
    for b, a in zip(before, after):
        assert _max_rel_err(b, a) < 1e-12  # float64: identical up to rounding


def test_float32_error_is_small(compiler):
    ir = compiler.load("yolov8n.yaml", IMGSZ)
    x = ir.example_inputs()
    with torch.no_grad():
        before = ir.module(x)
    Canonicalize()(ir, pass_ctx(ir))
    with torch.no_grad():
        after = ir.module(x)
    assert _max_rel_err(before, after) < 1e-4


def test_noop_on_plain_cnn(compiler):
    ir = compiler.load(small_cnn(), 32)
    result = Canonicalize()(ir, pass_ctx(ir))
    assert not result.modified and result.changes == {"rewrites": {}}
    assert ir.analyses["canonical"] is True


def test_takes_no_arguments():
    from yolocc.compiler.errors import UsageError

    with pytest.raises(UsageError, match="has no argument 'x'"):
        Canonicalize(x=1)


def test_exported_head_has_no_transpose_into_the_dfl(compiler):
    """The canonical head exports the box branch anchor-major and the DFL as softmax + one MatMul: same
    outputs as Ultralytics' graph, and no Transpose between the box convolutions and the DFL."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from yolocc.compiler import lowering

    ir = compiler.load("yolov8n.yaml", IMGSZ)
    before = lowering.onnx_bytes(ir)
    result = Canonicalize()(ir, pass_ctx(ir))
    assert result.changes["rewrites"]["Detect->DetectAnchorMajor"] == 1
    after = lowering.onnx_bytes(ir)
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    ref, out = (ort.InferenceSession(m).run(None, {"images": x})[0] for m in (before, after))
    assert float(np.abs(ref - out).max() / np.abs(ref).max()) < 1e-5
    nodes = onnx.load_from_string(after).graph.node
    producer = {o: n for n in nodes for o in n.output}
    softmax = next(n for n in nodes if n.op_type == "Softmax")
    assert softmax.attribute[0].i == -1 and any(n.op_type == "MatMul" for n in nodes)
    src, chain = softmax.input[0], []
    while src in producer and producer[src].op_type != "Conv":
        chain.append(producer[src].op_type)
        src = producer[src].input[0]
    # one Transpose per level, NCHW -> NHWC, which cancels against onnxruntime's own NHWC layout
    assert "Softmax" not in chain and chain.count("Transpose") <= 1


def test_canonical_head_leaves_export_mode_switchable(compiler):
    """Training turns the head's export mode off: the rewritten head must follow, or the trainer's
    validation gets the inference tensor where it needs the raw outputs."""
    from yolocc.plugins.ultralytics_frontend import set_export_mode

    ir = compiler.load("yolov8n.yaml", IMGSZ)
    Canonicalize()(ir, pass_ctx(ir))
    head = ir.module.model[-1]
    set_export_mode(ir.module, False)
    assert head.export is False and isinstance(ir.module(ir.example_inputs()), tuple)
    set_export_mode(ir.module, True)
    assert head.export is True


def test_openvino_dfl_is_a_softmax_and_weighted_sum_over_the_bins_axis(compiler):
    """On a target with only the bins-axis capability (OpenVINO) the DFL becomes a softmax over the
    bins where they lie and a weighted sum: same outputs (float64), no Transpose and no Conv or MatMul
    after the softmax in the exported graph, and ``decanonicalize`` gives Ultralytics' DFL back."""
    import onnx
    from ultralytics.nn.modules.block import DFL

    from yolocc.compiler import lowering
    from yolocc.compiler.target import Capability
    from yolocc.plugins.ultralytics_canonical import DFLBinsAxis, decanonicalize

    ir = compiler.load("yolov8n.yaml", IMGSZ)
    x = ir.example_inputs().double()
    ir.module.double()
    with torch.no_grad():
        before = ir.module(x)
    counts = compiler.frontend_of(ir).canonicalize(ir, frozenset({Capability.BINS_AXIS_SOFTMAX_SUM}))
    assert counts["DFL->DFLBinsAxis"] == 1 and "DFL->DFLMatMul" not in counts
    assert isinstance(ir.module.model[-1].dfl, DFLBinsAxis)
    with torch.no_grad():
        after = ir.module(x)
    assert _max_rel_err(before[0] if isinstance(before, tuple) else before,
                        after[0] if isinstance(after, tuple) else after) < 1e-12
    ir.module.float()
    nodes = onnx.load_from_string(lowering.onnx_bytes(ir)).graph.node
    consumers: dict = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    softmax = next(n for n in nodes if n.op_type == "Softmax")
    downstream, frontier = [], list(softmax.output)
    while frontier and len(downstream) < 4:
        nxt = [c for t in frontier for c in consumers.get(t, [])]
        downstream += [c.op_type for c in nxt]
        frontier = [o for c in nxt for o in c.output]
    assert downstream[:2] == ["Mul", "ReduceSum"] and not {"Conv", "MatMul", "Transpose"} & set(downstream[:2])
    assert not any(n.op_type == "Transpose" and "dfl" in n.name for n in nodes)
    assert decanonicalize(ir.module)["DFLBinsAxis->DFL"] == 1 and type(ir.module.model[-1].dfl) is DFL

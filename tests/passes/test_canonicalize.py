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
    assert result.changes["rewrites"]["DFL->DFLLastAxis"] == 1
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

import pytest
import torch
import torch.nn as nn

from yolocc.passes.fuse_bn import FuseBN
from tests.conftest import IMGSZ, pass_ctx, small_cnn


@pytest.mark.parametrize("source, imgsz", [("cnn", 64), ("yolov8n.yaml", IMGSZ)])
def test_fold_is_equivalent_and_removes_bn(compiler, source, imgsz):
    ir = compiler.load(small_cnn() if source == "cnn" else source, imgsz)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in ir.module.modules())
    x = ir.example_inputs()
    with torch.no_grad():
        before = ir.module(x)
    result = FuseBN()(ir, pass_ctx(ir))
    assert result.modified and result.changes["folded"] == n_bn
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ir.module.modules())
    with torch.no_grad():
        after = ir.module(x)
    assert float((before - after).abs().max() / before.abs().max()) < 1e-5


def test_noop_without_batchnorm(compiler):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    model(torch.rand(1, 3, 16, 16))
    ir = compiler.load(model, 16)
    assert not FuseBN()(ir, pass_ctx(ir)).modified


def test_bn_with_two_consumers_is_left_alone(compiler):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.other = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + self.other(y)

    ir = compiler.load(Branchy().eval(), 16)
    assert not FuseBN()(ir, pass_ctx(ir)).modified


def test_rejects_arguments():
    from yolocc.compiler.errors import UsageError

    with pytest.raises(UsageError):
        FuseBN("1")

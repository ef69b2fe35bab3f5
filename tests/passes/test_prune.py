import pytest
import torch
import torch.nn as nn

from yolocc.compiler.errors import UsageError
from yolocc.passes.canonicalize import Canonicalize
from yolocc.passes.prune import Prune
from tests.conftest import IMGSZ, pass_ctx


@pytest.fixture
def prepared(load_ir):
    def prep(source, imgsz=IMGSZ):
        ir = load_ir(source, imgsz)
        Canonicalize()(ir, pass_ctx(ir))
        return ir
    return prep


def _outputs(ir):
    from yolocc.compiler.torchgraph import flatten_outputs

    with torch.no_grad():
        return [tuple(t.shape) for t in flatten_outputs(ir.module(ir.example_inputs()))]


def _conv_out(ir):
    return {n: m.out_channels for n, m in ir.module.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("source, min_reduction", [
    ("yolov8n.yaml", 0.30), ("yolov8s.yaml", 0.30), ("yolov8n-cls.yaml", 0.10),
    ("yolo11n.yaml", 0.25), ("cnn", 0.30)])
def test_prune_reduces_params_keeps_outputs(prepared, source, min_reduction):
    ir = prepared(source, 64 if source == "cnn" else IMGSZ)
    shapes = _outputs(ir)
    result = Prune(ratio=0.25)(ir, pass_ctx(ir))
    assert result.modified
    assert result.changes["param_reduction"] >= min_reduction
    assert result.changes["params_after"] == ir.param_count()
    assert _outputs(ir) == shapes


def test_head_is_protected_and_round_to_holds(prepared):
    ir = prepared("yolov8n.yaml")
    head_before = {n: c for n, c in _conv_out(ir).items() if n.startswith("model.22.")}
    Prune(ratio=0.25, round_to=8)(ir, pass_ctx(ir))
    after = _conv_out(ir)
    assert {n: after[n] for n in head_before} == head_before
    pruned = [c for n, c in after.items() if not n.startswith("model.22.") and c > 8]
    assert all(c % 8 == 0 for c in pruned)


def test_unprotected_head_prunes_inner_convs_only(prepared):
    ir = prepared("yolov8n.yaml")
    before = _conv_out(ir)
    Prune(ratio=0.25, protect_head=False)(ir, pass_ctx(ir))
    after = _conv_out(ir)
    assert after["model.22.cv3.0.0.conv"] < before["model.22.cv3.0.0.conv"]
    assert after["model.22.cv3.0.2"] == before["model.22.cv3.0.2"]  # class logits stay
    assert after["model.22.cv2.0.2"] == before["model.22.cv2.0.2"]  # box distributions stay


def _distinct_bn(ir) -> None:
    """Give every BatchNorm distinct scales (a fresh model's are all 1, so "bn" would tie everywhere)."""
    gen = torch.Generator().manual_seed(1)
    for m in ir.module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.1


def test_each_importance_criterion_keeps_different_channels(prepared):
    """Same model, same ratio: every criterion keeps a different set of channels than ``random`` and
    than each other (compared through the kept weights of every conv, which share one init)."""
    kept = {}
    for imp in ("l1", "l2", "bn", "random"):
        ir = prepared("yolov8n.yaml")
        _distinct_bn(ir)
        assert Prune(ratio=0.5, importance=imp)(ir, pass_ctx(ir)).changes["layers_pruned"] > 0
        kept[imp] = {n: m.weight.detach().clone() for n, m in ir.module.named_modules() if isinstance(m, nn.Conv2d)}
    shapes = {imp: {n: w.shape for n, w in convs.items()} for imp, convs in kept.items()}
    assert all(s == shapes["random"] for s in shapes.values())  # same ratio: same shapes
    names = sorted(kept)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            differing = [n for n in kept[a] if not torch.equal(kept[a][n], kept[b][n])]
            assert differing, f"importance {a} and {b} kept the same channels everywhere"


def test_ratio_zero_is_noop(prepared):
    ir = prepared("yolov8n.yaml")
    before = ir.param_count()
    result = Prune(ratio=0.0)(ir, pass_ctx(ir))
    assert not result.modified and ir.param_count() == before


def test_per_layer_yaml(prepared, tmp_path):
    layers = tmp_path / "ratios.yaml"
    layers.write_text("# layer index: ratio\n2: 0.5\n22: [0.0, 0.5]\n")
    ir = prepared("yolov8n.yaml")
    before = _conv_out(ir)
    result = Prune(ratio=0.0, layers=str(layers))(ir, pass_ctx(ir))
    after = _conv_out(ir)
    assert result.modified
    assert after["model.2.cv2.conv"] == before["model.2.cv2.conv"] // 2
    assert after["model.4.cv2.conv"] == before["model.4.cv2.conv"]  # not listed, global ratio 0
    assert after["model.22.cv3.0.0.conv"] < before["model.22.cv3.0.0.conv"]  # classification branch
    assert after["model.22.cv2.0.0.conv"] == before["model.22.cv2.0.0.conv"]  # regression ratio 0
    assert after["model.22.cv3.0.2"] == before["model.22.cv3.0.2"]


@pytest.mark.parametrize("text, message", [
    ("99: 0.2\n", "layer 99 does not exist"),
    ("2: 1.2\n", r"must be in \[0, 1\)"),
    ("2: [0.1, 0.2]\n", "only the head"),
    ("x: 0.1\n", "not a layer index"),
    ("- 0.1\n", "must map layer indices"),
    ("2: [\n", "cannot read"),
])
def test_bad_layer_yaml(prepared, tmp_path, text, message):
    layers = tmp_path / "ratios.yaml"
    layers.write_text(text)
    ir = prepared("yolov8n.yaml")
    with pytest.raises(UsageError, match=message):
        Prune(layers=str(layers))(ir, pass_ctx(ir))


def test_layer_yaml_needs_ultralytics_model(prepared, tmp_path):
    layers = tmp_path / "ratios.yaml"
    layers.write_text("0: 0.5\n")
    ir = prepared("cnn", 64)
    with pytest.raises(UsageError, match="frontend names its layers and head"):
        Prune(layers=str(layers))(ir, pass_ctx(ir))


@pytest.mark.parametrize("kwargs", [{"ratio": 1.0}, {"ratio": "abc"}, {"importance": "l7"},
                                    {"round_to": 0}, {"layers": "/no/such.yaml"}, {"depth": 3}])
def test_bad_arguments(kwargs):
    with pytest.raises(UsageError):
        Prune(**kwargs)


def test_requires_canonical_form(load_ir):
    from yolocc.compiler.errors import PipelineError

    ir = load_ir("yolov8n.yaml")
    with pytest.raises(PipelineError, match="requires analysis canonical"):
        Prune()(ir, pass_ctx(ir))

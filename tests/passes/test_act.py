"""act: SiLU swapped for an int8-friendly activation; the teacher stays SiLU; onnxruntime folds the ReLU."""

import logging

import onnx
import pytest
import torch
import torch.nn as nn

from yolocc.compiler.errors import UsageError
from yolocc.compiler.options import CompileOptions
from yolocc.passes.act import Act
from yolocc.passes.canonicalize import Canonicalize
from yolocc.passes.finetune import Distill
from yolocc.passes.prune import Prune
from tests.conftest import IMGSZ, pass_ctx


def _silu_refs(module):
    return sum(type(c) is nn.SiLU for m in module.modules() for c in m.children())


@pytest.mark.parametrize("to, cls", [("relu", nn.ReLU), ("relu6", nn.ReLU6), ("hardswish", nn.Hardswish)])
def test_swaps_every_silu_of_a_yolo_model(load_ir, to, cls):
    from ultralytics.nn.modules.conv import Conv

    ir = load_ir("yolov8n.yaml")
    n = _silu_refs(ir.module)
    assert n > 50  # every Conv block refers to the one class-level SiLU
    result = Act(to=to)(ir, pass_ctx(ir))
    assert result.modified and result.changes["replaced"] == n
    assert _silu_refs(ir.module) == 0
    assert any(type(m) is cls for m in ir.module.modules())
    assert type(Conv.default_act) is nn.SiLU  # models built later keep SiLU
    assert _silu_refs(ir.analyses["pre_prune"]) == n  # the teacher is the SiLU model
    assert ir.module(ir.example_inputs()).shape == ir.analyses["pre_prune"](ir.example_inputs()).shape


def test_plain_torch_model_changes_function(compiler):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.SiLU(), nn.Conv2d(8, 8, 3), nn.SiLU()).eval()
    ir = compiler.load(model, 16)
    x = ir.example_inputs()
    before = ir.module(x).detach()
    assert Act()(ir, pass_ctx(ir)).changes["replaced"] == 2
    assert not torch.allclose(before, ir.module(x))
    assert torch.equal(ir.module(x), torch.relu(ir.module(x)))  # ends in a ReLU now


def test_noop_without_silu(load_ir):
    ir = load_ir("cnn", 64)
    result = Act()(ir, pass_ctx(ir))
    assert not result.modified and "pre_prune" not in ir.analyses


def test_bad_argument():
    with pytest.raises(UsageError):
        Act(to="gelu")


def test_distill_teacher_is_the_silu_model_before_act_and_prune(compiler):
    ir = compiler.load("yolov8n.yaml", IMGSZ)
    ctx = compiler.apply(ir, ["act", "prune:0.25"], CompileOptions())
    teacher = Distill().teacher(ir, ctx)
    assert _silu_refs(teacher) > 50 and _silu_refs(ir.module) == 0


def test_warns_when_no_recovery_follows(compiler, caplog, tmp_path):
    ir = compiler.load("yolov8n.yaml", IMGSZ)
    opts = CompileOptions(data=str(tmp_path / "data.yaml"))
    with caplog.at_level(logging.WARNING, logger="yolocc"):
        compiler.apply(ir, ["act"], opts)
    assert any("no finetune/distill follows it" in r.getMessage() for r in caplog.records)
    caplog.clear()
    plan = compiler.plan(compiler.load("yolov8n.yaml", IMGSZ), ["act", "distill:epochs=1"])
    assert [s.pass_.name for s in plan] == ["act", "distill"] and plan[-1].pass_.recovers


def test_prune_opens_the_head_only_when_recovery_follows(load_ir):
    def head_channels(ir):
        return sum(m.out_channels for m in ir.module.model[-1].modules() if isinstance(m, nn.Conv2d))

    alone, before_recovery = load_ir("yolov8n.yaml"), load_ir("yolov8n.yaml")
    for ir in (alone, before_recovery):
        Canonicalize()(ir, pass_ctx(ir))
    full = head_channels(alone)
    r1 = Prune(0.25)(alone, pass_ctx(alone))
    ctx = pass_ctx(before_recovery)
    ctx.upcoming = (Distill(),)
    r2 = Prune(0.25)(before_recovery, ctx)
    assert r1.changes["protect_head"] is True and head_channels(alone) == full
    assert r2.changes["protect_head"] is False and head_channels(before_recovery) < full


@pytest.fixture
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.usefixtures("_cache")
@pytest.mark.parametrize("to, folded", [("relu", True), ("relu6", True), ("hardswish", False)])
def test_int8_folds_relu_into_qlinearconv(compiler, tmp_path, calib_dir, to, folded):
    out = tmp_path / "q.onnx"
    res = compiler.compile("yolov8n.yaml", [f"act:to={to}", "int8"], out, imgsz=IMGSZ, calib=str(calib_dir),
                           measure=False)
    fusion = res.report.stages[-1].changes["ort_fusion"]
    assert fusion["qlinear_convs"] == fusion["convs"] - 1
    left = fusion["activations_after"]
    if folded:  # only the tail's class sigmoid is left: no Relu/Clip, no QLinearSigmoid pairs
        assert left == {"Sigmoid": 1}
    else:
        assert sum(left.values()) > 50
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    relus = [n for n in model.graph.node if n.op_type in ("Relu", "Clip") and not n.name.startswith("/model.0/")]
    assert all(producer[n.input[0]].op_type == "Conv" for n in relus)  # no Q/DQ between conv and ReLU


@pytest.mark.usefixtures("_cache")
def test_silu_int8_still_runs_qlinear_sigmoid(compiler, tmp_path, calib_dir):
    res = compiler.compile("yolov8n.yaml", ["int8"], tmp_path / "q.onnx", imgsz=IMGSZ, calib=str(calib_dir),
                           measure=False)
    assert res.report.stages[-1].changes["ort_fusion"]["activations_after"].get("QLinearSigmoid", 0) > 50


@pytest.mark.parametrize("recipe, target", [("cpu-fast", "ort-cpu"), ("openvino-fast", "openvino")])
def test_fast_recipes_plan_act_before_recovery(compiler, recipe, target):
    from pathlib import Path

    from yolocc.compiler.recipe import load_recipe

    specs, options = load_recipe(Path(__file__).resolve().parents[2] / f"examples/recipes/{recipe}.yaml")
    plan = compiler.plan(compiler.load("yolov8n.yaml", IMGSZ), specs)
    names = [s.pass_.name for s in plan if s.kind == "pass"]
    assert names.index("act") < names.index("prune") < names.index("distill") < names.index("qdq")
    prune = next(s.pass_ for s in plan if s.kind == "pass" and s.pass_.name == "prune")
    assert prune.args["protect_head"] == "auto" and options["target"] == target


@pytest.mark.parametrize("raw, value", [("auto", "auto"), ("false", False), ("true", True), (False, False)])
def test_protect_head_takes_bool_or_auto(raw, value):
    assert Prune(protect_head=raw).args["protect_head"] == value


def test_protect_head_rejects_other_words():
    with pytest.raises(UsageError, match="true or false or auto"):
        Prune(protect_head="maybe")

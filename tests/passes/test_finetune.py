"""finetune: argument and input checks (fast) and a real short training run (slow)."""

import pytest

from yolocc.compiler.errors import PassError, UsageError
from yolocc.passes.finetune import Finetune
from tests.conftest import IMGSZ, pass_ctx

DIGITS = "examples/digits/data/digits.yaml"
DETECTOR = "examples/digits/weights/yolov8n-digits.pt"


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"lr": 0}, {"batch": "x"}, {"bogus": 1}, {"optimizer": "Lion"},
                                    {"clip": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(UsageError):
        Finetune(**kwargs)


@pytest.mark.parametrize("max_norm", [1.0, 10.0])
def test_trainer_clips_gradients_at_the_given_norm(max_norm):
    import torch

    from yolocc.plugins.ultralytics_training import trainer_class

    model = torch.nn.Linear(8, 8)
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)  # global norm ~ 270
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    norms = []
    step = optimizer.step
    optimizer.step = lambda *a, **k: (norms.append(float(torch.nn.utils.get_total_norm(
        [p.grad for p in model.parameters()]))), step(*a, **k))[1]
    fake = type("FakeTrainer", (), {})()
    fake.model, fake.ema, fake.optimizer = model, None, optimizer
    fake.scaler = torch.amp.GradScaler("cpu", enabled=False)
    trainer_class("classify", max_norm).optimizer_step(fake)
    assert norms == [pytest.approx(max_norm, rel=1e-4)]


@pytest.mark.parametrize("model, spec, expected", [
    ("yolov8n-cls.yaml", {}, ("Adam", 1.0)),              # the seed paper's recipe for classifiers
    ("yolov8n.yaml", {}, ("AdamW", 10.0)),                # Ultralytics' own for detection
    ("yolov8n-cls.yaml", {"optimizer": "SGD", "clip": 3.0}, ("SGD", 3.0)),
])
def test_optimizer_defaults_follow_the_task(load_ir, monkeypatch, model, spec, expected):
    from yolocc.plugins import ultralytics_training

    seen = []

    def fake_train(module, task, data, overrides, teacher=None, max_grad_norm=None, **kw):
        seen.append((overrides["optimizer"], max_grad_norm))
        return module, {}

    monkeypatch.setattr(ultralytics_training, "train", fake_train)
    ir = load_ir(model, 64)
    Finetune(epochs=1, **spec).call(ir, pass_ctx(ir, data="d.yaml"))
    assert seen == [expected]


@pytest.mark.parametrize("passes", [["finetune"], ["prune:0.25", "distill"]])
def test_needs_data_before_any_pass_runs(compiler, tmp_path, monkeypatch, passes):
    from yolocc.passes.prune import Prune

    ran = []
    monkeypatch.setattr(Prune, "call", lambda self, ir, ctx: ran.append("prune"))
    with pytest.raises(UsageError, match=f"{passes[-1]} trains on a dataset .*: pass --data"):
        compiler.compile("yolov8n.yaml", passes, tmp_path / "x.onnx", imgsz=IMGSZ, measure=False)
    assert ran == [] and not (tmp_path / "x.onnx").exists()


def test_needs_ultralytics_model(compiler, tmp_path, cnn_path):
    (tmp_path / "d.yaml").write_text("train: x\nval: x\nnames: {0: a}\n")
    with pytest.raises(UsageError, match="frontend cannot train models"):  # at plan time
        compiler.compile(cnn_path, ["finetune"], tmp_path / "x.onnx", imgsz=64, trust_model=True, data=str(tmp_path / "d.yaml"))


@pytest.mark.slow
def test_one_epoch_recovers_some_pruned_accuracy(compiler, tmp_path):
    import os

    if not os.path.exists(DIGITS):
        pytest.skip("run examples/digits/make_dataset.py first (make demo does)")
    res = compiler.compile(DETECTOR, ["prune:0.25", "finetune:epochs=1"], tmp_path / "ft.onnx", data=DIGITS,
                           latency_runs=1)
    maps = {s.name: s.metrics["mAP50-95"] for s in res.report.stages}
    assert maps["finetune"] > maps["prune"] + 0.03


@pytest.mark.parametrize("kwargs", [{"T": 0}, {"kd": -1}, {"teacher": "/no/such.pt"}])
def test_distill_bad_arguments(kwargs):
    from yolocc.passes.finetune import Distill

    with pytest.raises(UsageError):
        Distill(**kwargs)


def test_distill_needs_a_teacher(compiler, tmp_path):
    (tmp_path / "d.yaml").write_text("train: x\nval: x\nnames: {0: a}\n")
    with pytest.raises(PassError, match="distill needs a teacher: run it after prune"):
        compiler.compile("yolov8n.yaml", ["distill"], tmp_path / "x.onnx", imgsz=IMGSZ, data=str(tmp_path / "d.yaml"),
                         measure=True, latency_runs=0)


def test_distill_refuses_a_non_detect_head_at_plan_time(compiler, tmp_path):
    (tmp_path / "d.yaml").write_text("train: x\nval: x\nnames: {0: a}\n")
    with pytest.raises(UsageError, match="head is RTDETRDecoder: .*drop distill"):
        compiler.compile("rtdetr-l.yaml", ["distill"], tmp_path / "x.onnx", imgsz=64,
                         data=str(tmp_path / "d.yaml"), latency_runs=0)


def test_classify_kd_loss_terms():
    import torch

    from yolocc.compiler.training import DistillSettings
    from yolocc.plugins.ultralytics_training import ClassifyKDLoss

    teacher = torch.nn.Linear(4, 3)
    batch = {"img": torch.randn(8, 4), "cls": torch.randint(0, 3, (8,))}
    ce_only = ClassifyKDLoss(teacher, DistillSettings(alpha=0.0))
    logits = torch.randn(8, 3)
    assert torch.isclose(ce_only(logits, batch)[0], torch.nn.functional.cross_entropy(logits, batch["cls"]))
    kd = ClassifyKDLoss(teacher, DistillSettings(alpha=1.0, t0=5.0, gamma=0.5, standardize=True))
    assert kd.temperature() == 5.0
    kd.epoch = 2
    assert kd.temperature() == 1.25
    kd.epoch = 10
    assert kd.temperature() == 1.0  # the curriculum never goes below 1
    with torch.no_grad():
        same = kd(teacher(batch["img"]), batch)[0]  # a student equal to its teacher: zero KL
    assert float(same) < 1e-6
    z = kd._z(torch.tensor([[1.0, 2.0, 3.0]]))
    assert torch.allclose(z.mean(1), torch.zeros(1), atol=1e-6) and torch.allclose(z.std(1), torch.ones(1))


def test_pre_prune_snapshot_survives_later_passes(load_ir):
    from yolocc.passes.canonicalize import Canonicalize
    from yolocc.passes.fuse_bn import FuseBN
    from yolocc.passes.prune import Prune

    ir = load_ir("yolov8n.yaml")
    Canonicalize()(ir, pass_ctx(ir))
    before = ir.param_count()
    for p in (Prune(ratio=0.5), FuseBN()):
        p(ir, pass_ctx(ir))
    teacher = ir.analyses["pre_prune"]
    assert sum(t.numel() for t in teacher.parameters()) == before > ir.param_count()


@pytest.mark.slow
def test_distill_one_epoch_runs(compiler, tmp_path):
    import os

    if not os.path.exists(DIGITS):
        pytest.skip("run examples/digits/make_dataset.py first (make demo does)")
    res = compiler.compile(DETECTOR, ["prune:0.25", "distill:epochs=1"], tmp_path / "d.onnx", data=DIGITS,
                           latency_runs=1)
    maps = {s.name: s.metrics["mAP50-95"] for s in res.report.stages}
    assert maps["distill"] > maps["prune"]


@pytest.mark.parametrize("spec, cuda, expected", [
    (None, 0, "cpu"), (None, 2, "0"), ("cpu", 2, "cpu"), ("0", 1, "0"), ("cuda:1", 2, "1"),
    ("0,1", 2, "DDP"), ("0+1", 2, "DDP"), ("[0, 1]", 2, "DDP"), ("[0]", 1, "0"), ("gpu", 1, "expected cpu"),
    ("1", 1, "sees 1 CUDA"),
    ("0", 0, "sees no CUDA"),
])
def test_training_device_is_one_device_or_a_one_line_refusal(spec, cuda, expected):
    from yolocc.compiler.training import training_device

    if expected in ("cpu", "0", "1"):  # a device, else the refusal's words
        assert training_device(spec, cuda) == expected
    else:
        with pytest.raises(UsageError, match=expected) as e:
            training_device(spec, cuda)
        assert "\n" not in str(e.value)


def test_several_devices_are_refused_at_plan_time_before_any_work(compiler, tmp_path, monkeypatch):
    """``Distill(device="0,1")`` (the Python API; ``-p`` splits arguments at commas, so the CLI spells it
    ``device=0+1``) exits at plan time: no data is read (the YAML points nowhere)."""
    from yolocc.passes import finetune
    from yolocc.passes.finetune import Distill

    monkeypatch.setattr(finetune, "cuda_devices", lambda: 2)
    (tmp_path / "d.yaml").write_text("train: x\nval: x\nnames: {0: a}\n")
    for passes in (["prune:0.25", Distill(device="0,1")], ["prune:0.25", "distill:device=0+1"]):
        with pytest.raises(UsageError, match="device=0[,+]1: training on several devices .* --workers N"):
            compiler.compile("yolov8n.yaml", passes, tmp_path / "x.onnx", imgsz=64, data=str(tmp_path / "d.yaml"),
                             latency_runs=0)
    assert not (tmp_path / "x.onnx").exists()


def test_the_device_and_loader_workers_reach_the_trainer(load_ir, monkeypatch):
    from yolocc.plugins import ultralytics_training

    seen = []

    def fake_train(module, task, data, overrides, teacher=None, max_grad_norm=None, **kw):
        seen.append((overrides.get("device"), overrides.get("workers")))
        return module, {}

    monkeypatch.setattr(ultralytics_training, "train", fake_train)
    ir = load_ir("yolov8n.yaml", 64)
    Finetune(epochs=1, device="cpu").call(ir, pass_ctx(ir, data="d.yaml"))
    Finetune(epochs=1, device="cpu", workers=3).call(ir, pass_ctx(ir, data="d.yaml"))
    assert seen == [("cpu", 0), ("cpu", 3)]


@pytest.mark.parametrize("spec, device, cpus, expected", [
    (None, "cpu", 16, 0), (None, "0", 16, 8), (None, "0", 4, 4), (None, "1", 1, 1), (2, "0", 16, 2), (3, "cpu", 2, 3),
])
def test_loader_workers_default_to_none_on_cpu_and_up_to_8_on_cuda(spec, device, cpus, expected):
    """On a GPU the dataloader is the bottleneck (an H200 trained 6.1x the images/s with 8 workers as with 0,
    runs/bench/gpu.json); on the CPU the trial keeps its threads to itself."""
    from yolocc.compiler.training import loader_workers

    assert loader_workers(spec, device, cpus) == expected

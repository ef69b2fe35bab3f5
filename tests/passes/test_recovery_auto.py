"""epochs=auto: training stops once the val metric is back within budget, or by patience."""

from types import SimpleNamespace

from yolocc.compiler.metrics import Metrics, drop_se
from yolocc.compiler.training import AutoStop, Confirmation

from yolocc.passes.finetune import Distill, Finetune
from yolocc.plugins.ultralytics_training import RecoveryWatch
from tests.conftest import pass_ctx


def _trainer(value, epochs=30):
    return SimpleNamespace(metrics={"metrics/mAP50-95(B)": value}, stop=False, epochs=epochs)


def test_watch_stops_when_the_target_is_reached():
    watch = RecoveryWatch("detect", AutoStop(30, 5, "mAP50-95", 0.5))
    for value in (0.2, 0.45):
        t = _trainer(value)
        watch.on_fit_epoch_end(t)
        assert not t.stop
    t = _trainer(0.51)
    watch.on_fit_epoch_end(t)
    assert t.stop
    assert watch.facts(t) == {"epochs_run": 3, "val_curve": [0.2, 0.45, 0.51], "stopped": "recovered"}


def test_watch_reports_patience_and_fixed_epochs():
    watch = RecoveryWatch("detect", AutoStop(30, 5, "mAP50-95", 0.9))
    for value in (0.2, 0.3):
        watch.on_fit_epoch_end(_trainer(value))
    assert watch.facts(_trainer(0.3))["stopped"] == "no improvement (patience)"  # ended before max_epochs
    fixed = RecoveryWatch("detect", None)
    t = _trainer(0.9, epochs=1)
    fixed.on_fit_epoch_end(t)
    assert not t.stop and fixed.facts(t)["stopped"] == "epochs"


def test_watch_ignores_the_final_validation_of_best_pt():
    """Ultralytics' final_eval runs on_fit_epoch_end once more after the last epoch: not an epoch."""
    watch = RecoveryWatch("detect", None)
    for value in (0.2, 0.3, 0.4):
        watch.on_train_epoch_end(_trainer(value, epochs=3))
        watch.on_fit_epoch_end(_trainer(value, epochs=3))
    watch.on_fit_epoch_end(_trainer(0.4, epochs=3))  # final_eval
    assert watch.facts(_trainer(0.4, epochs=3)) == {"epochs_run": 3, "val_curve": [0.2, 0.3, 0.4], "stopped": "epochs"}


def test_auto_is_the_default_and_aims_at_the_unpruned_metric(load_ir, monkeypatch):
    """The pass hands the frontend a target = reference val metric - within; a fixed count still works."""
    ir = load_ir("yolov8n.yaml", 64)
    ir.analyses["pre_prune"] = ir.module
    seen = []

    def fake_train(self, ir_, data, settings, teacher=None):
        seen.append((settings.auto, settings.epochs))
        return ir_.module, {"epochs_run": 4}

    ctx = pass_ctx(ir, data="d.yaml")
    ctx.reference = Metrics("mAP50-95", {"mAP50-95": 0.6, "mAP50": 0.8})  # as a search trial hands it over
    monkeypatch.setattr(type(ctx.frontend), "train", fake_train)
    result = Distill(within=0.5, max_epochs=12, patience=3)(ir, ctx)
    auto, epochs = seen[0]
    assert epochs == 12 and auto.max_epochs == 12 and auto.patience == 3 and auto.metric == "mAP50-95"
    assert abs(auto.target - 0.595) < 1e-9 and result.changes["target"] == {"mAP50-95": 0.595}
    Finetune(epochs=2)(ir, pass_ctx(ir, data="d.yaml"))
    assert seen[1] == (None, 2)


def _trained_trainer(value, model, epochs=30):
    return SimpleNamespace(metrics={"metrics/mAP50-95(B)": value}, stop=False, epochs=epochs,
                           ema=SimpleNamespace(ema=model), model=model)


def test_watch_stops_only_when_the_reports_measurement_confirms_the_target():
    """The trainer can validate optimistically (Ultralytics' rect batches at a larger size): a crossing it
    reports is measured again by ``confirm``; training goes on until that measurement, less its noise
    margin (``Confirmation.bound``), reaches the target, and the confirmed model (as the checkpoint holds
    it: fp16 weights read back as fp32) is kept."""
    import torch

    measured = iter([Confirmation(0.48, 0.48), Confirmation(0.52, 0.49), Confirmation(0.53, 0.505)])
    seen = []

    def confirm(module):
        seen.append(module)
        return next(measured)

    model = torch.nn.Conv2d(3, 4, 3)
    watch = RecoveryWatch("detect", AutoStop(30, 5, "mAP50-95", 0.5, confirm=confirm))
    t = _trained_trainer(0.45, model)
    watch.on_fit_epoch_end(t)
    assert not t.stop and not seen  # below the target on the trainer's side: nothing to confirm
    t = _trained_trainer(0.51, model)
    watch.on_fit_epoch_end(t)
    assert not t.stop and watch.confirmed is None  # the trainer says recovered, the measurement 0.48 does not
    t = _trained_trainer(0.52, model)
    watch.on_fit_epoch_end(t)
    assert not t.stop and watch.confirmed is None  # 0.52 is over the target, but not by the noise margin
    t = _trained_trainer(0.53, model)
    watch.on_fit_epoch_end(t)
    assert t.stop and watch.confirmed is seen[-1] and watch.confirmed is not model
    assert torch.equal(watch.confirmed.weight, model.weight.detach().half().float())
    assert not watch.confirmed.training and not watch.confirmed.weight.requires_grad
    assert watch.facts(t) == {"epochs_run": 4, "val_curve": [0.45, 0.51, 0.52, 0.53], "stopped": "recovered",
                              "confirmed": [[2, 0.48, 0.48], [3, 0.52, 0.49], [4, 0.53, 0.505]]}


def test_the_pass_confirms_on_the_reports_evaluation(load_ir, monkeypatch):
    """``Finetune`` gives ``AutoStop.confirm``: the candidate module in the IR, lowered and evaluated by
    ``PassContext.val_metrics`` (the budget's own val measurement)."""
    ir = load_ir("yolov8n.yaml", 64)
    ir.analyses["pre_prune"] = ir.module
    ctx = pass_ctx(ir, data="d.yaml")
    # bootstrap replicates on the same resampled images: the candidate's drop varies by +-0.02 around 0.18
    ctx.reference = Metrics("mAP50-95", {"mAP50-95": 0.6}, (0.6, 0.62, 0.58, 0.6))
    seen = {}

    def fake_train(self, ir_, data, settings, teacher=None):
        seen["auto"] = settings.auto
        return ir_.module, {"epochs_run": 1}

    def fake_val(self, probe, model):
        seen["probe"] = probe
        return Metrics("mAP50-95", {"mAP50-95": 0.42 if isinstance(model, bytes) else -1}, (0.42, 0.46, 0.38, 0.42))

    monkeypatch.setattr(type(ctx.frontend), "train", fake_train)
    monkeypatch.setattr(type(ctx), "val_metrics", fake_val)
    Distill(within=0.5, margin=2.0)(ir, ctx)
    candidate = load_ir("yolov8n.yaml", 64).module
    se = drop_se(ctx.reference, Metrics("mAP50-95", {"mAP50-95": 0.42}, (0.42, 0.46, 0.38, 0.42)))
    assert 1.0 < se < 2.0  # points: the paired differences 0.18, 0.16, 0.20, 0.18
    confirmed = seen["auto"].confirm(candidate)
    assert confirmed.value == 0.42 and abs(confirmed.bound - (0.42 - 2.0 * se / 100)) < 1e-9
    assert seen["probe"].module is candidate and seen["probe"] is not ir

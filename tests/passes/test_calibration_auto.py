"""calibrate:method=auto: the range method chosen by held-out output fidelity, on tiny constructed models.

Both models read the same 8-channel inputs: unit Gaussian noise with one rare spike (1000) per image.
In the first, the convolution feeds a Sigmoid, which saturates on the spikes: clipping them costs
nothing and the finer grid for the bulk wins (percentile 99.9). In the second the output is linear in
the spikes, which dominate it: clipping them wrecks the output, so a method that keeps them wins.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from yolocc.compiler.errors import UsageError
from yolocc.passes import calib_checks, calib_select
from yolocc.passes.calib_data import holdout_split


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))


class TwoConv(nn.Module):
    def __init__(self, saturate: bool):
        super().__init__()
        self.c1 = nn.Conv2d(8, 16, 3, 1, 1)
        self.c2 = nn.Conv2d(16, 16, 1)
        self.saturate = saturate

    def forward(self, x):
        y = self.c1(x)
        return self.c2(torch.sigmoid(y) if self.saturate else y)


@pytest.fixture(scope="module")
def spiky_calib(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (40, 8, 32, 32)).astype(np.float32)
    for i in range(len(x)):
        x[i, rng.integers(8), rng.integers(32), rng.integers(32)] = 1000.0
    path = tmp_path_factory.mktemp("spiky") / "calib.npz"
    np.savez(path, x=x)
    return path


def _model(tmp_path, saturate: bool):
    torch.manual_seed(0)
    path = tmp_path / f"{'sigmoid' if saturate else 'linear'}.pt"
    torch.save(TwoConv(saturate).eval(), path)
    return path


def _calibrate_stage(res):
    return next(s for s in res.report.stages if s.name == "calibrate")


def test_auto_picks_per_model(compiler, tmp_path, spiky_calib):
    chosen = {}
    for saturate in (True, False):
        res = compiler.compile(_model(tmp_path, saturate), ["int8"], tmp_path / "q.onnx", imgsz=32, trust_model=True,
                               calib=str(spiky_calib), measure=False)
        stage = _calibrate_stage(res)
        facts = stage.changes
        assert facts["method"] == "auto" and set(facts["fidelity"]) == set(calib_select.CANDIDATES)
        assert facts["chosen"] == max(facts["fidelity"], key=facts["fidelity"].get)
        # 40 samples, no more in the source: 4 folds of 10, each scored with ranges from the other 30, so
        # all 40 are scored once; the choice is then refit on all 40
        assert (facts["images"], facts["held_out_images"], facts["folds"]) == (40, 40, 4)
        assert facts["choice_images"] == 30 and facts["refit"]
        chosen[saturate] = facts
    sat, lin = chosen[True], chosen[False]
    # The saturating model: clipping the spikes pays (a clearly better score than minmax's).
    assert sat["chosen"] == "percentile 99.9" and sat["fidelity"]["percentile 99.9"] > sat["fidelity"]["minmax"] + 0.01
    # The linear model: the same clipping ruins the output, and auto keeps the spikes.
    assert lin["chosen"] != "percentile 99.9"
    assert lin["fidelity"][lin["chosen"]] > lin["fidelity"]["percentile 99.9"] + 0.5


def test_choice_and_scores_in_report(compiler, tmp_path, spiky_calib):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    res = compiler.compile(_model(tmp_path, True), ["int8"], tmp_path / "q.onnx", imgsz=32, trust_model=True,
                           calib=str(spiky_calib), measure=False, reports=[md, js])
    facts = _calibrate_stage(res).changes
    stage = next(s for s in json.loads(js.read_text())["stages"] if s["name"] == "calibrate")
    assert stage["changes"]["chosen"] == facts["chosen"] == "percentile 99.9"
    assert stage["changes"]["fidelity"] == facts["fidelity"]
    line = facts["note"]
    assert line.startswith("calibration: auto chose percentile 99.9 (fidelity ")
    assert all(label in line for label in calib_select.CANDIDATES)
    assert line in md.read_text()
    from yolocc.compiler.report_render import terminal_table

    assert "auto chose percentile 99.9" in terminal_table(res.report, 200)


def test_choice_is_cached(compiler, tmp_path, spiky_calib):
    runs = [compiler.compile(_model(tmp_path, True), ["int8"], tmp_path / f"q{i}.onnx", imgsz=32, trust_model=True,
                             calib=str(spiky_calib), measure=False) for i in range(2)]
    first, second = (_calibrate_stage(r).changes for r in runs)
    assert (first["cache"], second["cache"]) == ("miss", "hit") and first["fidelity"] == second["fidelity"]
    assert (tmp_path / "q0.onnx").read_bytes() == (tmp_path / "q1.onnx").read_bytes()


def test_fixed_method_unchanged_by_auto(compiler, tmp_path, spiky_calib):
    res = compiler.compile(_model(tmp_path, True), ["int8:method=minmax"], tmp_path / "q.onnx", imgsz=32,
                           trust_model=True, calib=str(spiky_calib), measure=False)
    facts = _calibrate_stage(res).changes
    assert facts["method"] == "minmax" and facts["images"] == 40 and "chosen" not in facts


def test_auto_model_is_the_chosen_fixed_methods(compiler, tmp_path, spiky_calib):
    """Cross-fitting (the default ``folds=4``) or ``refit=true``: once chosen, auto's ranges (and kept bias
    shifts) are refit on all the calibration samples, so the model is byte for byte the fixed method's
    with bias correction as auto decided; with one split and no refit auto keeps the ranges of the 30
    samples left after the hold-out, another model (the linear model: its ranges follow the spikes, so
    they depend on which samples give them)."""
    model = _model(tmp_path, False)

    def compile_(spec: str, name: str):
        res = compiler.compile(model, [spec], tmp_path / name, imgsz=32, trust_model=True, calib=str(spiky_calib),
                               measure=False)
        return _calibrate_stage(res).changes, (tmp_path / name).read_bytes()

    facts, auto = compile_("int8:folds=1,refit=true", "auto.onnx")
    assert facts["refit"] and facts["note"].endswith("refit on 40 images")
    method, pct = calib_select.parse(facts["chosen"])
    kept = facts["bias_correction"]["kept"]
    fixed_spec = f"int8:method={method},bias_correction={str(kept).lower()}" + (f",percentile={pct}" if pct else "")
    fixed_facts, fixed = compile_(fixed_spec, "fixed.onnx")
    assert fixed_facts["images"] == facts["images"] == 40 and auto == fixed
    unrefit_facts, unrefit = compile_("int8:folds=1", "unrefit.onnx")
    assert unrefit_facts["images"] == 30 and not unrefit_facts["refit"] and unrefit != auto
    folded_facts, folded = compile_("int8", "folded.onnx")
    assert folded_facts["folds"] == 4 and folded_facts["refit"] and "(4 folds)" in folded_facts["note"]
    method, pct = calib_select.parse(folded_facts["chosen"])
    kept = folded_facts["bias_correction"]["kept"]
    spec = f"int8:method={method},bias_correction={str(kept).lower()}" + (f",percentile={pct}" if pct else "")
    assert compile_(spec, "fixed-folded.onnx")[1] == folded


def test_cross_fitting_refits_an_extreme_from_the_shared_pass(compiler, tmp_path, spiky_calib, monkeypatch):
    """The one pass of cross-fitting also gives minmax and mean-minmax on all the samples, so a chosen
    extreme is refit without another calibrator run (the model is still the fixed method's: above)."""
    from yolocc.passes import calibrate

    monkeypatch.setattr(calibrate, "collect", lambda *a, **k: pytest.fail("the refit ran a calibrator again"))
    res = compiler.compile(_model(tmp_path, False), ["int8"], tmp_path / "m.onnx", imgsz=32, trust_model=True,
                           calib=str(spiky_calib), measure=False)
    facts = _calibrate_stage(res).changes
    assert facts["folds"] == 4 and facts["refit"] and facts["chosen"] in ("minmax", "mean-minmax")


def test_auto_needs_two_samples(compiler, tmp_path):
    one = tmp_path / "one.npy"
    np.save(one, np.random.default_rng(0).normal(size=(1, 8, 32, 32)).astype(np.float32))
    with pytest.raises(Exception, match="held-out images"):
        compiler.compile(_model(tmp_path, True), ["int8"], tmp_path / "q.onnx", imgsz=32, trust_model=True,
                         calib=str(one), measure=False)


def test_holdout_split_is_disjoint_and_deterministic():
    for total, n, k in [(128, 128, 32), (200, 128, 32), (8, 128, 32), (2, 1, 32), (1, 128, 32)]:
        ranges, held = holdout_split(total, n, k)
        assert not set(ranges) & set(held) and len(ranges) <= n and ranges
        assert (ranges, held) == holdout_split(total, n, k)
    assert [len(p) for p in holdout_split(200, 128, 32)] == [128, 32]
    assert [len(p) for p in holdout_split(128, 128, 32)] == [96, 32]
    assert holdout_split(200, 128, 32)[0] == holdout_split(200, 128, 0)[0]  # the ranges a fixed method picks


def test_candidates_parse_and_tie_break():
    assert calib_select.parse("percentile 99.99") == ("percentile", 99.99)
    assert calib_select.parse("minmax") == ("minmax", None)
    assert calib_select.by_method(calib_select.CANDIDATES)["percentile"] == [99.9, 99.99, 99.999]
    assert calib_select.best({"entropy": 0.9, "minmax": 0.9, "percentile 99.9": 0.8}) == "minmax"



def test_mean_minmax_is_the_mean_of_per_image_ranges():
    """``method=mean-minmax`` (NNCF's default activation estimator): each image's own min and max,
    averaged over the images, across the calibrator's chunks too; minmax keeps the extremes."""
    import onnx
    from onnx import TensorProto, helper

    from yolocc.passes.calib_collect import CHUNK, collect

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    data = np.random.default_rng(0).normal(size=(2 * CHUNK + 5, 1, 4, 4)).astype(np.float32)
    data[3] *= 50  # one image with far larger values: minmax follows it, the mean barely does
    flat = data.reshape(len(data), -1)
    mean = collect(model.SerializeToString(), "x", data, "mean-minmax")[0]
    assert mean["x"] == pytest.approx([flat.min(1).mean(), flat.max(1).mean()], rel=1e-5)
    assert mean["y"] == pytest.approx([0.0, np.maximum(flat, 0).max(1).mean()], rel=1e-5)
    plain = collect(model.SerializeToString(), "x", data, "minmax")[0]
    assert plain["x"] == pytest.approx([flat.min(), flat.max()], rel=1e-5)
    assert plain["x"][1] > 2 * mean["x"][1]

def test_set_checks():
    assert calib_checks.size_problem("minmax", 128) is None
    assert "16 images for percentile" in calib_checks.size_problem("percentile", 16)
    assert "3 held-out images" in calib_checks.size_problem("minmax", 128, 3)
    calibrated = {f"t{i}": [0.0, 1.0] for i in range(10)}
    same = calib_checks.domain(calibrated, {k: [0.0, 1.2] for k in calibrated})
    assert same["share_beyond"] == 0.0 and calib_checks.domain_problem(same) is None
    far = calib_checks.domain(calibrated, {k: [-0.1, 3.0] for k in calibrated})
    assert far["share_beyond"] == 1.0 and far["worst_excess"] == 2.0
    assert "out of domain" in calib_checks.domain_problem(far)


def test_auto_refuses_target_without_integer_rules():
    from types import SimpleNamespace

    ctx = SimpleNamespace(target=SimpleNamespace(name="fp", scheme=None, placement=None), upcoming=())
    with pytest.raises(UsageError, match="no integer rules"):
        calib_select.qdq_builder(None, ctx)


@pytest.mark.slow
def test_benchmark_tiny(tmp_path):
    """``benchmarks/calibration.py --tiny`` runs end to end and writes the documented layout (8-40 s)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "calibration.py"
    spec = importlib.util.spec_from_file_location("bench_calibration", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "calibration.json"
    assert bench.main(["--tiny", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["isa"] and set(result["models"]) == {"yolov8n-random"}
    row = result["models"]["yolov8n-random"]
    assert set(row["methods"]) == set(calib_select.CANDIDATES)
    assert row["methods"]["minmax"]["test_map"] is None and row["methods"]["minmax"]["fidelity"] > 0.9
    assert row["auto"]["chosen"] in calib_select.CANDIDATES and row["auto"]["test_map"] is None


def _val_by_input_scale(monkeypatch, sign: float, calls: list):
    """A fake val metric for the torch frontend: ``sign`` x the scale of the model input's quantization
    (0 for a float model), so it prefers wide (sign 1) or narrow (sign -1) input ranges, whatever the
    fidelity says. ``calls`` collects the split of every call."""
    from onnx import numpy_helper

    from yolocc.compiler.metrics import Metrics
    from yolocc.plugins.torch_frontend import TorchFrontend

    def evaluate(self, ir, onnx_bytes, data, runtime, split="val"):
        import onnx

        calls.append(split)
        model = onnx.load_from_string(onnx_bytes)
        name = f"{model.graph.input[0].name}_scale"
        scale = next((float(numpy_helper.to_array(i)) for i in model.graph.initializer if i.name == name), 0.0)
        return Metrics("acc", {"acc": sign * scale})

    monkeypatch.setattr(TorchFrontend, "evaluate", evaluate)


def _confirm_compile(compiler, tmp_path, spiky_calib, spec="int8"):
    return compiler.compile(_model(tmp_path, True), [spec], tmp_path / "q.onnx", imgsz=32, trust_model=True,
                            calib=str(spiky_calib), data=str(tmp_path), latency_runs=1)


def test_confirm_on_val_picks_the_val_better_candidate(compiler, tmp_path, spiky_calib, monkeypatch):
    calls = []
    _val_by_input_scale(monkeypatch, 1.0, calls)
    facts = _calibrate_stage(_confirm_compile(compiler, tmp_path, spiky_calib)).changes
    ranked = calib_select.ranked(facts["fidelity"])
    confirm = facts["confirm"]
    # Fidelity prefers the narrowest range (percentile 99.9); the val metric prefers the wider runner-up.
    assert ranked[0] == "percentile 99.9" and confirm["held_out_choice"] == ranked[0]
    assert list(confirm["val"]) == ranked[:calib_select.CONFIRM_TOP] and confirm["split"] == "val"
    assert confirm["val"][ranked[1]] > confirm["val"][ranked[0]]
    assert facts["chosen"] == confirm["chosen"] == ranked[1]
    assert f"{ranked[1]} chosen on val (acc: " in facts["note"] and "test" not in calls


def test_confirm_keeps_the_held_out_choice_when_val_agrees(compiler, tmp_path, spiky_calib, monkeypatch):
    _val_by_input_scale(monkeypatch, -1.0, [])
    facts = _calibrate_stage(_confirm_compile(compiler, tmp_path, spiky_calib)).changes
    assert facts["chosen"] == facts["confirm"]["chosen"] == "percentile 99.9"
    assert "confirmed on val (acc: percentile 99.9 " in facts["note"]


def test_confirm_off_and_forced(compiler, tmp_path, spiky_calib, monkeypatch):
    calls = []
    _val_by_input_scale(monkeypatch, 1.0, calls)
    facts = _calibrate_stage(_confirm_compile(compiler, tmp_path, spiky_calib, "int8:confirm=false")).changes
    assert "confirm" not in facts and facts["chosen"] == "percentile 99.9"
    with pytest.raises(Exception, match="confirm=true measures the val metric"):
        compiler.compile(_model(tmp_path, True), ["int8:confirm=true"], tmp_path / "q.onnx", imgsz=32,
                         trust_model=True, calib=str(spiky_calib), measure=False)
    with pytest.raises(Exception, match="nothing to confirm"):
        compiler.compile(_model(tmp_path, True), ["int8:method=minmax,confirm=true"], tmp_path / "q.onnx",
                         imgsz=32, trust_model=True, calib=str(spiky_calib), measure=False)


def test_confirmed_tie_goes_to_fidelity():
    order = ["entropy", "minmax"]
    assert calib_select.confirmed({"entropy": 0.5, "minmax": 0.5}, order) == "entropy"
    assert calib_select.confirmed({"entropy": 0.5, "minmax": 0.6}, order) == "minmax"
    assert calib_select.ranked({"minmax": 0.9, "entropy": 0.95, "percentile 99.9": 0.9}) == [
        "entropy", "minmax", "percentile 99.9"]


def _agreeing(value: float, offsets) -> "Metrics":
    from yolocc.compiler.metrics import Metrics

    return Metrics("agreement mAP50-95", {"agreement mAP50-95": value}).with_replicates(
        [value + o for o in offsets])


def test_ranking_by_agreement_ties_and_what_val_confirms():
    """Agreement ranks first (fidelity breaks its ties); a gap within its paired SE is a tie, which val
    may settle; a gap beyond it is not confirmed."""
    noise = np.random.default_rng(0).normal(0, 0.01, 200)
    scores = calib_select.Scores(
        fidelity={"minmax": 0.999, "entropy": 0.998, "percentile 99.9": 0.997},
        agreement={"minmax": _agreeing(0.90, noise), "entropy": _agreeing(0.95, noise * 0.5),
                   "percentile 99.9": _agreeing(0.949, noise * 1.5)})
    choice = calib_select.choose(scores)
    assert choice["order"] == ["entropy", "percentile 99.9", "minmax"] and choice["chosen"] == "entropy"
    assert choice["tied"] == ["entropy", "percentile 99.9"]  # 0.1 pt apart, SE ~1 pt; minmax 5 pt below
    assert choice["agreement_se"]["entropy"] == 0.0 and choice["agreement_se"]["minmax"] > 0
    assert calib_select.to_confirm(choice) == ["entropy", "percentile 99.9"]
    separated = calib_select.choose(calib_select.Scores(
        fidelity=scores.fidelity, agreement={**scores.agreement, "percentile 99.9": _agreeing(0.90, noise)}))
    assert separated["tied"] == ["entropy"] and calib_select.to_confirm(separated) == []
    assert calib_select.choose(calib_select.Scores(scores.fidelity))["chosen"] == "minmax"  # no agreement: fidelity
    assert calib_select.to_confirm(calib_select.choose(calib_select.Scores(scores.fidelity))) == ["minmax", "entropy"]
    # val settles a tie only where its own gap is beyond its paired SE (points)
    order = ["entropy", "percentile 99.9"]
    assert calib_select.confirmed({"entropy": 0.600, "percentile 99.9": 0.603}, order, se=0.5) == "entropy"
    assert calib_select.confirmed({"entropy": 0.600, "percentile 99.9": 0.610}, order, se=0.5) == "percentile 99.9"
    assert calib_select.confirmed({"entropy": 0.600, "percentile 99.9": 0.603}, order) == "percentile 99.9"

"""--target auto: which CPU runtime it picks (fake measurements) and that the report says so."""

from types import SimpleNamespace

import pytest

from yolocc.compiler import autotarget
from yolocc.compiler.autotarget import Choice, candidates, choose, quantizes
from yolocc.compiler.errors import UsageError
from yolocc.compiler.options import CompileOptions
from yolocc.compiler.report import Report
from yolocc.compiler.report_render import notes

LAT = {"ort-cpu": {"fp32_ms": 10.0, "int8_ms": 6.0}, "openvino": {"fp32_ms": 8.0, "int8_ms": 5.0}}


def test_a_quantizing_plan_picks_the_fastest_int8():
    lat = {"ort-cpu": {"fp32_ms": 8.0, "int8_ms": 4.0}, "openvino": {"fp32_ms": 6.0, "int8_ms": 5.0}}
    c = choose(lat, quantized=True, isa="AVX-512 VNNI", threads=2)
    assert c.target == "ort-cpu" and c.metric == "int8_ms"
    assert c.line.startswith("--target auto chose ort-cpu: fastest int8 model")
    assert "1.25x faster than the next" in c.line and "AVX-512 VNNI" in c.line and "openvino" in c.line


def test_a_float_plan_picks_the_fastest_fp32():
    lat = {"ort-cpu": {"fp32_ms": 8.0, "int8_ms": 4.0}, "openvino": {"fp32_ms": 6.0, "int8_ms": 5.0}}
    c = choose(lat, quantized=False, isa="AVX2")
    assert c.target == "openvino" and c.metric == "fp32_ms" and "fastest fp32" in c.line


def test_a_tie_goes_to_the_first_candidate():
    lat = {"ort-cpu": {"fp32_ms": 5.0}, "openvino": {"fp32_ms": 5.0}}
    assert choose(lat, quantized=False, isa="x").target == "ort-cpu"
    with pytest.raises(ValueError):
        choose({}, quantized=True)


def test_quantizes_reads_the_plan():
    assert quantizes(["prune:0.25", "int8"]) and quantizes([SimpleNamespace(name="qdq")])
    assert not quantizes(["prune:0.25", "fuse-bn"]) and not quantizes([])


class FakeTarget:
    def __init__(self, auto, missing=None):
        self.auto_candidate, self._missing = auto, missing

    def available(self):
        return self._missing


def fake_registry(**targets):
    return SimpleNamespace(targets={n: SimpleNamespace(obj=t) for n, t in targets.items()})


def test_candidates_are_installed_cpu_targets_default_first():
    reg = fake_registry(openvino=FakeTarget(True), tensorrt=FakeTarget(False), **{"ort-cpu": FakeTarget(True)},
                        other=FakeTarget(True, missing="needs other"))
    assert candidates(reg) == ["ort-cpu", "openvino"]


def test_the_builtin_cpu_targets_are_candidates():
    from yolocc.compiler.api import Compiler

    names = candidates(Compiler().registry)
    assert names[0] == "ort-cpu" and "tensorrt" not in names


def test_resolve_sets_the_measured_target(monkeypatch):
    compiler = SimpleNamespace(registry=fake_registry(**{"ort-cpu": FakeTarget(True), "openvino": FakeTarget(True)}))
    seen = {}

    def fake_measure(compiler, model, passes, opts, names):
        seen["names"] = names
        return choose(LAT, quantizes(passes), isa="AVX-512 VNNI")

    monkeypatch.setattr(autotarget, "measure_candidates", fake_measure)
    opts, choice = autotarget.resolve(compiler, "m.pt", ["int8"], CompileOptions(target="auto"))
    assert opts.target == "openvino" and choice.target == "openvino" and seen["names"] == ["ort-cpu", "openvino"]
    same, none = autotarget.resolve(compiler, "m.pt", ["int8"], CompileOptions(target="ort-cpu"))
    assert same.target == "ort-cpu" and none is None


def test_resolve_with_one_runtime_measures_nothing(monkeypatch):
    compiler = SimpleNamespace(registry=fake_registry(**{"ort-cpu": FakeTarget(True)}))
    monkeypatch.setattr(autotarget, "measure_candidates", lambda *a: pytest.fail("measured with one candidate"))
    opts, choice = autotarget.resolve(compiler, "m.pt", ["int8"], CompileOptions(target="auto"))
    assert opts.target == "ort-cpu" and "only installed CPU runtime" in choice.line
    with pytest.raises(UsageError, match="no installed CPU runtime"):
        autotarget.resolve(SimpleNamespace(registry=fake_registry()), "m.pt", [], CompileOptions(target="auto"))


def test_the_report_carries_the_choice():
    c = choose(LAT, quantized=True, isa="AVX-512 VNNI")
    report = Report(model="m.pt", task="detect", imgsz=160, target_choice=c.as_dict())
    assert notes(report)[0] == c.line
    back = Report.from_dict(report.as_dict())
    assert back.target_choice == c.as_dict() and isinstance(c, Choice)


def test_auto_compiles_for_a_measured_runtime():
    """End to end on a tiny float plan: both installed runtimes measured, one chosen, the report says which."""
    from yolocc.compiler.api import Compiler

    compiler = Compiler()
    res = compiler.compile("yolov8n.yaml", ["simplify"], None, imgsz=64, target="auto", measure=False)
    choice = res.report.target_choice
    assert choice["target"] in candidates(compiler.registry) and choice["metric"] == "fp32_ms"
    assert set(choice["latency_ms"]) == set(candidates(compiler.registry)) or "only" in choice["line"]
    assert notes(res.report)[0].startswith(f"--target auto chose {choice['target']}")

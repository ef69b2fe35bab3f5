"""A third-party frontend, emitter, target, runtime or session that crashes is one line naming its
plugin (exit 2), never "an internal error in yolocc"; built-in objects are left alone."""

from types import ModuleType

import numpy as np
import pytest

from yolocc.compiler.errors import PassError, PluginError
from yolocc.compiler.guard import guard
from yolocc.compiler.hookspecs import hookimpl
from yolocc.compiler.target import Placement, QuantScheme, Runtime, Target
from tests.conftest import IMGSZ


class CrashingSession:
    def run(self, x):
        raise ValueError("device lost")


class CrashingRuntime(Runtime):
    name = "crashing runtime"

    def load(self, model_bytes, threads=0):
        return CrashingSession()


class CrashingTarget(Target):
    name = "crashy"
    scheme = QuantScheme(activation_dtype="uint8", activation_symmetric=False)
    placement = Placement(input_ops=("Conv",))

    def runtime(self):
        return CrashingRuntime()

    def verify(self, model):
        raise RuntimeError("checker exploded")


def compiler_with_target(name="acme"):
    from yolocc.compiler.api import Compiler
    from yolocc.compiler.registry import get_plugin_manager

    plugin = ModuleType(name)

    @hookimpl
    def yolocc_register_targets(registry):
        registry.add_target(CrashingTarget())

    plugin.yolocc_register_targets = yolocc_register_targets
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(plugin, name=name)
    return Compiler(pm)


def test_a_crashing_session_names_the_plugin_the_runtime_and_the_method():
    compiler = compiler_with_target()
    with pytest.raises(PluginError) as e:
        compiler.compile("yolov8n.yaml", [], None, imgsz=IMGSZ, target="crashy", latency_runs=1)
    assert str(e.value) == "plugin 'acme': session 'CrashingSession' failed in run: ValueError: device lost"


def test_a_crashing_verify_inside_a_builtin_pass_names_the_plugin(calib_dir):
    compiler = compiler_with_target()
    with pytest.raises(PassError) as e:
        compiler.compile("yolov8n.yaml", ["int8:method=minmax"], None, imgsz=IMGSZ, target="crashy",
                         calib=str(calib_dir), measure=False)
    assert "plugin 'acme': target 'crashy' failed in verify: RuntimeError: checker exploded" in str(e.value)
    assert not e.value.internal  # exit 2 with one line, not a yolocc bug report


def test_the_cli_prints_one_line_and_exits_2(capsys, monkeypatch):
    from yolocc.compiler import cli

    monkeypatch.setattr("yolocc.compiler.api.get_plugin_manager", lambda: compiler_with_target().pm)
    code = cli.main(["yolov8n.yaml", "--imgsz", str(IMGSZ), "--target", "crashy", "--latency-runs", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "plugin 'acme': session 'CrashingSession' failed in run" in err


def test_builtin_objects_are_not_wrapped():
    from yolocc.compiler.api import Compiler

    target = Compiler().registry.target("ort-cpu")
    assert "verify" not in vars(target) and not getattr(target, "_yolocc_guarded", False)


def test_guard_passes_yolocc_errors_through_and_returns_values():
    from yolocc.compiler.errors import UsageError

    class Thing:
        name = "t"

        def run(self, x):
            if x is None:
                raise UsageError("bad input")
            return x * 2

    thing = guard(Thing(), "p", "session")
    assert thing.run(np.ones(2)).tolist() == [2.0, 2.0] and isinstance(thing, Thing)
    with pytest.raises(UsageError, match="bad input"):
        thing.run(None)

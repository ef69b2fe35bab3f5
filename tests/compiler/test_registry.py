import pytest

from yolocc.compiler.errors import PipelineError, PluginError, UsageError
from yolocc.compiler.hookspecs import hookimpl
from yolocc.compiler.passbase import Pass, PassResult
from yolocc.compiler.registry import build_registry, get_plugin_manager


def test_builtins_register_through_hooks():
    reg = build_registry(get_plugin_manager(load_entry_points=False))
    assert {"canonicalize", "prune", "fuse-bn", "simplify"} <= set(reg.passes)
    assert reg.passes["prune"].provider == "yolocc.passes.builtin"
    assert {"ultralytics", "torch", "onnx"} <= set(reg.frontends)
    assert reg.emitter_for("x.onnx").name == "onnx" and reg.emitter_for("x.pt").name == "torch"


class _OnlyInA(Pass):
    """A pass one test registers into one manager only."""
    name = "only-in-a"

    def call(self, ir, ctx):
        return PassResult(False)


class _OnlyInAPlugin:
    @hookimpl
    def yolocc_register_passes(self, registry):
        registry.add_pass(_OnlyInA)


def test_plugin_managers_are_isolated():
    a, b = get_plugin_manager(False), get_plugin_manager(False)
    a.register(_OnlyInAPlugin(), name="only-a")
    assert "only-in-a" in build_registry(a).passes
    assert "only-in-a" not in build_registry(b).passes  # registering into one leaves the other alone
    assert "only-in-a" not in build_registry(get_plugin_manager(False)).passes  # nor a new one
    assert build_registry(a).passes.keys() - {"only-in-a"} == build_registry(b).passes.keys()


class _Dup(Pass):
    """Duplicate of prune."""
    name = "prune"

    def call(self, ir, ctx):
        return PassResult(False)


class _DupPlugin:
    @hookimpl
    def yolocc_register_passes(self, registry):
        registry.add_pass(_Dup)


def test_duplicate_name_is_an_error_naming_both_plugins():
    pm = get_plugin_manager(False)
    pm.register(_DupPlugin(), name="dupe-plugin")
    with pytest.raises(PluginError, match="dupe-plugin.*'prune'.*yolocc.passes.builtin"):
        build_registry(pm)


def test_unknown_pass_lists_available():
    reg = build_registry(get_plugin_manager(False))
    with pytest.raises(PipelineError, match="unknown pass 'prnue'; available passes: act, calibrate, canonicalize, distill, finetune, fp16, fuse-bn, int8, prune, qat, qat-train, qdq, sensitivity, simplify"):
        reg.pass_class("prnue")


def test_unknown_output_suffix():
    reg = build_registry(get_plugin_manager(False))
    with pytest.raises(UsageError, match="no emitter writes '.tflite'"):
        reg.emitter_for("m.tflite")


def test_disable_env_blocks_entry_point_plugins(monkeypatch):
    from yolocc.compiler import registry as r

    monkeypatch.setenv(r.DISABLE_ENV, "a, b")
    assert r.disabled_plugins() == {"a", "b"}

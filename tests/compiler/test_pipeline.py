import pytest

from yolocc.compiler.errors import PassError, PipelineError
from yolocc.compiler.hookspecs import hookimpl
from yolocc.compiler.passbase import Pass, PassResult
from yolocc.compiler.registry import build_registry, get_plugin_manager
from yolocc.compiler.pipeline import plan


class Quantize(Pass):
    """An onnx-stage test pass."""
    name = "fake-qdq"
    stage = "onnx"

    def call(self, ir, ctx):
        return PassResult(False)


class Macro(Pass):
    """A macro: fuse-bn then fake-qdq."""
    name = "fake-int8"
    stage = "torch"

    def expand(self, stage):
        from yolocc.passes.fuse_bn import FuseBN
        return [FuseBN(), Quantize()]


class Boom(Pass):
    """Always fails with a bug."""
    name = "boom"
    stage = "torch"

    def call(self, ir, ctx):
        raise ZeroDivisionError("division by zero")


class _Plugin:
    @hookimpl
    def yolocc_register_passes(self, registry):
        for cls in (Quantize, Macro, Boom):
            registry.add_pass(cls)


@pytest.fixture
def registry():
    pm = get_plugin_manager(False)
    pm.register(_Plugin(), name="test-plugin")
    return build_registry(pm)


def _names(steps):
    return [(s.kind, s.pass_.name if s.pass_ else None, s.origin) for s in steps]


def test_canonicalize_inserted_before_prune(registry):
    steps = plan(registry, ["prune:0.3", "fuse-bn"])
    assert _names(steps) == [("pass", "canonicalize", "auto: required by prune"),
                             ("pass", "prune", "user"), ("pass", "fuse-bn", "user")]


def test_canonicalize_not_repeated(registry):
    steps = plan(registry, ["canonicalize", "prune", "prune", "fuse-bn"])
    assert [n for _, n, _ in _names(steps)] == ["canonicalize", "prune", "prune", "fuse-bn"]


def test_lowering_inserted_and_macro_expanded(registry):
    steps = plan(registry, ["prune", "fake-int8"])
    assert _names(steps)[1:] == [("pass", "prune", "user"), ("pass", "fuse-bn", "macro fake-int8"),
                                 ("lower", None, "auto: before fake-qdq"),
                                 ("pass", "fake-qdq", "macro fake-int8")]


def test_impossible_order_names_both_passes_and_fix(registry):
    with pytest.raises(PipelineError, match=r"pass 'prune' \(torch stage\) cannot run after 'fake-qdq' "
                                            r"\(onnx stage\).*put 'prune' before 'fake-qdq'"):
        plan(registry, ["fake-qdq", "prune"])


def test_torch_pass_on_onnx_input(registry):
    with pytest.raises(PipelineError, match="start from the PyTorch model"):
        plan(registry, ["prune"], start_stage="onnx")


def test_pass_failure_is_wrapped_with_history(compiler, registry):
    from tests.conftest import small_cnn

    compiler.registry = registry
    with pytest.raises(PassError, match=r"pass 'boom' \(plugin 'test-plugin'\) failed after \[fuse-bn\]: "
                                        r"ZeroDivisionError") as e:
        compiler.compile(small_cnn(), ["fuse-bn", "boom"], imgsz=32, measure=False)
    assert isinstance(e.value.__cause__, ZeroDivisionError) and not e.value.internal  # a plugin's, not a bug


def test_event_hooks_see_every_pass(compiler):
    from tests.conftest import small_cnn

    seen = []

    class Watcher:
        @hookimpl
        def yolocc_before_pass(self, pass_, ir, ctx):
            seen.append(("before", pass_.name))

        @hookimpl
        def yolocc_after_pass(self, pass_, ir, ctx, result):
            seen.append(("after", pass_.name, result.modified))

    compiler.pm.register(Watcher())
    compiler.compile(small_cnn(), ["fuse-bn"], imgsz=32, measure=False)
    assert seen == [("before", "fuse-bn"), ("after", "fuse-bn", True)]

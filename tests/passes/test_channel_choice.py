"""``prune:round_to=auto`` timed on the pruned model (passes.channel_choice) for runtimes whose
one-conv sweep does not predict whole models."""

import time

import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import pass_ctx
from yolocc.compiler.onnxgraph import node_macs
from yolocc.compiler.target import ChannelMultiple, Runtime
from yolocc.passes import channel_choice
from yolocc.passes.canonicalize import Canonicalize
from yolocc.passes.prune import Prune


def test_candidates_are_the_sweeps_multiple_and_its_neighbours():
    assert channel_choice.candidates(8) == [8, 16]
    assert channel_choice.candidates(16) == [8, 16, 32]
    assert channel_choice.candidates(64) == [32, 64]
    assert channel_choice.candidates(12) == [12]


def test_pick_takes_the_fastest_or_a_larger_multiple_as_fast():
    assert channel_choice.pick({8: 10.0, 16: 12.0}) == 8
    assert channel_choice.pick({8: 12.0, 16: 10.0, 32: 11.0}) == 16
    assert channel_choice.pick({8: 10.0, 16: 10.1, 32: 10.5}) == 16  # 16 within 2%, 32 not


def padded(c: int, block: int) -> int:
    return -(-c // block) * block


class _Session:
    def __init__(self, ms: float):
        self.ms = ms

    def run(self, x):
        time.sleep(self.ms / 1000)
        return {}


class ModelTimedRuntime(Runtime):
    """A runtime whose convolutions cost their channels padded to ``block`` (block 1: their MACs), and
    whose one-conv sweep says 8."""

    name = "model-timed runtime"
    channel_multiple_on_model = True

    def __init__(self, block: int):
        self.block, self.loaded = block, []

    def channel_multiple(self, threads=1, cache_root=None):
        return ChannelMultiple(8, True, "the sweep of a fake runtime")

    def load(self, model_bytes, threads=0):
        model = onnx.load_model_from_string(model_bytes)
        macs = node_macs(model)
        weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
        cost = 0.0
        for i, n in enumerate(model.graph.node):
            w = weights.get(n.input[1], ()) if n.op_type == "Conv" else ()
            if len(w) == 4:
                cost += macs[n.name or n.output[0]] * padded(w[0], self.block) * padded(w[1], self.block) / (w[0] * w[1])
        self.loaded.append(cost)
        return _Session(cost / 2e7)  # yolov8n at 64 px: about 2 ms


@pytest.fixture
def canonical_v8n(load_ir):
    ir = load_ir("yolov8n.yaml", 64)
    Canonicalize()(ir, pass_ctx(ir))
    return ir


@pytest.mark.parametrize("block, expected", [(16, 16), (1, 8)])
def test_round_to_auto_takes_the_multiple_its_pruned_model_runs_fastest_with(canonical_v8n, tmp_path, block,
                                                                          expected):
    ctx = pass_ctx(canonical_v8n, cache_dir=tmp_path)
    ctx.runtime = ModelTimedRuntime(block)
    result = Prune(ratio=0.25)(canonical_v8n, ctx)
    timing = result.changes["round_to_timing"]
    assert result.changes["round_to"] == expected and timing["multiple"] == expected
    assert sorted(timing["latency_ms"]) == ["16", "8"] and timing["prior"] == 8 and timing["built"] == "float"
    assert "timed on model-timed runtime" in result.changes["round_to_source"]
    assert f"multiples of {expected}" in result.changes["note"]
    for name, (before, after) in result.changes["channels"].items():
        assert after % expected == 0, (name, before, after)
    assert len(ctx.runtime.loaded) == 2 and not timing["cached"]


def test_the_choice_is_cached_and_given_multiples_are_not_timed(canonical_v8n, tmp_path):
    first, again = canonical_v8n.snapshot(), canonical_v8n.snapshot()
    ctx = pass_ctx(first, cache_dir=tmp_path)
    ctx.runtime = ModelTimedRuntime(16)
    Prune(ratio=0.25)(first, ctx)
    runtime = ModelTimedRuntime(1)  # would choose 8 if it timed again
    ctx = pass_ctx(again, cache_dir=tmp_path)
    ctx.runtime = runtime
    result = Prune(ratio=0.25)(again, ctx)
    assert result.changes["round_to"] == 16 and result.changes["round_to_timing"]["cached"]
    assert not runtime.loaded
    given = Prune(ratio=0.25, round_to=8)(canonical_v8n.snapshot(), ctx)
    assert given.changes["round_to"] == 8 and "round_to_timing" not in given.changes and not runtime.loaded


def test_a_sweep_runtime_is_not_timed_on_the_model(canonical_v8n, tmp_path):
    class SweepRuntime(ModelTimedRuntime):
        channel_multiple_on_model = False

    ctx = pass_ctx(canonical_v8n, cache_dir=tmp_path)
    ctx.runtime = SweepRuntime(16)
    result = Prune(ratio=0.25)(canonical_v8n, ctx)
    assert result.changes["round_to"] == 8 and "round_to_timing" not in result.changes and not ctx.runtime.loaded

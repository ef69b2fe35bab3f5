"""The measurement statistics: percentiles, throughput, round-robin order, memory and batch timing.

A fake runtime advances a fake clock by a known time per image, so every statistic has an exact
expected value."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from yolocc.compiler import measure
from yolocc.compiler.report import Report, StageRecord
from yolocc.compiler.target import Runtime


def test_summarize_percentiles_and_throughput():
    stats = measure.summarize([float(v) for v in range(1, 21)])  # 1..20 ms
    assert stats["p50_ms"] == 10.5 and stats["min_ms"] == 1.0
    assert stats["p95_ms"] == pytest.approx(19.05)  # linear interpolation between 19 and 20
    assert stats["throughput_ips"] == pytest.approx(20 * 1000 / 210, abs=0.01)  # 20 images in 210 ms
    assert measure.summarize([4.0, 4.0], images_per_run=8)["throughput_ips"] == 2000.0
    with pytest.raises(ValueError):
        measure.summarize([])


class _Clock:
    now = 0.0

    def __call__(self):
        return self.now


class _FakeSession:
    def __init__(self, runtime, ms_per_image):
        self.runtime, self.ms = runtime, ms_per_image

    def run(self, x):
        self.runtime.calls.append((self.ms, len(x)))
        self.runtime.clock.now += self.ms * len(x) / 1000.0
        return {"y": x}


class _FakeRuntime(Runtime):
    """Model bytes b"3" take 3 ms per image."""

    name = "fake"

    def __init__(self, clock):
        self.clock, self.calls = clock, []

    def load(self, model_bytes, threads=0):
        return _FakeSession(self, float(model_bytes.decode()))


@pytest.fixture
def fake(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(measure.time, "perf_counter", clock)
    memory = iter([100, 400, 400, 1400])  # RSS before/after loading each of two sessions
    monkeypatch.setattr(measure, "rss_bytes", lambda: next(memory, None))
    return _FakeRuntime(clock)


def test_latency_stats_round_robin_warmup_memory(fake):
    x = np.zeros((1, 3, 4, 4), np.float32)
    a, b = measure.latency_stats(fake, [b"2", b"5"], x, runs=6, warmup=2)
    assert (a.p50_ms, a.p95_ms, a.min_ms, a.runs) == (2.0, 2.0, 2.0, 6) and b.p50_ms == 5.0
    assert a.throughput_ips == 500.0 and b.throughput_ips == 200.0
    assert (a.memory_bytes, b.memory_bytes) == (300, 1000)
    assert a.batch_throughput_ips is None  # batch 1 only
    timed = fake.calls[4:]  # after 2 warm-up runs of each, loaded one after the other
    assert fake.calls[:4] == [(2.0, 1), (2.0, 1), (5.0, 1), (5.0, 1)]
    assert timed == [(2.0, 1), (5.0, 1)] * 6  # one run of each per round
    assert measure.latencies_ms(fake, [b"4"], x, runs=3, warmup=0) == [4.0]  # no RSS left: memory None


def test_latency_stats_at_a_batch_size(fake):
    x = np.zeros((1, 3, 4, 4), np.float32)
    (st,) = measure.latency_stats(fake, [b"2"], x, runs=4, warmup=1, batch=8)
    assert {n for _, n in fake.calls} == {1, 8}
    assert st.batch == 8 and st.batch_throughput_ips == 500.0  # 8 images in 16 ms
    assert st.p50_ms == 2.0  # the batch-1 statistics stay batch 1


def _relu_model(batch) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("batch_dim, measured", [("N", True), (1, False)])
def test_report_measures_batch_only_for_a_dynamic_batch(batch_dim, measured):
    from yolocc.plugins.ort_runtime import OrtCpuRuntime

    report = Report(model="m.onnx", task="detect", imgsz=8)
    report.stages = [StageRecord(name="input", stage="onnx", params=0, onnx=_relu_model(batch_dim)),
                     StageRecord(name="x", stage="onnx", params=0, origin="user", onnx=_relu_model(batch_dim))]
    report.finalize(OrtCpuRuntime(), latency_runs=4, batch=4)
    for s in report.stages:
        assert s.latency_ms > 0 and s.latency_p95_ms >= s.latency_ms >= s.latency_min_ms > 0
        assert s.throughput_ips > 0 and s.memory_bytes is not None
        assert (s.batch_throughput_ips is not None) == measured
    assert report.latency["batch"] == (4 if measured else 1)
    assert ("batch_skipped" in report.latency) != measured
    if not measured:
        assert "--dynamic-batch" in report.latency["batch_skipped"]
    onnx.checker.check_model(onnx.load_from_string(report.stages[0].onnx))


def test_round_robin_blocks_run_turns_in_rotating_order():
    """Each round gives every callable one turn of ``block`` runs in a row, rounds starting one key
    later; ``round_robin_ms`` is the same schedule with turns of one run."""
    log: list[str] = []
    runs = {k: (lambda k=k: log.append(k)) for k in "abc"}
    times = measure.round_robin_blocks_ms(runs, rounds=3, block=2, warmup=1, rotate=True)
    assert log == list("abc") + list("aabbcc") + list("bbccaa") + list("ccaabb")
    assert {k: [len(turn) for turn in v] for k, v in times.items()} == {k: [2, 2, 2] for k in "abc"}
    assert all(t >= 0 for v in times.values() for turn in v for t in turn)
    log.clear()
    single = measure.round_robin_ms(runs, rounds=2)
    assert log == list("abcabc") and {k: len(v) for k, v in single.items()} == {k: 2 for k in "abc"}
    with pytest.raises(ValueError, match="block must be >= 1"):
        measure.round_robin_blocks_ms(runs, rounds=1, block=0)


def test_latency_stats_times_the_last_run_of_each_turn(fake):
    """``turn=3``: every model runs three times in a row per round and only the third is kept."""
    x = np.zeros((1, 3, 4, 4), np.float32)
    a, b = measure.latency_stats(fake, [b"2", b"5"], x, runs=4, warmup=1, turn=3)
    assert a.runs == b.runs == 4 and (a.p50_ms, b.p50_ms) == (2.0, 5.0)
    assert fake.calls[2:] == ([(2.0, 1)] * 3 + [(5.0, 1)] * 3) * 4
    with pytest.raises(ValueError, match="block must be >= 1"):
        measure.latency_stats(fake, [b"2"], x, runs=1, turn=0)

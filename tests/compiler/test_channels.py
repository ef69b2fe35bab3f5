"""The channel multiple a runtime likes (compiler.channels) and prune's round_to=auto."""

import json

import numpy as np
import pytest
import torch.nn as nn

from yolocc.compiler import channels
from yolocc.compiler.channels import choose_multiple, measured_channel_multiple
from yolocc.compiler.errors import UsageError
from yolocc.compiler.params import bind, parse_pass_spec
from yolocc.compiler.target import ChannelMultiple, Runtime
from yolocc.passes.pruning import resolve_round_to


def padded_sweep(block: int, counts=channels.CHANNELS) -> dict[int, float]:
    """Latency of a kernel that pads channels to ``block``: cost follows the padded in x out count."""
    return {c: 0.01 + (-(-c // block) * block) ** 2 * 1e-5 for c in counts}


@pytest.mark.parametrize("block, expected", [(1, 8), (8, 8), (16, 16), (32, 32), (64, 64)])
def test_the_multiple_is_the_padding_block(block, expected):
    m, why = choose_multiple(padded_sweep(block))
    assert m == expected, why
    assert ("a block of" in why) == (expected > 8) and "step ratios" in why


@pytest.mark.parametrize("block", [8, 16, 32])
def test_noise_does_not_move_the_multiple(block):
    rng = np.random.default_rng(block)
    for _ in range(20):
        noisy = {c: v * (1 + rng.uniform(-0.02, 0.02)) for c, v in padded_sweep(block).items()}
        assert choose_multiple(noisy)[0] == block


def test_one_slow_count_inside_a_block_does_not_hide_the_block():
    """OpenVINO's int8 conv on AVX-512 VNNI (a sweep measured here): 16-channel blocks, but the last count
    ran slow (184 -> 192 cost twice a block start). With means the 8 -> 16 ratio was 0.32 and 8 was
    kept; pruned to 16, yolov8n's int8 ran 4% faster with 8% more MACs."""
    lat = {64: 0.3348, 72: 0.3978, 80: 0.4116, 88: 0.5232, 96: 0.5306, 104: 0.6159, 112: 0.6712, 120: 0.7607,
           128: 0.7648, 136: 0.9297, 144: 0.9326, 152: 1.0816, 160: 1.0866, 168: 1.2825, 176: 1.2889,
           184: 1.4597, 192: 1.6942}
    m, why = choose_multiple(lat)
    assert m == 16, why


def test_partial_steps_below_the_threshold_are_not_blocks():
    # the channels inside a 16-block cost half of those that start one (0.40-0.49 on onnxruntime here): 8
    padded, smooth = padded_sweep(16), padded_sweep(1)
    lat = {c: padded[c] / 3 + smooth[c] * 2 / 3 for c in channels.CHANNELS}
    m, why = choose_multiple(lat)
    assert m == 8 and "8->16 0.5" in why, why


def test_a_flat_sweep_gives_no_multiple():
    m, why = choose_multiple({c: 1.0 + c * 1e-4 for c in channels.CHANNELS})
    assert m is None and "not compute-bound" in why


def test_measured_once_then_cached(tmp_path, monkeypatch):
    calls = []

    def sweep():
        calls.append(1)
        return padded_sweep(16)

    monkeypatch.setattr("yolocc.compiler.ceiling.busy_load", lambda: None)
    first = measured_channel_multiple("fake 1.0", "conv", 1, tmp_path, sweep)
    assert first.multiple == 16 and first.measured and "fake 1.0" in first.reason and first.isa
    files = list((tmp_path / "channels").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["multiple"] == 16
    again = measured_channel_multiple("fake 1.0", "conv", 1, tmp_path, lambda: pytest.fail("measured again"))
    assert again == first and len(calls) == 1
    # another runtime version (or thread count) is another entry
    assert measured_channel_multiple("fake 2.0", "conv", 1, tmp_path, lambda: padded_sweep(32)).multiple == 32
    assert measured_channel_multiple("fake 1.0", "conv", 2, tmp_path, lambda: padded_sweep(64)).multiple == 64


def test_a_flat_measurement_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr("yolocc.compiler.ceiling.busy_load", lambda: None)
    found = measured_channel_multiple("fake", "conv", 1, tmp_path, lambda: {c: 1.0 for c in channels.CHANNELS})
    assert found.multiple == channels.FALLBACK and not found.measured and "default multiple" in found.reason


class FakeRuntime(Runtime):
    name = "fake runtime"

    def __init__(self, multiple):
        self.multiple, self.asked = multiple, []

    def channel_multiple(self, threads=1, cache_root=None):
        self.asked.append((threads, cache_root))
        return ChannelMultiple(self.multiple, True, f"measured on {self.name}")


class Ctx:
    def __init__(self, runtime):
        from yolocc.compiler.options import CompileOptions

        self.runtime, self.options = runtime, CompileOptions()


def test_auto_resolves_to_the_runtime_multiple():
    rt = FakeRuntime(32)
    assert resolve_round_to("auto", Ctx(rt)) == (32, "round_to=auto: measured on fake runtime")
    assert len(rt.asked) == 1


def test_an_integer_round_to_is_taken_as_given():
    rt = FakeRuntime(32)
    assert resolve_round_to(8, Ctx(rt)) == (8, "round_to given") and not rt.asked


def test_the_base_runtime_falls_back_to_8():
    found = Runtime().channel_multiple()
    assert found.multiple == 8 and not found.measured


def test_round_to_param_takes_auto_or_an_integer():
    from yolocc.passes.prune import Prune

    param = next(p for p in Prune.params if p.name == "round_to")
    assert param.default == "auto" and "auto" in param.doc and param.kind == "int|auto"
    assert bind("prune", Prune.params, {}, ())["round_to"] == "auto"
    assert bind("prune", Prune.params, parse_pass_spec("prune:round_to=16").args, ())["round_to"] == 16
    for bad in ("round_to=x", "round_to=0", "round_to=2.5"):
        with pytest.raises(UsageError):
            bind("prune", Prune.params, parse_pass_spec(f"prune:{bad}").args, ())


def test_prune_auto_keeps_multiples_of_the_runtime_multiple(load_ir):
    from tests.conftest import pass_ctx
    from yolocc.passes.canonicalize import Canonicalize
    from yolocc.passes.prune import Prune

    ir = load_ir("yolov8n.yaml")
    Canonicalize()(ir, pass_ctx(ir))
    ctx = pass_ctx(ir)
    ctx.runtime = FakeRuntime(32)
    result = Prune(ratio=0.25)(ir, ctx)
    assert result.changes["round_to"] == 32 and "fake runtime" in result.changes["round_to_source"]
    assert "multiples of 32" in result.changes["note"]
    for name, (before, after) in result.changes["channels"].items():
        assert after % 32 == 0 or after == before, (name, before, after)
    assert all(m.out_channels % 32 == 0 or m.out_channels < 32 or n.startswith("model.22.")
               for n, m in ir.module.named_modules() if isinstance(m, nn.Conv2d) and n in result.changes["channels"])


def test_qdq_conv_model_runs_on_onnxruntime():
    import onnxruntime as ort

    model = channels.qdq_conv_model(16, 8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": np.random.default_rng(0).random((1, 16, 8, 8), dtype=np.float32)})[0]
    assert out.shape == (1, 16, 8, 8)


def test_onnxruntime_measures_its_multiple(tmp_path):
    from yolocc.plugins.ort_runtime import OrtCpuRuntime

    found = OrtCpuRuntime().channel_multiple(cache_root=tmp_path)
    assert found.multiple in channels.CANDIDATES and "onnxruntime" in found.reason
    assert found.measured == bool(found.latency_ms) or not found.measured


def test_passes_help_shows_round_to_auto(cli):
    code, out, _ = cli("passes", "--json")
    prune = next(p for p in json.loads(out)["passes"] if p["name"] == "prune")
    round_to = next(q for q in prune["params"] if q["name"] == "round_to")
    assert code == 0 and round_to["default"] == "auto" and "auto" in round_to["doc"]


def test_one_noisy_count_does_not_move_the_multiple():
    lat = padded_sweep(8)
    lat[184] = lat[192] * 1.01  # one slow run at 184 makes it look padded
    assert choose_multiple(lat)[0] == 8
    lat = padded_sweep(16)
    lat[64] = lat[80] * 1.02  # and one at 64 on a 16-channel kernel
    assert choose_multiple(lat)[0] == 16


def test_openvino_measures_its_multiple(tmp_path):
    pytest.importorskip("openvino")
    from yolocc.plugins.openvino_target import OpenVinoRuntime

    found = OpenVinoRuntime().channel_multiple(cache_root=tmp_path)
    assert found.multiple in channels.CANDIDATES and "OpenVINO" in found.reason and found.op.startswith("int8")

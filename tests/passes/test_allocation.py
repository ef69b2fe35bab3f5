"""prune:macs= spends a MAC target on the groups that matter least (sensitivity allocation)."""

import pytest

from yolocc.passes.prune import Prune, allocate, total_macs
from tests.conftest import pass_ctx


def _group(root, drops, members):
    return {"root": root, "members": members, "cut": {k: float(k) for k in drops}, "drop": drops}


def test_allocate_prefers_insensitive_groups():
    groups = [_group("a", {"0.25": 0.001, "0.5": 0.002, "0.75": 0.004}, [("a", "out"), ("c", "in")]),
              _group("b", {"0.25": 0.2, "0.5": 0.5, "0.75": 0.9}, [("b", "out")]),
              _group("c", {"0.25": 0.01, "0.5": 0.03, "0.75": 0.3}, [("c", "out")])]
    ratios, predicted = allocate(groups, 0.3, {"a": 100.0, "b": 100.0, "c": 50.0})
    assert ratios == {"a": 0.5}  # the cheap group gives enough; the sensitive ones give nothing
    assert predicted >= 0.3


def test_allocate_counts_a_layer_cut_on_both_sides_once():
    """Cutting 50% of a layer's inputs and 50% of its outputs removes 75% of its MACs, not 100%."""
    groups = [_group("x", {"0.5": 0.0}, [("L", "in")]), _group("y", {"0.5": 0.0}, [("L", "out")])]
    ratios, predicted = allocate(groups, 0.99, {"L": 100.0})
    assert ratios == {"x": 0.5, "y": 0.5} and predicted == pytest.approx(0.75)


def test_prune_to_a_mac_target_gives_non_uniform_ratios(load_ir, calib_dir, tmp_path):
    ir = load_ir("yolov8n.yaml", 64)
    from yolocc.passes.canonicalize import Canonicalize

    ctx = pass_ctx(ir, calib=str(calib_dir), cache_dir=str(tmp_path / "cache"))
    Canonicalize()(ir, ctx)
    before = total_macs(ir)
    saved = tmp_path / "ratios.yaml"
    result = Prune(macs=0.3, protect_head=False, save=str(saved))(ir, ctx)
    alloc = result.changes["allocation"]
    assert len(set(alloc["ratios"].values())) >= 2, alloc["ratios"]  # not one uniform ratio
    assert abs((1 - total_macs(ir) / before) - 0.3) < 0.08, alloc  # the target is met, give or take rounding
    import yaml

    assert yaml.safe_load(saved.read_text()) == alloc["ratios"]  # reusable as prune:layers=
    again = load_ir("yolov8n.yaml", 64)
    Canonicalize()(again, pass_ctx(again))
    Prune(ratio=0.0, layers=str(saved))(again, pass_ctx(again))
    assert total_macs(again) == total_macs(ir)

"""How a report reads: folding stages into decisions, the 80-column table, Markdown, the plot."""

import itertools

import pytest

from yolocc.compiler.report import BUDGET_ORIGIN, Report, StageRecord
from yolocc.compiler.report_render import decisions, markdown, terminal_table


def _stage(name, origin, p50, metric=None, macs=250e6, **kw):
    return StageRecord(name=name, stage="onnx", params=int(3e6 * macs / 250e6), origin=origin,
                       modified=origin != "input", macs=int(macs), size_bytes=int(12e6 * macs / 250e6),
                       latency_ms=p50, latency_p95_ms=p50 * 1.2, latency_min_ms=p50 * 0.9,
                       throughput_ips=1000 / p50, memory_bytes=int(40e6 * p50 / 6), time_s=0.5,
                       gmacs_per_s=macs / p50 / 1e6, ceiling_pct=macs / p50 / 1e6,
                       metrics=None if metric is None else {"mAP50-95": metric}, **kw)


def _pipeline_report(batch=1, metric=True) -> Report:
    m = (lambda v: v) if metric else (lambda v: None)
    r = Report(model="examples/digits/weights/yolov8n-digits.pt", task="detect", imgsz=160,
               latency={"runtime": "onnxruntime CPUExecutionProvider", "version": "1.32.0", "isa": "AVX2",
                        "runs": 20, "warmup": 3, "batch": batch,
                        "int8_ceiling": {"gmacs": 100.0, "op": "MatMulInteger", "runtime": "ort", "isa": "AVX2"}},
               accuracy={"data": "d.yaml", "split": "val"} if metric else None)
    r.stages = [_stage("input", "input", 6.32, m(0.6190)),
                _stage("canonicalize", "auto: required by prune", 6.17, m(0.6190)),
                _stage("prune", "user", 4.78, m(0.5912), macs=176e6),
                _stage("canonicalize", "macro int8", 4.79, m(0.5912), macs=176e6),
                _stage("fuse-bn", "macro int8", 4.70, m(0.5912), macs=176e6),
                _stage("calibrate", "macro int8", 4.64, m(0.5912), macs=176e6),
                _stage("qdq", "macro int8", 3.33, m(0.5870), macs=176e6)]
    if batch > 1:
        for s in r.stages:
            s.batch_throughput_ips = 4 * s.throughput_ips
    return r


def test_decisions_fold_automatic_steps_and_macro_parts():
    rows = decisions(_pipeline_report().stages)
    assert [d.name for d in rows] == ["input", "prune", "int8"]
    assert [[s.name for s in d.stages] for d in rows] == [
        ["input"], ["canonicalize", "prune"], ["canonicalize", "fuse-bn", "calibrate", "qdq"]]
    assert rows[2].result.name == "qdq" and rows[2].time_s == pytest.approx(2.0)


def test_decisions_keep_repeated_passes_and_trailing_auto_steps():
    stages = [_stage("input", "input", 6), _stage("prune", "user", 5), _stage("distill", "user", 5),
              _stage("prune", "user", 4), _stage("canonicalize", "auto: required by qdq", 4),
              _stage("qdq", "user", 3), _stage("simplify", "auto: after qdq", 3)]
    rows = decisions(stages)
    assert [d.name for d in rows] == ["input", "prune", "distill", "prune", "qdq"]
    assert [s.name for s in rows[-1].stages] == ["canonicalize", "qdq", "simplify"]


def test_two_macros_in_a_row_stay_two_rows_only_when_their_origins_differ():
    stages = [_stage("input", "input", 6), _stage("fuse-bn", "macro int8", 5), _stage("qdq", "macro int8", 3),
              _stage("fp16", "macro half", 3)]
    assert [d.name for d in decisions(stages)] == ["input", "int8", "half"]


def test_budget_candidates_are_rows_of_their_own():
    stages = [_stage("input", "input", 6)] + [_stage(f"-{p}% MACs + distill + int8", BUDGET_ORIGIN, 3)
                                              for p in (30, 45)]
    assert len(decisions(stages)) == 3


def _lines(text):
    return text.rstrip("\n").split("\n")


@pytest.mark.parametrize("batch, metric", [(1, True), (8, True), (1, False)])
def test_terminal_table_fits_80_columns_one_row_per_decision(batch, metric):
    text = terminal_table(_pipeline_report(batch, metric), width=80)
    lines = _lines(text)
    assert max(len(ln) for ln in lines) <= 80
    header = next(ln for ln in lines if ln.startswith("stage"))
    body = lines[lines.index(header) + 2:lines.index(header) + 5]
    assert [ln.split()[0] for ln in body] == ["input", "prune", "int8"]  # names whole, one row each
    for col in ("p50/p95", "img/s", "mem"):
        assert col in header
    assert ("mAP50-95" in header) == metric and (f"b{batch} img/s" in header) == (batch > 1)
    assert "4.78/5.74" in body[1] and "3.33/4.00" in body[2]  # p50/p95 of the decision's last stage
    assert "-30%" in body[1]  # MACs as a change against the input
    if "peak" in header:  # 176M MACs in 3.33 ms against a 100 GMAC/s ceiling
        assert " 53% " in body[2] and "(100 GMAC/s)" in " ".join(text.split())  # the footer wraps
    if metric:
        assert "0.5870 -3.20" in body[2]
    assert "-v: every stage" in " ".join(text.split())


def test_terminal_table_drops_columns_last_first_and_says_so():
    r = _pipeline_report()
    r.stages[2].name = "a-very-long-user-pass-name-here"
    narrow = terminal_table(r, width=80)
    assert max(len(ln) for ln in _lines(narrow)) <= 80
    assert "a-very-long-user-pass-name-here" in narrow and "Left out to fit the width: " in " ".join(narrow.split())
    header = next(ln for ln in _lines(narrow) if ln.startswith("stage"))
    assert "p50/p95" in header and "params" not in header
    wide = terminal_table(r, width=160)
    assert "Left out" not in wide and "params" in wide


def test_columns_with_nothing_measured_are_left_out():
    r = _pipeline_report()
    for s in r.stages:
        s.memory_bytes = s.ceiling_pct = None
    header = next(ln for ln in _lines(terminal_table(r, width=120)) if ln.startswith("stage"))
    assert "mem" not in header and "peak" not in header and "p50/p95" in header


def test_verbose_table_lists_every_stage_under_its_decision():
    lines = _lines(terminal_table(_pipeline_report(), width=80, expand=True))
    assert max(len(ln) for ln in lines) <= 80
    table = lines[:next(i for i, ln in enumerate(lines) if ln.startswith("Latency on"))]  # not the footer
    names = [ln.split()[0] for ln in table if ln.startswith(("input", "prune", "int8", "  "))]
    assert names == ["input", "prune", "canonicalize", "prune", "int8", "canonicalize", "fuse-bn", "calibrate",
                     "qdq"]
    assert any(ln.startswith("  canonicalize (auto)") for ln in lines)


def test_markdown_has_decisions_then_every_stage():
    md = markdown(_pipeline_report(batch=8))
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| decision |") and "p95" in table[0] and "img/s (batch 8)" in table[0]
    assert [r.split("|")[1].strip() for r in table[1:4]] == ["input", "prune", "int8"]
    assert "### Every stage" in md and md.count("| macro int8 |") == 4
    assert "mAP50-95: on the val split." in md
    assert "| 52.9 (53%) |" in table[3] and "100.0 GMAC/s" in md


def _boxes(labels):
    renderer = labels[0].figure.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in labels]


def test_plot_labels_never_overlap_and_coinciding_points_share_one_label():
    from yolocc.compiler.plot import coincident_groups, draw_accuracy_latency, plot_points

    r = _pipeline_report()
    r.stages += [_stage("fp16", "user", 3.33, 0.5870), _stage("simplify", "user", 3.331, 0.5871),
                 _stage("x", "user", 3.36, 0.5872)]  # the same point twice, and a near neighbour
    points = plot_points(r)
    assert [p[0] for p in points] == ["input", "prune", "int8", "fp16", "simplify", "x"]
    assert coincident_groups(points) == [[0], [1], [2, 3, 4], [5]]
    fig, labels = draw_accuracy_latency(r)
    assert [t.get_text() for t in labels] == ["1", "2", "3=4=5", "6"]
    for a, b in itertools.combinations(_boxes(labels), 2):
        assert not a.overlaps(b)
    legend = "\n".join(t.get_text() for t in fig.texts)
    assert "3=4=5: int8 = fp16 = simplify (same latency and accuracy)" in legend
    assert "AVX2" in fig.axes[0].get_xlabel() and "val split" in fig.axes[0].get_ylabel()


def test_budget_markdown_lists_each_trials_noise_worker_wall_time_and_stop():
    """Every candidate row says its val change with its standard error, the time it took and where it
    ran, why its training stopped and whether it was reused from the cache."""
    from yolocc.compiler.report_render import budget_markdown

    base = {"latency_ms": 2.0, "macs": 10, "size_bytes": 100, "test": 0.5, "within": True, "passes": []}
    b = {"max_drop": 1.0, "metric": "mAP50-95", "wall_s": 60.0, "candidates": [
        {**base, "name": "input", "val": 0.5, "drop_pts": 0.0, "drop_se": None, "worker": "", "wall_s": None},
        {**base, "name": "-30% MACs + distill", "val": 0.49, "drop_pts": 1.0, "drop_se": 0.42,
         "worker": "node1:77", "wall_s": 41.4, "stopped": "recovered"},
        {**base, "name": "int8 alone", "val": 0.5, "drop_pts": 0.0, "drop_se": 0.1, "worker": "node1:78",
         "wall_s": 12.0, "reused": True},
        {**base, "name": "-45% MACs + int8 (latency probe)", "val": None, "test": None, "drop_pts": None,
         "drop_se": None, "within": False, "worker": "node1:79", "wall_s": 3.0}]}
    text = "\n".join(budget_markdown(b))
    assert "| -45% MACs + int8 (latency probe) | - | - | not evaluated | no | 2.00 ms |" in text
    assert "| -1.00 +- 0.42 pt |" in text and "| +0.00 pt |" in text
    assert "41 s, on node1:77, stopped: recovered |" in text
    assert "int8 alone (from the cache)" in text and "12 s, on node1:78, reused from the cache |" in text

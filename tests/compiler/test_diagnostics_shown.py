"""Issue 19, kind 8: a diagnostic a pass reports is a warning line on stderr (also without -v) and a
line under "Warnings" in the Markdown report, not only a field of the JSON."""

from __future__ import annotations

import json

from types import ModuleType

import numpy as np

from yolocc.compiler.hookspecs import hookimpl
from yolocc.compiler.passbase import Pass, PassResult

from yolocc.compiler.report import Report, StageRecord
from yolocc.compiler.report_render import diagnostics, markdown


class Noted(Pass):
    """A pass that changes nothing and reports two diagnostics (as qdq reports a target's rule violations)."""

    name, stage = "noted", "onnx"

    def call(self, ir, ctx):
        return PassResult(False, diagnostics=["first thing to know", "second thing to know"])


def test_pass_diagnostics_are_printed_and_in_the_markdown(cli, tmp_path, monkeypatch):
    import onnxruntime as ort

    from yolocc.compiler.registry import get_plugin_manager

    plugin = ModuleType("noted-plugin")

    @hookimpl
    def yolocc_register_passes(registry):
        registry.add_pass(Noted)

    plugin.yolocc_register_passes = yolocc_register_passes
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(plugin, name="noted-plugin")
    monkeypatch.setattr("yolocc.compiler.api.get_plugin_manager", lambda: pm)
    out, md, rj = tmp_path / "m.onnx", tmp_path / "r.md", tmp_path / "r.json"
    code, _, err = cli("yolov8n.yaml", "--imgsz", 64, "-p", "noted", "-o", out, "--report", md, "--report", rj,
                       "--no-measure")
    assert code == 0, err
    recorded = [(s["name"], d) for s in json.loads(rj.read_text())["stages"] for d in s.get("diagnostics", [])]
    assert recorded == [("noted", "first thing to know"), ("noted", "second thing to know")]
    lines = err.splitlines()
    for _, text in recorded:  # each exactly once, one line, naming the pass; also without -v
        assert lines.count(f"yolocc: warning: noted: {text}") == 1
    assert all(f"- noted: {text}" in md.read_text() for _, text in recorded)
    assert "### Warnings" in md.read_text()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 64, 64), np.float32)})[0]
    assert y.shape == (1, 84, 8 * 8 + 4 * 4 + 2 * 2)  # 4 box + 80 class rows, one column per anchor


def test_diagnostics_are_listed_once_in_stage_order():
    r = Report(model="m.pt", task="detect", imgsz=64)
    r.stages = [StageRecord(name="input", stage="torch", params=1),
                StageRecord(name="calibrate", stage="onnx", params=1, diagnostics=["small set", "small set"]),
                StageRecord(name="qdq", stage="onnx", params=1, diagnostics=["raw conv output"])]
    assert diagnostics(r) == [("calibrate", "small set"), ("qdq", "raw conv output")]
    text = markdown(r)
    assert "- calibrate: small set\n- qdq: raw conv output" in text
    r.stages = r.stages[:1]
    assert "Warnings" not in markdown(r)

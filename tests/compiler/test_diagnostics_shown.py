"""Issue 19, kind 8: a diagnostic a pass reports is a warning line on stderr (also without -v) and a
line under "Warnings" in the Markdown report, not only a field of the JSON."""

from __future__ import annotations

import json

import numpy as np

from yolocc.compiler.report import Report, StageRecord
from yolocc.compiler.report_render import diagnostics, markdown


def test_tensorrt_rule_violations_are_printed_and_in_the_markdown(cli, tmp_path, calib_dir):
    """YOLO11's C2PSA attention block: qdq records where the placement breaks TensorRT's rules."""
    import onnxruntime as ort

    out, md, rj = tmp_path / "y11.onnx", tmp_path / "r.md", tmp_path / "r.json"
    code, _, err = cli("yolo11n.yaml", "--imgsz", 64, "--target", "tensorrt", "-p", "int8", "--calib", calib_dir,
                       "-o", out, "--report", md, "--report", rj, "--no-measure")
    assert code == 0, err
    recorded = [(s["name"], d) for s in json.loads(rj.read_text())["stages"] for d in s.get("diagnostics", [])]
    qdq = [d for name, d in recorded if name == "qdq"]
    assert qdq, "the fixture should break a TensorRT placement rule"
    lines = err.splitlines()
    for text in qdq:  # each exactly once, one line, naming the pass
        assert lines.count(f"yolocc: warning: qdq: {text}") == 1
    assert all(f"- qdq: {text}" in md.read_text() for text in qdq)
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

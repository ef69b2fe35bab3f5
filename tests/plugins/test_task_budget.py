"""The accuracy budget on every Ultralytics task: the report and the terminal name the task's budget metric.

Runs the digits segment, pose and OBB fixtures on a tiny copy of their data (8 val images), with
``--max-macs 0.1`` so that only the int8 candidates are tried (no training): the point is which metric
decides, not its value.
"""

import json
from pathlib import Path

import pytest

from tests.conftest import make_digits

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "examples/digits/weights"
TASKS = {"seg": ("segment", "mask mAP50-95"), "pose": ("pose", "pose mAP50-95"), "obb": ("obb", "OBB mAP50-95")}


@pytest.fixture(scope="module")
def tiny_tasks(tmp_path_factory):
    """The task datasets with 16/8/8/4 train/val/calib/test images (made in about a second)."""
    return make_digits(tmp_path_factory.mktemp("tasks"), "--n-train", "16", "--n-val", "8", "--n-calib", "8",
                       "--n-test", "4", "--n-cls-train", "0", "--no-det")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_budget_names_the_task_metric(cli, tmp_path, monkeypatch, tiny_tasks, task):
    name, metric = TASKS[task]
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))
    report = tmp_path / "r.json"
    code, out, err = cli(WEIGHTS / f"yolov8n-{task}-digits.pt", "--max-drop", "100", "--max-macs", "0.1",
                         "--data", tiny_tasks / f"digits-{task}.yaml", "--calib", tiny_tasks / task / "calib/images",
                         "-o", tmp_path / "m.onnx", "--report", report, "--latency-runs", "2")
    assert code == 0, err
    r = json.loads(report.read_text())
    assert r["task"] == name and r["budget"]["metric"] == metric and r["accuracy"]["metric"] == metric
    assert f"pt of {metric} met" in " ".join(out.split())
    assert all(next(iter(s["metrics"])) == metric for s in r["stages"] if s.get("metrics"))

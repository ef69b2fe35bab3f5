"""Task agreement (``Frontend.agreement``, Ultralytics' ``ultralytics_agreement``) on constructed raw
outputs of every task's head: the float model against itself agrees fully, and a change in the part the
task's metric reads (a box, a mask, keypoints, an angle, a top-1 class) lowers the agreement, while the
same change in a part it does not read leaves it alone."""

from types import SimpleNamespace

import numpy as np
import pytest

from yolocc.compiler.metrics import BOOTSTRAP, drop_se
from yolocc.plugins.ultralytics_agreement import agreement

N, A, NC, IMG = 8, 24, 2, 160  # images, anchors, classes, input side
NK = 3  # keypoints of the pose head
NM, MS = 4, 40  # mask coefficients and prototype side of the segment head


def _ir(task: str):
    meta = {"names": {0: "a", 1: "b"}, "onnx_metadata": {"kpt_shape": [NK, 3]}}
    return SimpleNamespace(task=task, meta=meta, module=None)


def _raw(task: str, seed: int = 0) -> dict[str, np.ndarray]:
    """(N, 4 + NC + extra, A) predictions: two confident objects per image (anchors 0 and 1, classes 0
    and 1, 40x20 px boxes), every other anchor a faint background box."""
    rng = np.random.default_rng(seed)
    extra = {"segment": NM, "pose": NK * 3, "obb": 1}.get(task, 0)
    out = np.zeros((N, 4 + NC + extra, A), np.float32)
    out[:, 0:2] = rng.uniform(30, 130, (N, 2, A))
    out[:, 2], out[:, 3] = 40.0, 20.0
    out[:, 4:4 + NC] = 0.01
    out[:, 4, 0] = out[:, 5, 1] = 0.9
    out[:, 0, 1] = out[:, 0, 0] + 60  # the two objects apart
    out[:, 0, 1] = np.where(out[:, 0, 1] > 140, out[:, 0, 0] - 60, out[:, 0, 1])
    if task == "segment":
        out[:, 6:] = rng.normal(0, 1, (N, NM, A))
    if task == "pose":
        for k in range(NK):
            out[:, 6 + 3 * k] = out[:, 0] + rng.uniform(-15, 15, (N, A))
            out[:, 7 + 3 * k] = out[:, 1] + rng.uniform(-8, 8, (N, A))
            out[:, 8 + 3 * k] = 0.9
    if task == "obb":
        out[:, 6] = 0.2
    outs = {"output0": out}
    if task == "segment":
        outs["output1"] = rng.normal(0, 1, (N, NM, MS, MS)).astype(np.float32)
    return outs


def _changed(outs: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in outs.items()}
    o = out["output0"]
    if what == "box":  # the second object's box moves by more than its width
        o[:, 0, 1] += 45
    elif what == "masks":  # the first object's mask coefficients flip sign: another mask in the same box
        o[:, 6:, 0] *= -1
    elif what == "keypoints":  # keypoints move off, boxes stay
        o[:, 6:6 + 3 * NK:3, :2] += 25
    elif what == "angle":  # both objects turn by 60 degrees, boxes' centres and sides stay
        o[:, 6, :2] += np.pi / 3
    elif what == "background":  # faint anchors change, under the ground-truth confidence
        o[:, 4:4 + NC, 2:] = 0.05
    return out


@pytest.mark.parametrize("task,change", [("detect", "box"), ("segment", "masks"), ("pose", "keypoints"),
                                         ("obb", "angle")])
def test_agreement_reads_the_tasks_own_part(task, change):
    ir, ref = _ir(task), _raw(task)
    same = agreement(ir, ref, ref)
    assert same.primary.startswith("agreement ") and same.value > 0.99
    assert len(same.replicates) == BOOTSTRAP
    moved = agreement(ir, ref, _changed(ref, change))
    assert moved.value < 0.8, moved.value
    assert drop_se(same, moved) is not None
    background = agreement(ir, ref, _changed(ref, "background"))
    assert background.value > 0.99


def test_pose_agreement_is_keypoints_not_boxes():
    """The pose metric matches by keypoint OKS: a box that moves with its keypoints in place agrees."""
    ir, ref = _ir("pose"), _raw("pose")
    assert agreement(ir, ref, _changed(ref, "box")).value > 0.99
    assert agreement(_ir("detect"), _raw("detect"), _changed(_raw("detect"), "box")).value < 0.8  # a detector's does not


def test_classify_agreement_is_top1_agreement():
    ir = _ir("classify")
    ref = {"output0": np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3]]}
    out = {"output0": ref["output0"].copy()}
    out["output0"][:2] = np.roll(out["output0"][:2], 1, axis=1)  # two of eight images change their top-1
    a = agreement(ir, ref, out)
    assert a.primary == "agreement top1" and a.value == pytest.approx(0.75)
    assert agreement(ir, ref, ref).value == 1.0


def test_nothing_confident_to_agree_with():
    ir, ref = _ir("detect"), _raw("detect")
    ref["output0"][:, 4:4 + NC] = 0.05  # a random-weights model: no prediction above 0.25
    assert agreement(ir, ref, ref) is None


def test_auto_calibration_ranks_by_agreement_and_reports_it(compiler, tmp_path, monkeypatch):
    """``-p int8`` (method=auto) on the trained digits detector: every candidate's held-out agreement is in
    the report, the choice is the best by it, and the terminal line says so."""
    from pathlib import Path

    from yolocc.passes import calib_select

    digits = Path(__file__).resolve().parents[2] / "examples" / "digits"
    calib = digits / "data" / "calib" / "images"
    if not calib.is_dir():
        pytest.skip("digits data not generated (python examples/digits/make_dataset.py)")
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))
    res = compiler.compile(str(digits / "weights" / "yolov8n-digits.pt"), ["int8"], tmp_path / "q.onnx", imgsz=160,
                           calib=str(calib), calib_n=48, measure=False)
    facts = next(s for s in res.report.stages if s.name == "calibrate").changes
    assert facts["metric"] == "agreement mAP50-95" and set(facts["agreement"]) == set(facts["fidelity"])
    assert all(0.0 <= v <= 1.0 for v in facts["agreement"].values())
    assert facts["chosen"] == calib_select.best(facts["fidelity"], facts["agreement"]) and facts["chosen"] in facts["tied"]
    assert max(facts["agreement"], key=facts["agreement"].get) == facts["chosen"] or \
        facts["agreement"][facts["chosen"]] == max(facts["agreement"].values())
    assert facts["agreement"]["percentile 99.9"] < facts["agreement"][facts["chosen"]]  # clipping the most loses
    assert f"auto chose {facts['chosen']} (agreement mAP50-95 " in facts["note"]

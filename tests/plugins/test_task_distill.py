"""Distillation for every Ultralytics task: each task's own output term, and plan-time refusals."""

from __future__ import annotations

import copy
import json
import math
import types

import pytest
import torch

KPT_SHAPE = (5, 3)  # the digits pose data's kpt_shape
IMGSZ = 64


def _model(cfg: str, seed: int):
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel, OBBModel, PoseModel, SegmentationModel

    torch.manual_seed(seed)
    cls = {"seg": SegmentationModel, "pose": PoseModel, "obb": OBBModel}.get(cfg.split("-")[-1].split(".")[0],
                                                                             DetectionModel)
    kwargs = {"data_kpt_shape": KPT_SHAPE} if cls is PoseModel else {}
    model = cls(cfg, nc=10, verbose=False, **kwargs)
    model.args = get_cfg(overrides={"imgsz": IMGSZ, "dis": 0.0})
    return model


def _distill_terms(task: str, cfg: str) -> list[tuple[float, float]]:
    """[(dis_loss with only the task term on, with only the class/DFL term on)] for one batch, for a
    student with other weights, then for a student equal to the teacher. The student's own task loss
    is left out (it needs labels); the teacher's and student's forwards run through DistillationModel's
    hooks as in training. BN in eval mode so equal weights give equal outputs."""
    from yolocc.plugins.ultralytics_training import OutputKDDistillation

    teacher = _model(cfg, 0).eval()
    batch = {"img": torch.rand(2, 3, IMGSZ, IMGSZ)}
    out = []
    for student in (_model(cfg, 1), copy.deepcopy(teacher)):
        wrapped = OutputKDDistillation(teacher_model=teacher, student_model=student)
        wrapped.kd_task = task
        wrapped.train()
        student.eval()  # train mode at the wrapper (distillation on), running BN statistics in the student
        student.loss = types.MethodType(lambda self, b, p: (torch.zeros(3), {"loss": torch.zeros(3)}), student)
        terms = []
        for kd, task_kd in ((0.0, 1.0), (1.0, 0.0)):
            wrapped.kd_weight, wrapped.task_weight = kd, task_kd
            total, items = wrapped.loss(batch)
            assert math.isclose(float(total[-1].detach()), float(items["dis_loss"]) * 2, rel_tol=1e-5, abs_tol=1e-9)
            terms.append(float(items["dis_loss"]))
        out.append(tuple(terms))
    return out


TASKS = [("segment", "yolov8n-seg.yaml"), ("pose", "yolov8n-pose.yaml"), ("obb", "yolov8n-obb.yaml")]


@pytest.mark.parametrize("task,cfg", TASKS)
def test_task_term_is_distilled(task, cfg):
    """Each non-detect task has its own output term: non-zero for a different student, zero for an equal one."""
    (term, kd), (same, _) = _distill_terms(task, cfg)
    assert term > 1e-6 and kd > 0
    assert abs(same) < 1e-6


def test_detect_has_no_task_term_and_keeps_its_output_kd():
    (term, kd), _ = _distill_terms("detect", "yolov8n.yaml")
    assert term == 0.0 and kd > 0.0


def test_task_terms_by_hand():
    from yolocc.plugins.ultralytics_training import obb_kd, pose_kd, segment_kd, task_kd_term

    b, a = 2, 7
    weight = torch.zeros(b, 1, a)
    weight[:, :, 0] = 1.0  # one anchor where the teacher sees an object
    t = {"mask_coefficient": torch.zeros(b, 32, a), "proto": torch.zeros(b, 32, 4, 4)}
    s = {"mask_coefficient": torch.zeros(b, 32, a), "proto": torch.zeros(b, 32, 4, 4)}
    s["mask_coefficient"][:, :, 1:] = 5.0  # only where the teacher sees nothing: no cost
    assert segment_kd(s, t, weight) == 0
    s["proto"] += 1.0  # prototypes count everywhere
    assert torch.isclose(segment_kd(s, t, weight), torch.tensor(1.0))
    # OBB: the two ends of the angle range are the same box
    ang = {"angle": torch.full((b, 1, a), -math.pi / 4)}
    assert obb_kd(ang, {"angle": torch.full((b, 1, a), 3 * math.pi / 4)}, weight) < 1e-6
    assert torch.isclose(obb_kd(ang, {"angle": torch.full((b, 1, a), math.pi / 4)}, weight), torch.tensor(2.0))
    # pose: xy counts only where the teacher's keypoint is visible
    tk = torch.zeros(b, 5 * 3, a)
    tk[:, 2::3] = -20.0  # invisible
    sk = tk.clone()
    sk[:, 0::3] += 3.0
    assert pose_kd({"kpts": sk}, {"kpts": tk}, weight, (5, 3)) < 1e-3
    tk[:, 2::3] = 20.0
    sk[:, 2::3] = 20.0
    assert torch.isclose(pose_kd({"kpts": sk}, {"kpts": tk}, weight, (5, 3)), torch.tensor(4.5), atol=1e-3)
    assert task_kd_term("detect", None) is None and task_kd_term("classify", None) is None


def test_rtdetr_distill_is_refused_at_plan_time(cli, tmp_path):
    (tmp_path / "d.yaml").write_text("train: nowhere\nval: nowhere\nnames: {0: a}\n")  # never read
    code, out, err = cli("rtdetr-l.yaml", "--imgsz", "160", "-p", "prune:0.2", "-p", "distill", "--data",
                         tmp_path / "d.yaml", "--dry-run")
    assert code == 2 and out == ""
    line, = err.strip().splitlines()
    assert "distill cannot distil a model whose head is RTDETRDecoder" in line and "drop distill" in line
    code, _, err = cli("rtdetr-l.yaml", "--imgsz", "160", "-p", "finetune", "--data", tmp_path / "d.yaml",
                       "--dry-run")  # no trainer for RT-DETR here either
    assert code == 2 and "no Ultralytics trainer" in err and len(err.strip().splitlines()) == 1


def test_distill_plans_for_every_yolo_task(cli, tmp_path):
    (tmp_path / "d.yaml").write_text("train: nowhere\nval: nowhere\nnames: {0: a}\n")
    for cfg in ("yolov8n-seg.yaml", "yolov8n-pose.yaml", "yolov8n-obb.yaml"):
        code, out, err = cli(cfg, "--imgsz", "64", "-p", "prune:0.2", "-p", "distill", "--data",
                             tmp_path / "d.yaml", "--dry-run")
        assert code == 0, err
        assert "distill" in out


@pytest.mark.slow
def test_pose_prune_distill_end_to_end(tmp_path, cli, capsys):
    """One real epoch of prune + distill on a tiny pose dataset, through Ultralytics' PoseTrainer."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_dataset", "examples/digits/make_dataset.py")
    make_dataset = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_dataset)
    make_dataset.main(["--out", str(tmp_path / "d"), "--n-train", "16", "--n-val", "8", "--n-calib", "4",
                       "--n-test", "4", "--n-cls-train", "0", "--no-det"])
    capsys.readouterr()  # make_dataset's own lines are not the CLI's output
    data = tmp_path / "d" / "digits-pose.yaml"
    code, out, err = cli("examples/digits/weights/yolov8n-pose-digits.pt", "-p", "prune:0.2", "-p",
                         "distill:epochs=1,batch=8", "--data", data, "--latency-runs", "0", "--json",
                         "-o", tmp_path / "m.onnx")
    assert code == 0, err
    report = json.loads(out)
    stage = next(s for s in report["stages"] if s["name"] == "distill")
    assert stage["changes"]["val_curve"] and "pose mAP50-95" in stage["metrics"]

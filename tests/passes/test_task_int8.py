"""INT8 and output fidelity on every Ultralytics task's head: segment (mask coefficients + prototypes), pose
(keypoints) and OBB (angle), on random-weight yolov8n models at a small size.

The task's own part of the output must count in output fidelity (calibration's ``auto``, mixed precision's
ranking, the pruning sensitivity proxy), and its decode arithmetic must stay float under ``-p int8``."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch

from yolocc.compiler import measure
from yolocc.compiler.analyses import OUTPUT_SPLITS
from yolocc.passes import calib_select
from yolocc.passes.float_region import output_tail
from yolocc.passes.sensitivity import _outputs

IMGSZ = 64
#: (model YAML, the task's named part of output0, its width, the head modules that compute it)
TASKS = {
    "segment": ("yolov8n-seg.yaml", "mask_coefficients", 32, ("cv4",)),
    "pose": ("yolov8n-pose.yaml", "keypoints", 51, ("cv4",)),
    "obb": ("yolov8n-obb.yaml", "angle", 1, ("cv4",)),
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((2, 3, IMGSZ, IMGSZ), dtype=np.float32)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_output_splits_name_the_task_part(load_ir, task):
    cfg, part, width, _ = TASKS[task]
    ir = load_ir(cfg, IMGSZ)
    splits = ir.meta[OUTPUT_SPLITS]["output0"]
    assert list(splits) == ["boxes", "scores", part]
    assert splits[part].stop - splits[part].start == width
    outs = _outputs(ir.module.eval(), torch.from_numpy(_image()))  # what the sensitivity proxy compares
    assert outs["output0"].shape[1] == splits[part].stop  # the parts cover output0 to its last channel
    assert set(outs) == ({"output0", "output1"} if task == "segment" else {"output0"})


@pytest.mark.parametrize("task", sorted(TASKS))
def test_fidelity_sees_a_change_in_the_task_part_only(load_ir, task):
    """Perturbing only the task's part of the (real, float) output moves the fidelity calibration's
    ``auto`` and mixed precision score with, by that part's own ``1 - cosine``; for a segmenter a change
    in the prototypes (output1) alone does too."""
    cfg, part, _, _ = TASKS[task]
    ir = load_ir(cfg, IMGSZ)
    splits = ir.meta[OUTPUT_SPLITS]
    with torch.no_grad():
        ref = _outputs(ir.module.eval(), torch.from_numpy(_image()))  # the float outputs (as exported)
    sl = splits["output0"][part]
    out = {k: v.copy() for k, v in ref.items()}
    rng = np.random.default_rng(1)
    out["output0"][:, sl] += rng.normal(0, 1, out["output0"][:, sl].shape).astype(np.float32) * \
        (np.abs(ref["output0"][:, sl]).mean() + 0.1)
    d = measure.output_distance(ref, out, splits)
    a, b = ref["output0"][:, sl].reshape(2, -1), out["output0"][:, sl].reshape(2, -1)
    part_alone = float(np.mean(1 - (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
    assert part_alone > 1e-3 and d == pytest.approx(part_alone, rel=1e-6)
    assert calib_select.fidelity(ref, out, splits) < 1 - part_alone / 10
    if task == "segment":
        protos = {k: v.copy() for k, v in ref.items()}
        protos["output1"] = -protos["output1"]
        assert measure.output_distance(ref, protos, splits) > 1.0  # output1 is compared whole


@pytest.mark.parametrize("task", sorted(TASKS))
def test_sensitivity_proxy_sees_the_task_branch(load_ir, task):
    """Silencing the task branch's last convolutions (what pruning that branch does) moves the proxy
    distance, and only through the task's parts: boxes and scores stay put."""
    cfg, part, _, branches = TASKS[task]
    ir = load_ir(cfg, IMGSZ)
    module = ir.module.eval()
    splits = ir.meta[OUTPUT_SPLITS]
    head = module.model[-1]
    x = torch.from_numpy(_image())
    with torch.no_grad():
        ref = _outputs(module, x)
        hooks = [getattr(head, b)[i][-1].register_forward_hook(lambda m, i, o: o * 0.5 + 0.3)
                 for b in branches for i in range(head.nl)]
        try:
            out = _outputs(module, x)
        finally:
            for h in hooks:
                h.remove()
    only = {k: {part: v[part]} for k, v in splits.items()}
    rest = {k: {p: s for p, s in v.items() if p != part} for k, v in splits.items()}
    assert measure.output_distance(ref, out, only) > 1e-4
    assert measure.output_distance({"output0": ref["output0"]}, {"output0": out["output0"]}, rest) < 1e-9
    assert measure.output_distance(ref, out, splits) == pytest.approx(
        measure.output_distance(ref, out, only), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_decode_carries_no_qdq(compiler, tmp_path, calib_dir, task):
    """After ``-p int8`` every Q/DQ the decode reads is the head's last convolutions' own output (each
    branch quantized with its own range); the decode arithmetic itself (keypoint grid/stride and
    visibility sigmoid, the OBB angle's (sigmoid - 0.25) * pi and rotation, the concat of mask
    coefficients, the prototypes' last activation) stays float."""
    cfg, _, _, _ = TASKS[task]
    out = tmp_path / "q.onnx"
    compiler.compile(cfg, ["int8:method=minmax,bias_correction=false"], out, imgsz=IMGSZ, calib=str(calib_dir),
                     measure=False)
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    tail = output_tail(gs.import_onnx(model), include_last_convs=False)
    assert len(tail) > 20
    read = []
    for node in model.graph.node:
        if node.name not in tail or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for name in node.input:
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer[dq.input[0]]
            assert q.op_type == "QuantizeLinear"
            src = producer.get(q.input[0])
            read.append((node.op_type, src.op_type if src is not None else None))
    assert read and all(src == "Conv" for _, src in read), read
    # what reads them: the reshapes of the raw branch outputs (and a segmenter's prototype SiLU)
    readers = {"Reshape"} | ({"Sigmoid", "Mul"} if task == "segment" else set())
    assert {op for op, _ in read} <= readers, read
    # and no op of the decode has its output quantized
    decode_ops = {"Sigmoid", "Mul", "Add", "Sub", "Div", "Cos", "Sin", "Concat", "Softmax", "MatMul", "Slice", "Split"}
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    names = {n.name: n for n in model.graph.node}
    assert not [n for n in tail if names[n].op_type in decode_ops and set(names[n].output) & quantized]


def test_report_fidelity_cell_shows_the_task_part():
    from yolocc.compiler.report_render import fidelity_cell

    detect = {"output0": {"cosine": 0.99}, "output0[boxes]": {"cosine": 0.98}, "output0[scores]": {"cosine": 0.97}}
    assert fidelity_cell(detect) == "scores cos 0.9700"
    pose = {**detect, "output0[keypoints]": {"cosine": 0.9612}}
    assert fidelity_cell(pose) == "scores cos 0.9700, keypoints 0.9612"
    seg = {**detect, "output0[mask_coefficients]": {"cosine": 0.95}, "output1": {"cosine": 0.93}}
    assert fidelity_cell(seg) == "scores cos 0.9700, output1 0.9300"  # the least faithful of them

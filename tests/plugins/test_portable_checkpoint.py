"""Issue 19, kinds 1 and 2: a ``.pt`` yolocc writes loads, predicts, validates and exports with
Ultralytics alone (importing yolocc is blocked in the subprocess), and Ultralytics' ``train()``
refuses in one line instead of silently rebuilding the unpruned model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from yolocc.compiler.torchgraph import flatten_outputs

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
CHILD = Path(__file__).with_name("portable_child.py")

#: task -> (model, imgsz, image for predict, data for val/train or None)
CASES = {
    "detect": (DIGITS / "weights/yolov8n-digits.pt", 160, "data/val/images", DIGITS / "data/digits.yaml"),
    "classify": (DIGITS / "weights/yolov8n-cls-digits.pt", 64, "data/cls/val/3", DIGITS / "data/cls"),
    "segment": ("yolov8n-seg.yaml", 64, "data/val/images", None),
    "pose": ("yolov8n-pose.yaml", 64, "data/val/images", None),
    "obb": ("yolov8n-obb.yaml", 64, "data/val/images", None),
}


def run_child(ckpt: Path, imgsz: int, image: Path, x: np.ndarray, out: Path, data: Path | None) -> dict:
    np.save(out / "x.npy", x)
    cmd = [sys.executable, str(CHILD), str(ckpt), str(imgsz), str(image), str(out / "x.npy"), str(out)]
    proc = subprocess.run(cmd + ([str(data)] if data else []), capture_output=True, text=True, cwd=out,
                          timeout=600, env={**__import__("os").environ, "YOLO_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("FACTS "))
    return json.loads(line[len("FACTS "):])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@pytest.mark.parametrize("task", list(CASES))
def test_pruned_checkpoint_works_without_yolocc(compiler, tmp_path, task):
    from yolocc.plugins.ultralytics_model import REBUILD_REFUSED, checkpoint_dict

    model, imgsz, images, data = CASES[task]
    ckpt = tmp_path / f"{task}-pruned.pt"
    passes = ["prune:0.25", "fuse-bn"] if task == "detect" else ["prune:0.25"]
    result = compiler.compile(str(model), passes, ckpt, imgsz=imgsz, measure=False)
    assert result.ir.task == task
    x = np.random.RandomState(0).rand(1, 3, imgsz, imgsz).astype(np.float32)
    with torch.no_grad():
        ref = flatten_outputs(result.ir.module(torch.from_numpy(x)))[0].numpy()
    image = sorted((DIGITS / images).iterdir())[0]
    facts = run_child(ckpt, imgsz, image, x, tmp_path, data)
    assert all(c.startswith(("torch.", "ultralytics.")) for c in facts["classes"]), facts["classes"]
    # the pruned widths, nothing rebuilt (stock DFL and BN hold a few more parameters than the rewrites)
    assert facts["params"] == sum(p.numel() for p in checkpoint_dict(result.ir)["model"].parameters())
    assert abs(facts["params"] / result.ir.param_count() - 1) < 0.01
    assert facts["task"] == task
    out = np.load(tmp_path / "output.npy")
    assert out.shape == ref.shape and _cosine(out, ref) > 0.9999
    assert facts["predict"] == 1 and Path(facts["export"]).is_file()
    if data is not None:
        assert facts["val"] > 0.05  # a working detector/classifier, pruned but not retrained
        assert facts["train"] == f"KeyError: {REBUILD_REFUSED}"  # one line naming the fix, not a rebuild


def test_unpruned_checkpoint_keeps_a_yaml_ultralytics_rebuilds(compiler, tmp_path):
    """Only the rewrites are undone: a compile without pruning keeps the model's own YAML, which
    Ultralytics' trainer rebuilds exactly (state-dict names and shapes)."""
    from yolocc.plugins.torchfile import read_torch_file
    from yolocc.plugins.ultralytics_model import rebuilds_exactly

    out = tmp_path / "fused.pt"
    compiler.compile("yolov8n.yaml", ["canonicalize", "fuse-bn"], out, imgsz=64, measure=False)
    ckpt = read_torch_file(out)
    model = ckpt["model"]
    assert "scale" not in model.yaml or model.yaml["scale"] == "n"
    assert rebuilds_exactly(model, model.yaml)
    assert {"FusedConv->Conv", "C2fSplit->C2f"} <= set(ckpt["yolocc"]["rewrites_undone"])


@pytest.mark.parametrize("a,b", [(5, 9), (9, 5)])
def test_unequal_c2f_halves_are_padded_exactly(a, b):
    """Pruning can leave a split C2f's halves unequal; the stock C2f then gets zero channels and
    computes the same outputs."""
    from ultralytics.nn.modules.block import C2f

    from yolocc.plugins.ultralytics_canonical import C2fSplit, decanonicalize

    torch.manual_seed(0)
    block = torch.nn.Sequential(C2fSplit(C2f(16, 32, n=2, shortcut=True))).eval()
    split = block[0]
    for name, keep in (("cv0", a), ("cv1", b)):  # unequal, as a per-group allocation leaves them
        conv = getattr(split, name)
        sl = torch.arange(keep)
        conv.conv.weight.data = conv.conv.weight.data[sl]
        conv.conv.out_channels = keep
        for attr in ("weight", "bias"):
            getattr(conv.bn, attr).data = getattr(conv.bn, attr).data[sl]
        conv.bn.running_mean, conv.bn.running_var = conv.bn.running_mean[sl], conv.bn.running_var[sl]
        conv.bn.num_features = keep
    for blk in split.m:  # the bottleneck chain follows cv1's width
        blk.cv1.conv.weight.data = blk.cv1.conv.weight.data[:, :b]
        blk.cv1.conv.in_channels = b
        out = blk.cv2
        out.conv.weight.data = out.conv.weight.data[:b]
        out.conv.out_channels = b
        for attr in ("weight", "bias"):
            getattr(out.bn, attr).data = getattr(out.bn, attr).data[:b]
        out.bn.running_mean, out.bn.running_var = out.bn.running_mean[:b], out.bn.running_var[:b]
    keep = torch.cat([torch.arange(a), 16 + torch.arange(b), 32 + torch.arange(b), 48 + torch.arange(b)])
    split.cv2.conv.weight.data = split.cv2.conv.weight.data[:, keep]
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        ref = block(x)
        counts = decanonicalize(block)
        assert type(block[0]) is C2f and block[0].c == max(a, b)
        torch.testing.assert_close(block[0](x), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(block[0].forward_split(x), ref, rtol=1e-5, atol=1e-5)  # Ultralytics' export form
    assert counts["C2f padded channels"] == (b - a if a < b else (a - b) * (1 + len(block[0].m)))

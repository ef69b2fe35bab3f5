"""Issue 19, kind 9: every checkpoint Ultralytics writes (classify ones with their torchvision
transforms, older ones with renamed classes and pickled ``getattr``) and everything yolocc writes loads
without ``--trust-model``; a crafted pickle is still refused, in one line, without running."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from yolocc.compiler.errors import UsageError
from yolocc.plugins.torchfile import read_torch_file

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
CLS_PT = DIGITS / "weights" / "yolov8n-cls-digits.pt"


def test_bundled_classifier_compiles_without_trust(cli, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "cls.onnx"
    code, _, err = cli(CLS_PT, "-o", out, "--no-measure")
    assert code == 0, err
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: np.random.RandomState(0).rand(2, 3, 64, 64).astype(np.float32)
                        [:1]})[0]
    assert y.shape == (1, 10) and abs(float(y.sum()) - 1.0) < 1e-4  # class probabilities


def test_classifier_yolocc_writes_loads_without_trust(compiler, tmp_path):
    out = tmp_path / "cls-pruned.pt"
    compiler.compile(str(CLS_PT), ["prune:0.25"], out, imgsz=64, measure=False)
    ckpt = read_torch_file(out)
    assert type(ckpt["model"].transforms).__name__ == "Compose"  # the stored transforms came along
    ir = compiler.load(str(out))
    assert ir.task == "classify" and ir.input.shape == (1, 3, 64, 64)


class _Renamed:
    """Pickle ``obj``'s class under another module path (as an older Ultralytics wrote it)."""

    def __init__(self, cls: type, module: str, name: str):
        self.cls, self.module, self.name = cls, module, name

    def __enter__(self):
        self.saved = (self.cls.__module__, self.cls.__qualname__)
        self.created = self.module not in sys.modules
        self.host = sys.modules.setdefault(self.module, types.ModuleType(self.module))
        self.had = hasattr(self.host, self.name)
        self.old = getattr(self.host, self.name, None)
        setattr(self.host, self.name, self.cls)
        self.cls.__module__, self.cls.__qualname__ = self.module, self.name

    def __exit__(self, *exc):
        self.cls.__module__, self.cls.__qualname__ = self.saved
        if self.created:
            del sys.modules[self.module]
        elif self.had:
            setattr(self.host, self.name, self.old)
        else:
            delattr(self.host, self.name)


def test_ultralytics_checkpoint_layouts_load_without_trust(tmp_path):
    """What Ultralytics' trainer and older releases put in a checkpoint: training arguments as an
    IterableSimpleNamespace (once under ``ultralytics.yolo.utils``), numpy metrics, paths, a pickled
    ``Detect.forward`` (``getattr``) and YOLOv9's ``Silence`` layer (now ``nn.Identity``)."""
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import IterableSimpleNamespace

    model = DetectionModel("yolov8n.yaml", verbose=False)
    model.model[-1].legacy_forward = Detect.forward  # what non-detect YOLOv8 heads pickled
    model.model[0].act.legacy_fused = model.model[0].forward_fuse  # a bound forward_fuse
    silence = type("Silence", (torch.nn.Identity,), {})
    model.silence = silence()
    path = tmp_path / "legacy.pt"
    with _Renamed(IterableSimpleNamespace, "ultralytics.yolo.utils", "IterableSimpleNamespace"), \
            _Renamed(silence, "ultralytics.nn.modules.block", "Silence"):
        torch.save({"model": model, "ema": None, "updates": 3, "optimizer": None, "epoch": -1,
                    "train_args": IterableSimpleNamespace(task="detect", imgsz=64, data=Path("coco8.yaml")),
                    "train_metrics": {"metrics/mAP50-95(B)": np.float64(0.5), "fitness": np.float32(0.4)},
                    "train_results": {"epoch": np.arange(3)}, "date": "2023-01-01T00:00:00", "version": "8.0.20"},
                   path)
    ckpt = read_torch_file(path)
    assert type(ckpt["model"].silence) is torch.nn.Identity
    assert ckpt["train_args"].imgsz == 64 and float(ckpt["train_metrics"]["fitness"]) == pytest.approx(0.4)
    assert ckpt["model"].model[-1].legacy_forward is Detect.forward
    assert type(ckpt["train_results"]["epoch"]) is np.ndarray


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvilGetattr:
    def __reduce__(self):
        return getattr, (torch.nn.Conv2d, "__init__")


@pytest.mark.parametrize("payload", ["system", "getattr"])
def test_crafted_pickle_is_refused_without_running(cli, tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    from ultralytics.nn.tasks import DetectionModel

    evil = _Evil(marker) if payload == "system" else _EvilGetattr()
    torch.save({"model": DetectionModel("yolov8n.yaml", verbose=False), "x": evil}, path)
    with pytest.raises(UsageError) as e:
        read_torch_file(path)
    assert "\n" not in str(e.value)
    code, out, err = cli(path, "-o", tmp_path / "x.onnx", "--no-measure")
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("yolocc: error:")
    assert not marker.exists() and not (tmp_path / "x.onnx").exists()

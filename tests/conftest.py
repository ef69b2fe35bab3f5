"""Shared fixtures: fresh compilers, small model builders, and an in-process CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

#: Small input size that keeps YOLO tests fast on 2 cores.
IMGSZ = 160


class SmallCNN(nn.Module):
    """A plain torch CNN with a residual add, BN and a linear classifier."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                   nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32))
        self.down = nn.Sequential(nn.Conv2d(32, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = self.down(x)
        return self.head(x.mean((2, 3)))


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # non-trivial BN statistics so fusion is really tested
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


@pytest.fixture
def compiler():
    from yolocc.compiler.api import Compiler

    return Compiler()


_IR_CACHE: dict = {}


@pytest.fixture
def load_ir():
    """Load a model by name once per test session; every call returns a fresh deep copy."""
    from yolocc.compiler.api import Compiler

    def load(source, imgsz=IMGSZ):
        key = (source, imgsz)
        if key not in _IR_CACHE:
            _IR_CACHE[key] = Compiler().load(small_cnn() if source == "cnn" else source, imgsz)
        return _IR_CACHE[key].snapshot()

    return load


_COMPILER: list = []


def pass_ctx(ir, **options):
    """A ``PassContext`` as the pipeline builds it: ``ir``'s frontend, the default target, ``options``."""
    from yolocc.compiler.api import Compiler
    from yolocc.compiler.options import CompileOptions

    if not _COMPILER:
        _COMPILER.append(Compiler())
    return _COMPILER[0].context(ir, CompileOptions(**options))


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory):
    """Eight small real-ish images (PNG) written with OpenCV."""
    import cv2
    import numpy as np

    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    for i in range(8):
        img = (rng.random((120, 200, 3)) * 255).astype(np.uint8)
        cv2.circle(img, (60 + 10 * i, 60), 25, (255, 255, 255), -1)
        cv2.imwrite(str(folder / f"im{i}.png"), img)
    return folder


def make_digits(out: Path, *args: str) -> Path:
    """``out`` filled by ``examples/digits/make_dataset.py --out out ARGS`` (its sizes and sets)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "examples/digits/make_dataset.py"
    subprocess.run([sys.executable, str(script), "--out", str(out), *args], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory) -> Path:
    """A small copy of the digits data (``make_dataset.py --out``, about 2 s): 32 train, 16 val,
    32 calibration and 16 test images per detection and segment/pose/OBB set, no classification set.
    For tests whose point is a code path, not a metric: validation and calibration cost seconds, not minutes."""
    return make_digits(tmp_path_factory.mktemp("tiny-digits"), "--n-train", "32", "--n-val", "16", "--n-calib", "32",
                       "--n-test", "16", "--n-cls-train", "0")


@pytest.fixture
def cnn_path(tmp_path):
    path = tmp_path / "cnn.pt"
    torch.save(small_cnn(), path)
    return path


@pytest.fixture
def cli(capsys):
    """Run ``yolocc`` in-process; returns (exit code, stdout, stderr)."""
    from yolocc.compiler.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run

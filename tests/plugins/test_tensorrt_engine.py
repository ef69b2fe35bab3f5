"""The TensorRT engine emitter (plugins/tensorrt_engine.py).

TensorRT cannot be installed here, so: the missing-TensorRT and missing-GPU paths run for real
through the CLI, and the build itself runs against a stand-in ``tensorrt`` module that implements
the documented API calls the emitter makes and records them.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

IMGSZ = 64


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "calib.npy"
    np.save(path, np.random.default_rng(0).random((4, 3, IMGSZ, IMGSZ), dtype=np.float32))
    return path


def _no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if "engine" in p.name]


def test_engine_without_tensorrt_exits_2_one_line_no_file(cli, cnn_path, tmp_path, calib, monkeypatch):
    _no_tensorrt(monkeypatch)
    out = tmp_path / "m.engine"
    code, _, err = cli(cnn_path, "--trust-model", "--imgsz", IMGSZ, "-p", "int8", "--calib", calib,
                       "--target", "tensorrt", "-o", out, "--no-measure")
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "TensorRT" in lines[0] and "not installed" in lines[0] and "pip install" in lines[0]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_engine_needs_the_tensorrt_target(cli, cnn_path, tmp_path, monkeypatch):
    _no_tensorrt(monkeypatch)
    out = tmp_path / "m.engine"
    code, _, err = cli(cnn_path, "--trust-model", "--imgsz", IMGSZ, "-o", out, "--no-measure")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--target tensorrt" in err
    assert not out.exists() and _leftovers(tmp_path) == []


class FakeTensorRT:
    """The parts of TensorRT's Python API the emitter uses, recording what it is asked to do."""

    def __init__(self, fast_fp16=True, parse_ok=True, build_ok=True):
        self.calls: list = []
        fake = self

        class Logger:
            WARNING = "warning"

            def __init__(self, severity):
                fake.calls.append(("Logger", severity))

        class _Enum:
            def __init__(self, **values):
                self.__dict__.update(values)

        class Input:
            name, shape = "images", (1, 3, IMGSZ, IMGSZ)

        class Network:
            def get_input(self, i):
                return Input()

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                pass

            def parse(self, data):
                fake.calls.append(("parse", len(data)))
                return parse_ok

            def get_error(self, i):
                return "In node 3: unsupported QuantizeLinear zero point"

        class TimingCache:
            def serialize(self):
                return b"TIMING"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("pool", pool, size))

            def set_flag(self, flag):
                fake.calls.append(("flag", flag))

            def create_timing_cache(self, data):
                fake.calls.append(("timing_cache_in", bytes(data)))
                return TimingCache()

            def set_timing_cache(self, cache, ignore_mismatch):
                fake.calls.append(("set_timing_cache", ignore_mismatch))

            def get_timing_cache(self):
                return TimingCache()

            def add_optimization_profile(self, profile):
                fake.calls.append(("profile",))

        class Builder:
            platform_has_fast_fp16 = fast_fp16

            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls.append(("network", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build",))
                return b"\x00ENGINE\x01" if build_ok else None

        self.module = types.SimpleNamespace(
            __version__="10.0-fake", Logger=Logger, Builder=Builder, OnnxParser=Parser,
            NetworkDefinitionCreationFlag=_Enum(EXPLICIT_BATCH=0),
            MemoryPoolType=_Enum(WORKSPACE="workspace"), BuilderFlag=_Enum(INT8="int8", FP16="fp16"))


def _install_fake(monkeypatch, fake, gpus=1):
    from yolocc.plugins import tensorrt_engine

    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    monkeypatch.setattr(tensorrt_engine, "cuda_gpu_count", lambda: gpus)


def test_engine_without_gpu_exits_2_one_line_no_file(cli, cnn_path, tmp_path, calib, monkeypatch):
    fake = FakeTensorRT()
    _install_fake(monkeypatch, fake, gpus=0)
    out = tmp_path / "m.engine"
    code, _, err = cli(cnn_path, "--trust-model", "--imgsz", IMGSZ, "-p", "int8", "--calib", calib,
                       "--target", "tensorrt", "-o", out, "--no-measure")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "CUDA GPU" in err
    assert not out.exists() and _leftovers(tmp_path) == [] and ("build",) not in fake.calls


def test_engine_build_calls_and_ultralytics_layout(tmp_path, calib, monkeypatch):
    from ultralytics.nn.backends.base import BaseBackend

    from yolocc.compiler.api import compile_model

    fake = FakeTensorRT()
    _install_fake(monkeypatch, fake)
    monkeypatch.setenv("YOLOCC_TRT_WORKSPACE_GB", "2")
    out = tmp_path / "m.engine"
    result = compile_model("yolov8n.yaml", ["int8"], out, imgsz=IMGSZ, calib=str(calib), target="tensorrt",
                           measure=False)
    calls = fake.calls
    assert ("network", 1) in calls  # explicit batch (TensorRT < 10 needs the flag; 10 ignores it)
    assert ("pool", "workspace", 2 << 30) in calls
    assert ("flag", "int8") in calls and ("flag", "fp16") in calls  # Q/DQ graph: explicit INT8, float parts FP16
    assert ("timing_cache_in", b"") in calls and ("set_timing_cache", False) in calls
    assert calls.index(("build",)) > calls.index(("set_timing_cache", False))
    assert (tmp_path / "cache" / "tensorrt" / "timing.cache").read_bytes() == b"TIMING"
    data = out.read_bytes()
    offset, meta = BaseBackend.engine_header(out)  # Ultralytics' own reader of the header
    assert data[offset:] == b"\x00ENGINE\x01"
    assert meta["task"] == "detect" and meta["imgsz"] == [IMGSZ, IMGSZ] and meta["stride"] == 32
    assert len(meta["names"]) == 80 and int.from_bytes(data[:4], "little") == offset - 4
    art = result.report.artifact
    assert art["emitter"] == "tensorrt-engine" and art["precisions"] == ["fp32", "int8", "fp16"]
    assert art["engine_bytes"] == 8 and art["timing_cache_reused"] is False

    fake.calls.clear()  # a second build reuses the timing cache
    compile_model("yolov8n.yaml", ["int8"], tmp_path / "again.engine", imgsz=IMGSZ, calib=str(calib),
                  target="tensorrt", measure=False)
    assert ("timing_cache_in", b"TIMING") in fake.calls


def test_float_engine_and_parser_errors(tmp_path, monkeypatch):
    from yolocc.compiler.api import compile_model
    from yolocc.compiler.errors import ExportError

    fake = FakeTensorRT(fast_fp16=False)
    _install_fake(monkeypatch, fake)
    compile_model("yolov8n.yaml", [], tmp_path / "f.engine", imgsz=IMGSZ, target="tensorrt", measure=False)
    assert not [c for c in fake.calls if c[0] == "flag"]  # no Q/DQ, no fast FP16: an FP32 engine
    bad = FakeTensorRT(parse_ok=False)
    _install_fake(monkeypatch, bad)
    with pytest.raises(ExportError, match="ONNX parser rejected the model: In node 3"):
        compile_model("yolov8n.yaml", [], tmp_path / "bad.engine", imgsz=IMGSZ, target="tensorrt", measure=False)
    assert not (tmp_path / "bad.engine").exists()
    failed = FakeTensorRT(build_ok=False)
    _install_fake(monkeypatch, failed)
    with pytest.raises(ExportError, match="failed to build"):
        compile_model("yolov8n.yaml", [], tmp_path / "none.engine", imgsz=IMGSZ, target="tensorrt", measure=False)
    assert not (tmp_path / "none.engine").exists()


def test_metadata_header_round_trips():
    from yolocc.plugins.tensorrt_engine import with_header

    blob = with_header({"names": {0: "a"}, "imgsz": [64, 64]}, b"ENG")
    n = int.from_bytes(blob[:4], "little")
    assert json.loads(blob[4:4 + n]) == {"imgsz": [64, 64], "names": {"0": "a"}} and blob[4 + n:] == b"ENG"

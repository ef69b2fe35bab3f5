"""Inputs Ultralytics users bring (issue 19, kinds 3-5): dynamic models that Ultralytics' own client runs,
1-channel (grayscale) models, rectangular ``--imgsz H,W``. Each asserts the exit code, a one-line
error where an error is right, and the output (shapes; cosine against FP32 for INT8)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
DETECTOR = DIGITS / "weights" / "yolov8n-digits.pt"
DATA = DIGITS / "data" / "digits.yaml"
CALIB = DIGITS / "data" / "calib" / "images"

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="digits data not generated "
                                                          "(python examples/digits/make_dataset.py)")


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("yolocc: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _inputs(model: str | Path, imgsz, n: int = 16) -> np.ndarray:
    """``n`` calibration images preprocessed exactly as the compile preprocesses them."""
    from yolocc.compiler.api import Compiler
    from yolocc.passes.calib_data import load_calibration

    compiler = Compiler()
    ir = compiler.load(str(model), imgsz)
    frontend = compiler.registry.frontends[ir.frontend].obj
    return load_calibration(str(CALIB), n, ir.input.shape, lambda im: frontend.preprocess(ir, im))


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"images": x[i:i + 1]})[0] for i in range(len(x))])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _frame() -> np.ndarray:
    """A 240 (high) x 120 (wide) BGR frame cut from a validation canvas."""
    import cv2

    image = cv2.imread(str(sorted((DATA.parent / "val" / "images").iterdir())[0]))
    return cv2.resize(image, (120, 240))


# ---------------------------------------------------------------- kind 3: dynamic models in Ultralytics
@pytest.mark.parametrize("target, name", [("ort-cpu", "dyn.onnx"), ("openvino", "dyn_openvino_model")])
def test_dynamic_batch_artifact_runs_in_ultralytics(cli, tmp_path, target, name):
    """``--dynamic-batch --data`` exits 0; the artifact takes any batch and any stride-multiple H, W (as
    Ultralytics' dynamic exports do), and Ultralytics' own client validates it and predicts a 240x120 frame."""
    if target == "openvino":
        pytest.importorskip("openvino")
    from ultralytics import YOLO

    out, rj = tmp_path / name, tmp_path / "r.json"
    code, _, err = cli(DETECTOR, "--dynamic-batch", "--data", DATA, "--target", target, "-o", out,
                       "--latency-runs", 0, "--report", rj)
    assert code == 0, err
    report = json.loads(rj.read_text())
    assert report["artifact"]["inputs"]["images"][0] in ("batch", "?")
    assert report["stages"][0]["metrics"]["mAP50-95"] > 0.55  # Ultralytics' validator on the artifact's runtime

    model = YOLO(str(out), task="detect")
    val = model.val(data=str(DATA), imgsz=160, batch=4, device="cpu", plots=False, verbose=False, workers=0,
                    project=str(tmp_path), name="val")
    assert val.box.map > 0.55
    result = model.predict(_frame(), imgsz=160, device="cpu", verbose=False)[0]
    assert result.orig_shape == (240, 120) and result.boxes.xyxy.shape[1] == 4
    if target == "ort-cpu":  # batch 2 at two sizes: symbolic batch, height and width
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert [d for d in sess.get_inputs()[0].shape] == ["batch", 3, "height", "width"]
        assert sess.run(None, {"images": np.zeros((2, 3, 160, 160), np.float32)})[0].shape == (2, 14, 525)
        assert sess.run(None, {"images": np.zeros((2, 3, 96, 160), np.float32)})[0].shape == (2, 14, 315)


def test_dynamic_batch_matches_the_static_model(compiler, tmp_path):
    """At the compile size, the dynamic INT8 model computes what the static one does; at another size
    (96x160), the dynamic FP32 model computes what a static compile at that size does (anchors follow)."""
    static, dynamic = tmp_path / "s.onnx", tmp_path / "d.onnx"
    compiler.compile(str(DETECTOR), ["int8:method=minmax"], static, calib=str(CALIB), measure=False)
    compiler.compile(str(DETECTOR), ["int8:method=minmax"], dynamic, calib=str(CALIB), measure=False,
                     dynamic_batch=True)
    x = _inputs(DETECTOR, None, 8)
    assert _cosine(_run(static, x), _run(dynamic, x)) > 0.9999
    rect, dynamic32 = tmp_path / "r.onnx", tmp_path / "d32.onnx"
    compiler.compile(str(DETECTOR), [], rect, imgsz=(96, 160), measure=False)
    compiler.compile(str(DETECTOR), [], dynamic32, measure=False, dynamic_batch=True)
    x = _inputs(DETECTOR, (96, 160), 8)
    a, b = _run(rect, x), _run(dynamic32, x)
    assert a.shape == b.shape == (8, 14, 315) and np.abs(a - b).max() < 1e-3


# ---------------------------------------------------------------- kind 4: 1-channel models
@pytest.fixture(scope="module")
def gray_detector(tmp_path_factory) -> Path:
    """The digits detector made grayscale: its first convolution sums the colour channels' weights (an
    exact model of a gray image fed as R = G = B), saved as an Ultralytics checkpoint with ``channels: 1``."""
    import torch
    from ultralytics import YOLO

    yolo = YOLO(str(DETECTOR))
    model = yolo.model.float()
    conv = model.model[0].conv
    with torch.no_grad():
        gray = torch.nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
        gray.weight.copy_(conv.weight.sum(1, keepdim=True))
    model.model[0].conv = gray
    model.yaml["channels"] = 1
    path = tmp_path_factory.mktemp("gray") / "digits-gray.pt"
    torch.save({"model": model, "train_args": {"imgsz": 160}}, path)
    return path


def test_grayscale_model_calibrates_and_evaluates_from_images(cli, tmp_path, gray_detector):
    """A 1-channel model: ``-p int8 --calib IMAGES/`` (read as grayscale) and ``--data`` without a
    ``channels`` key (validated on grayscale images) exit 0; INT8 keeps cosine > 0.99 against FP32."""
    fp32, q, rj = tmp_path / "fp32.onnx", tmp_path / "q.onnx", tmp_path / "r.json"
    assert cli(gray_detector, "-o", fp32, "--no-measure")[0] == 0
    code, _, err = cli(gray_detector, "-p", "int8", "--calib", CALIB, "--data", DATA, "-o", q, "--latency-runs", 0,
                       "--report", rj)
    assert code == 0, err
    model = onnx.load(str(q))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 1, 160, 160]
    assert {p.key: p.value for p in model.metadata_props}["channels"] == "1"
    stages = json.loads(rj.read_text())["stages"]
    assert stages[0]["metrics"]["mAP50-95"] > 0.3  # real detections from gray images (colour model: 0.62)
    x = _inputs(gray_detector, None)
    assert x.shape == (16, 1, 160, 160)
    assert _cosine(_run(fp32, x), _run(q, x)) > 0.99


def test_grayscale_model_refuses_data_declaring_colour(cli, tmp_path, gray_detector):
    bad = tmp_path / "colour.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(DATA.read_text()), "channels": 3,
                                   "path": str(DATA.parent)}))
    code, _, err = cli(gray_detector, "-p", "int8", "--calib", bad, "-o", tmp_path / "q.onnx", "--no-measure")
    assert code == 2 and "declares channels: 3 but the model takes 1-channel input" in _one_line(err)


# ---------------------------------------------------------------- kind 5: rectangular --imgsz H,W
def test_rectangular_imgsz_through_int8_report_and_ultralytics(cli, tmp_path):
    """``--imgsz 96,160``: prune + INT8 exit 0, the ONNX takes (1, 3, 96, 160), its metadata says
    ``imgsz: [96, 160]``, the report shows 96x160, INT8 keeps cosine > 0.99 against FP32 and Ultralytics
    predicts a 240x120 frame with it."""
    from ultralytics import YOLO

    fp32, q, rj, md = tmp_path / "fp32.onnx", tmp_path / "q.onnx", tmp_path / "r.json", tmp_path / "r.md"
    assert cli(DETECTOR, "--imgsz", "96,160", "-o", fp32, "--no-measure")[0] == 0
    code, out, err = cli(DETECTOR, "--imgsz", "96,160", "-p", "int8", "--calib", CALIB, "-o", q,
                         "--latency-runs", 1, "--report", rj, "--report", md)
    assert code == 0, err
    assert "imgsz 96x160" in out and "imgsz: 96x160" in md.read_text()
    report = json.loads(rj.read_text())
    assert report["imgsz"] == [96, 160] and report["artifact"]["inputs"]["images"] == [1, 3, 96, 160]
    assert report["artifact"]["outputs"]["output0"] == [1, 14, 3 * 5 + 6 * 10 + 12 * 20]
    assert report["stages"][-1]["macs"] > 0
    meta = {p.key: p.value for p in onnx.load(str(q)).metadata_props}
    assert meta["imgsz"] == "[96, 160]"
    x = _inputs(DETECTOR, (96, 160))
    assert x.shape == (16, 3, 96, 160)
    assert _cosine(_run(fp32, x), _run(q, x)) > 0.99
    result = YOLO(str(q), task="detect").predict(_frame(), device="cpu", verbose=False)[0]
    assert result.orig_shape == (240, 120)


def test_rectangular_openvino_metadata(cli, tmp_path):
    pytest.importorskip("openvino")
    folder = tmp_path / "rect_openvino_model"
    code, _, err = cli(DETECTOR, "--imgsz", "96,160", "--target", "openvino", "-o", folder, "--no-measure")
    assert code == 0, err
    assert yaml.safe_load((folder / "metadata.yaml").read_text())["imgsz"] == [96, 160]


def test_square_imgsz_given_as_h_w_gives_the_same_bytes(cli, tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert cli(DETECTOR, "--imgsz", "160", "-o", a, "--no-measure")[0] == 0
    assert cli(DETECTOR, "--imgsz", "160,160", "-o", b, "--no-measure")[0] == 0
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("imgsz, message", [("100,160", "multiple of the model stride 32, got 100,160"),
                                            ("96,160,3", "imgsz must be N or H,W"),
                                            ("96,0", "between 1 and 8192")])
def test_bad_rectangular_imgsz_is_one_line(cli, tmp_path, imgsz, message):
    code, _, err = cli(DETECTOR, "--imgsz", imgsz, "-o", tmp_path / "x.onnx", "--no-measure")
    assert code == 2 and message in _one_line(err)


def test_rectangular_imgsz_from_recipe_and_options():
    from yolocc.compiler.errors import UsageError
    from yolocc.compiler.options import CompileOptions

    assert CompileOptions.from_mapping({"imgsz": [96, 160]}).imgsz == (96, 160)
    assert CompileOptions.from_mapping({"imgsz": [160, 160]}).imgsz == 160
    assert CompileOptions(imgsz="96,160").imgsz == (96, 160)
    with pytest.raises(UsageError, match="must be int or"):
        CompileOptions.from_mapping({"imgsz": "big"})

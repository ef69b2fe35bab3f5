"""--data accuracy with Ultralytics' validator, on the val or the held-out test split."""

import importlib.util
from pathlib import Path

import pytest

from yolocc.compiler.errors import UsageError

DETECTOR = "examples/digits/weights/yolov8n-digits.pt"


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    """A few images of each split from the bundled generator (seconds)."""
    spec = importlib.util.spec_from_file_location("make_dataset", "examples/digits/make_dataset.py")
    make_dataset = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_dataset)
    out = tmp_path_factory.mktemp("digits")
    make_dataset.main(["--out", str(out), "--n-train", "6", "--n-val", "6", "--n-calib", "2", "--n-test", "6",
                       "--n-cls-train", "0"])
    return out


def _map(compiler, tmp_path, data, split):
    res = compiler.compile(DETECTOR, [], tmp_path / "m.onnx", data=str(data), eval_split=split, latency_runs=0)
    return res.report.stages[0].metrics


def _yaml(tmp_path, root: Path, test: str | None) -> Path:
    text = f"path: {root}\ntrain: train/images\nval: val/images\n" + (f"test: {test}\n" if test else "")
    path = tmp_path / "d.yaml"
    path.write_text(text + "names: {" + ", ".join(f"{i}: '{i}'" for i in range(10)) + "}\n")
    return path


def test_test_split_is_the_one_evaluated(compiler, tmp_path, tiny_digits):
    val = _map(compiler, tmp_path, tiny_digits / "digits.yaml", "val")
    assert set(val) == {"mAP50-95", "mAP50"}
    # test pointing at the val images gives the val numbers; at the train images, other numbers
    assert _map(compiler, tmp_path, _yaml(tmp_path, tiny_digits, "val/images"), "test") == val
    assert _map(compiler, tmp_path, _yaml(tmp_path, tiny_digits, "train/images"), "test") != val


def test_missing_test_split_is_a_clear_error(compiler, tmp_path, tiny_digits):
    with pytest.raises(UsageError, match="has no 'test:' entry to evaluate on"):
        _map(compiler, tmp_path, _yaml(tmp_path, tiny_digits, None), "test")
    (tmp_path / "cls" / "val" / "0").mkdir(parents=True)
    with pytest.raises(UsageError, match="has no 'test' folder to evaluate on"):
        from yolocc.plugins.ort_runtime import OrtCpuRuntime
        from yolocc.plugins.ultralytics_eval import evaluate_onnx

        evaluate_onnx(b"", str(tmp_path / "cls"), 64, "classify", OrtCpuRuntime(), split="test")


def test_unknown_split(compiler, tmp_path, tiny_digits):
    with pytest.raises(UsageError, match="unknown evaluation split 'train'"):
        _map(compiler, tmp_path, tiny_digits / "digits.yaml", "train")

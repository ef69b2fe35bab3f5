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


def test_val_metrics_carry_paired_bootstrap_replicates(compiler, tmp_path, tiny_digits):
    """Every evaluation carries bootstrap replicates of its primary metric; the same model measured twice
    has a drop of exactly 0 +- 0 (the resamples are paired), and the metric lies among its replicates."""
    from yolocc.compiler.metrics import BOOTSTRAP, drop_se
    from yolocc.plugins.ort_runtime import OrtCpuRuntime
    from yolocc.plugins.ultralytics_eval import evaluate_onnx

    compiler.compile(DETECTOR, [], tmp_path / "m.onnx", latency_runs=0)
    model = (tmp_path / "m.onnx").read_bytes()
    a, b = (evaluate_onnx(model, str(tiny_digits / "digits.yaml"), 160, "detect", OrtCpuRuntime()) for _ in range(2))
    assert len(a.replicates) == BOOTSTRAP and a == b and drop_se(a, b) == 0.0
    assert min(a.replicates) <= a.value <= max(a.replicates) and max(a.replicates) > min(a.replicates)


def _image(tp_rows, conf, cls=0):
    import numpy as np

    return {"tp": np.array(tp_rows, dtype=bool).reshape(-1, 10), "conf": np.array(conf, dtype=float),
            "pred_cls": np.full(len(conf), cls, dtype=float), "target_cls": np.array([cls], dtype=float),
            "target_img": np.array([cls]), "im_name": None}


def test_bootstrap_resamples_the_same_images_whatever_their_order():
    """``PerImage`` keys images by name: two validations that saw the images in another order resample
    the same images (identical replicates); a model that misses one image more has a drop with a
    positive paired standard error; classify resamples top-1 hits."""
    import numpy as np
    from types import SimpleNamespace

    from yolocc.compiler.metrics import Metrics, drop_se
    from yolocc.plugins.ultralytics_bootstrap import PerImage

    def run(images, task="detect"):
        per = PerImage(task)
        metrics = SimpleNamespace(update_stats=lambda stat: None)
        per.hook(SimpleNamespace(metrics=metrics))
        for name, stat in images:
            metrics.update_stats({**stat, "im_name": name})
        return per.replicates(n=50)

    hit, miss = _image([[True] * 10], [0.9]), _image([[False] * 10], [0.9])
    images = [(f"{i}.png", hit if i % 3 else miss) for i in range(9)]
    forward, backward = run(images), run(images[::-1])
    assert forward == backward and len(forward) == 50 and len(set(forward)) > 1
    worse = run([(name, miss if name == "1.png" else stat) for name, stat in images])
    ref, cand = (Metrics("mAP50-95", {"mAP50-95": 0.5}, tuple(r)) for r in (forward, worse))
    assert drop_se(ref, cand) > 0 and np.mean(forward) > np.mean(worse)

    per = PerImage("classify")
    metrics = SimpleNamespace(process=lambda targets, pred: None)
    per.hook(SimpleNamespace(metrics=metrics))
    metrics.process([np.array([0, 1, 2, 3])], [np.array([[0, 5], [1, 5], [9, 2], [3, 1]])])
    reps = per.replicates(n=100)
    assert len(reps) == 100 and all(0 <= r <= 1 for r in reps) and abs(np.mean(reps) - 0.75) < 0.1

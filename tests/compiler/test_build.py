"""Build-system behaviour: recipes, the compile cache, deterministic bytes, threads."""

import hashlib
import json
import threading

import pytest

from yolocc.compiler.api import Compiler, compile_model
from yolocc.compiler.errors import UsageError
from yolocc.compiler.recipe import load_recipe
from tests.conftest import IMGSZ


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_recipe_equals_flags(cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("passes:\n  - prune:0.25\n  - {name: fuse-bn}\nimgsz: 160\n")
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert cli("yolov8n.yaml", "--recipe", recipe, "-o", a, "--no-measure")[0] == 0
    assert cli("yolov8n.yaml", "-p", "prune:0.25", "-p", "fuse-bn", "--imgsz", IMGSZ, "-o", b, "--no-measure")[0] == 0
    assert _sha(a) == _sha(b)


def test_pyproject_recipe(tmp_path):
    py = tmp_path / "pyproject.toml"
    py.write_text('[tool.yolocc]\npasses = ["prune:ratio=0.3", "fuse-bn"]\ntarget = "tensorrt"\n')
    specs, options = load_recipe(py)
    assert [str(s) for s in specs] == ["prune:ratio=0.3", "fuse-bn"] and options == {"target": "tensorrt"}


@pytest.mark.parametrize("text, message", [("passes: prune\n", "must be a list"), ("bogus: 1\n", "unknown key"),
                                           ("passes: [3]\n", "must be 'name:args'"), ("imgsz: big\n", "must be int")])
def test_bad_recipes(tmp_path, text, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_recipe(recipe)


def test_recipe_and_flags_conflict(cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("passes: [prune]\n")
    code, _, err = cli("yolov8n.yaml", "--recipe", recipe, "-p", "fuse-bn", "--dry-run")
    assert code == 2 and "either in the recipe or with -p" in err


def test_cache_hit_skips_compile(tmp_path):
    cache = tmp_path / "cache"
    first = compile_model("yolov8n.yaml", ["prune:0.25"], tmp_path / "a.onnx", imgsz=IMGSZ, cache_dir=cache,
                          latency_runs=2)
    second = compile_model("yolov8n.yaml", ["prune:0.25"], tmp_path / "b.onnx", imgsz=IMGSZ, cache_dir=cache,
                           latency_runs=2)
    assert first.report.cache["hit"] is False and second.report.cache["hit"] is True
    assert second.ir is None and _sha(tmp_path / "a.onnx") == _sha(tmp_path / "b.onnx")
    assert [s.name for s in second.report.stages] == ["input", "canonicalize", "prune"]
    third = compile_model("yolov8n.yaml", ["prune:0.3"], tmp_path / "c.onnx", imgsz=IMGSZ, cache_dir=cache,
                          measure=False)
    assert third.report.cache["hit"] is False  # different arguments, different key


def test_two_threads_do_not_interfere(tmp_path):
    results = {}

    def work(name, passes):
        results[name] = compile_model("yolov8n.yaml", passes, tmp_path / f"{name}.onnx", imgsz=IMGSZ, measure=False)

    threads = [threading.Thread(target=work, args=("pruned", ["prune:0.5"])),
               threading.Thread(target=work, args=("plain", ["fuse-bn"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["plain"].ir.param_count() > results["pruned"].ir.param_count()
    for name, passes in (("pruned", ["prune:0.5"]), ("plain", ["fuse-bn"])):  # each against a serial run
        compile_model("yolov8n.yaml", passes, tmp_path / f"{name}-serial.onnx", imgsz=IMGSZ, measure=False)
        assert _sha(tmp_path / f"{name}.onnx") == _sha(tmp_path / f"{name}-serial.onnx"), name


def test_json_output_is_machine_readable(cli, tmp_path):
    code, out, _ = cli("yolov8n.yaml", "-p", "prune", "--imgsz", IMGSZ, "-o", tmp_path / "x.onnx", "--json",
                       "--latency-runs", 1)
    assert code == 0 and json.loads(out)["schema"] == "yolocc.report/2"

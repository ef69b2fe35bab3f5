"""Bad input, as a user (or an attacker) would give it: every case exits 2 with one line on stderr,
no traceback, and no new or changed file (the input included)."""

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import small_cnn

ROOT = Path(__file__).resolve().parents[2]
DETECTOR = ROOT / "examples/digits/weights/yolov8n-digits.pt"


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


class _Evil:
    """A pickle that runs code when loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture
def workdir(tmp_path, monkeypatch, calib_dir):
    """A folder holding one file of every input kind, good and bad."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path.parent / f"{tmp_path.name}-cache"))
    shutil.copy(DETECTOR, tmp_path / "det.pt")
    torch.save(small_cnn(), tmp_path / "cnn.pt")  # a full pickle of a user class
    torch.save({"model": _Evil(str(tmp_path / "PWNED"))}, tmp_path / "evil.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a pickle")
    (tmp_path / "corrupt.onnx").write_bytes(b"not onnx")
    (tmp_path / "bad.yaml").write_text("val: [unclosed\n")
    (tmp_path / "noval.yaml").write_text("train: images\nnames: {0: a}\n")
    (tmp_path / "plainfile").write_text("x")
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    shutil.copytree(calib_dir, tmp_path / "calib")
    from yolocc.compiler.api import compile_model

    compile_model("yolov8n.yaml", [], tmp_path / "v8.onnx", imgsz=64, measure=False)
    return tmp_path


CASES = [
    # (arguments, what the one line must say)
    (["missing.pt"], "does not exist"),
    (["corrupt.pt", "-p", "prune"], "not a valid PyTorch checkpoint"),
    (["corrupt.onnx"], "not a valid ONNX model"),
    (["evil.pt", "-p", "prune"], "full pickle"),
    (["cnn.pt", "--imgsz", "64"], "--trust-model"),
    (["det.pt", "-o", "det.pt"], "is the input model"),
    (["v8.onnx", "-o", "v8.onnx"], "is the input model"),
    (["det.pt", "-p", "prune", "-o", "./det.pt"], "is the input model"),
    (["det.pt", "-p", "fuse-bn", "-p", "prune", "-o", "x.onnx"], "cannot run after 'fuse-bn'"),
    (["det.pt", "-p", "fp16", "-p", "int8", "--calib", "calib", "-o", "x.onnx"], "cannot run after 'fp16'"),
    (["det.pt", "-p", "int8", "-p", "int8", "--calib", "calib", "-o", "x.onnx"], "already quantized"),
    (["det.pt", "-p", "int8", "--calib", "strings.npy", "-o", "x.onnx"], "calibration"),
    (["det.pt", "--data", "bad.yaml", "-o", "x.onnx", "--latency-runs", "1"], "bad.yaml"),
    (["det.pt", "--data", "noval.yaml", "-o", "x.onnx", "--latency-runs", "1"], "no 'val:' entry"),
    (["det.pt", "--cache", "plainfile", "-o", "x.onnx", "--latency-runs", "1"], "plainfile"),
    (["det.pt", "-o", "x.onnx", "--report", "plainfile/r.json"], "is a file, not a folder"),
    (["det.pt", "-o", "x.onnx", "--report", "/proc/r.json", "--no-measure"], "/proc/r.json"),
    (["det.pt", "-o", "/proc/x.onnx", "--no-measure"], "/proc/x.onnx"),
    (["det.pt", "-p", "prune:round_to=2.7"], "must be an integer"),
    (["det.pt", "-p", "prune:ratio=inf"], "finite number"),
    (["det.pt", "-p", "prune:ratio=1e999"], "finite number"),
    (["det.pt", "--max-drop", "1"], "--max-drop needs --data"),
    (["det.pt", "--target", "tpu"], "unknown target 'tpu'"),
    (["det.pt", "-o", "x.onnx", "--latency-turn", "0"], "latency_turn (--latency-turn) must be between 1 and 64"),
    (["v8.onnx", "-p", "prune"], "works on a PyTorch model"),
    (["det.pt", "--recipe", "bad.yaml"], "cannot read recipe"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_matrix(cli, workdir, args, message):
    before = _snapshot(workdir)
    code, out, err = cli(*args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("yolocc: error: ") and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    assert _snapshot(workdir) == before  # nothing new, nothing changed, the input intact
    assert not (workdir / "PWNED").exists()


def test_crafted_pickle_never_runs(cli, workdir):
    """Not under inspect, --dry-run or a compile: the marker file never appears."""
    for args in (["inspect", "evil.pt"], ["evil.pt", "--dry-run"], ["evil.pt", "-o", "x.onnx"]):
        code, _, err = cli(*args)
        assert code == 2 and "full pickle" in err
    assert not (workdir / "PWNED").exists()


def test_trusted_full_pickle_loads(compiler, workdir):
    ir = compiler.load("cnn.pt", 64, trust_model=True)
    assert ir.frontend == "torch"


def test_stale_partial_of_a_killed_run_is_removed(cli, workdir):
    stale = workdir / ".x.onnx.yolocc-999999-abc123.partial"  # pid 999999 does not exist
    stale.write_bytes(b"half an artifact")
    code, _, err = cli("v8.onnx", "-o", "x.onnx", "--no-measure")
    assert code == 0, err
    assert not stale.exists() and (workdir / "x.onnx").is_file()


def test_output_modes_follow_the_umask_and_are_kept_on_overwrite(cli, workdir):
    old = os.umask(0o022)
    try:
        assert cli("v8.onnx", "-o", "new.onnx", "--no-measure", "--report", "r.json")[0] == 0
        assert (workdir / "new.onnx").stat().st_mode & 0o777 == 0o644
        assert (workdir / "r.json").stat().st_mode & 0o777 == 0o644
        (workdir / "new.onnx").chmod(0o640)
        assert cli("v8.onnx", "-o", "new.onnx", "--no-measure")[0] == 0
        assert (workdir / "new.onnx").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_a_plugin_pass_that_raises_is_exit_2_naming_the_plugin(tmp_path):
    """An exception inside a third-party pass is a failed compile naming the plugin, not a yolocc bug."""
    import types

    from yolocc.compiler.api import Compiler
    from yolocc.compiler.errors import PassError
    from yolocc.compiler.hookspecs import hookimpl
    from yolocc.compiler.passbase import Pass
    from yolocc.compiler.registry import get_plugin_manager

    class Boom(Pass):
        """Always fails."""
        name, stage = "boom", "onnx"

        def call(self, ir, ctx):
            raise SystemExit("plugin called sys.exit")

    plugin = types.ModuleType("boom_plugin")
    plugin.yolocc_register_passes = hookimpl(lambda registry: registry.add_pass(Boom))
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(plugin, name="boom-plugin")
    with pytest.raises(PassError) as info:
        Compiler(pm).compile(small_cnn(), ["boom"], tmp_path / "x.onnx", imgsz=32, measure=False)
    assert "plugin 'boom-plugin'" in str(info.value) and not info.value.internal
    assert not (tmp_path / "x.onnx").exists()


def test_a_plugin_that_exits_at_import_is_skipped_and_reported(monkeypatch):
    """sys.exit() in a plugin's import must not end yolocc: the plugin is listed as broken."""
    import sys
    import types

    from yolocc.compiler import registry

    def load():
        sys.exit(3)

    fake = types.SimpleNamespace(name="exits-on-import", load=load, dist=None)
    monkeypatch.setattr(registry, "entry_points", lambda group: [fake])
    pm = registry.get_plugin_manager()
    reg = registry.build_registry(pm)
    assert "SystemExit" in reg.broken["exits-on-import"] and "prune" in reg.passes


def test_a_misspelled_hook_is_an_error_naming_the_plugin(monkeypatch):
    import types

    from yolocc.compiler import registry
    from yolocc.compiler.errors import PluginError
    from yolocc.compiler.hookspecs import hookimpl

    plugin = types.ModuleType("typo_plugin")
    plugin.yolocc_register_pass = hookimpl(lambda registry: None)  # the hook is yolocc_register_passes
    fake = types.SimpleNamespace(name="typo-plugin", load=lambda: plugin, dist=None)
    monkeypatch.setattr(registry, "entry_points", lambda group: [fake])
    with pytest.raises(PluginError, match="plugin 'typo-plugin'.*yolocc_register_pass"):
        registry.get_plugin_manager()

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import IMGSZ


def _one_clean_line(err: str):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("yolocc: error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["missing.pt", "-p", "prune"], "model file 'missing.pt' does not exist"),
    (["corrupt.pt", "-p", "prune"], "not a valid PyTorch checkpoint"),
    (["yolov8n.yaml", "-p", "prnue"], "unknown pass 'prnue'; available passes: act, calibrate, canonicalize, distill, finetune, fp16, fuse-bn, int8, prune, qat, qat-train, qdq, sensitivity, simplify"),
    (["yolov8n.yaml", "-p", "prune:1.5"], "ratio must be < 1.0, got 1.5"),
    (["yolov8n.yaml", "-p", "prune:abc"], "ratio must be a finite number, got 'abc'"),
    (["yolov8n.yaml", "-p", "prune:depth=2"], "pass 'prune' has no argument 'depth'"),
    (["yolov8n.yaml", "-p", "simplify", "-p", "prune"],
     "pass 'prune' (torch stage) cannot run after 'simplify' (onnx stage)"),
    (["yolov8n.yaml", "-p", "prune", "-o", "no/such/dir/out.onnx"], "folder 'no/such/dir' does not exist"),
    (["yolov8n.yaml", "-p", "prune", "-o", "out.tflite"], "no emitter writes '.tflite'"),
    (["yolov8n.yaml", "-p", "prune", "-o", "corrupt.pt/out.onnx"], "'corrupt.pt' is a file, not a folder"),
    (["yolov8n.yaml", "-p", "prune", "-o", "sub.onnx"], "output path 'sub.onnx' is a directory"),
    (["yolov8n.yaml", "--report", "r.txt"], "must end in .json or .md"),
    (["yolov8n.yaml", "--imgsz", "100"], "multiple of the model stride 32"),
    (["yolov8n.yaml", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_exits_2_with_one_line_and_no_output(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corrupt.pt").write_bytes(b"garbage")
    (tmp_path / "sub.onnx").mkdir()
    before = set(os.listdir(tmp_path))
    code, out, err = cli(*args)
    assert code == 2
    assert message in _one_clean_line(err)
    assert set(os.listdir(tmp_path)) == before  # nothing written, no temp files left


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux procfs")
def test_unwritable_output_folder(cli, tmp_path):
    """procfs refuses new files even to root (who ignores permission bits), so this runs in CI."""
    code, _, err = cli("yolov8n.yaml", "-o", "/proc/yolocc-out.onnx", "--imgsz", IMGSZ)
    assert code == 2 and "folder '/proc' is not writable" in _one_clean_line(err)
    assert not os.path.exists("/proc/yolocc-out.onnx")


def test_compile_writes_artifact_and_reports(cli, tmp_path):
    out, rj, rm = tmp_path / "p.onnx", tmp_path / "r.json", tmp_path / "r.md"
    code, stdout, err = cli("yolov8n.yaml", "-p", "prune:0.25", "-o", out, "--imgsz", IMGSZ,
                            "--report", rj, "--report", rm, "--latency-runs", 3)
    assert code == 0, err
    report = json.loads(rj.read_text())
    assert report["schema"] == "yolocc.report/2"
    names = [s["name"] for s in report["stages"]]
    assert names == ["input", "canonicalize", "prune"]
    for stage in report["stages"]:
        assert {"name", "params", "macs", "size_bytes", "latency_ms"} <= set(stage)
    inp, pruned = report["stages"][0], report["stages"][-1]
    assert pruned["params"] < 0.7 * inp["params"] and pruned["macs"] < inp["macs"]
    assert "output0[scores]" in pruned["fidelity"]
    assert report["stages"][1]["fidelity"]["output0"]["rel_err"] < 1e-4  # canonicalize is exact
    assert report["artifact"]["size_bytes"] == out.stat().st_size
    assert "| prune |" in rm.read_text() and "prune" in stdout


def test_latency_turn_reaches_the_report(cli, tmp_path):
    """``--latency-turn 3``: the report says each timed run is the last of three in a row."""
    out, rj, rm = tmp_path / "p.onnx", tmp_path / "r.json", tmp_path / "r.md"
    code, stdout, err = cli("yolov8n.yaml", "-p", "fuse-bn", "-o", out, "--imgsz", IMGSZ, "--report", rj,
                            "--report", rm, "--latency-runs", 2, "--latency-turn", 3)
    assert code == 0, err
    report = json.loads(rj.read_text())
    assert report["latency"]["turn"] == 3 and report["latency"]["runs"] == 2
    assert all(s["latency_ms"] > 0 for s in report["stages"])
    assert "each the last of 3 in a row" in " ".join(stdout.split())
    assert "each the last of 3 runs in a row" in rm.read_text()


def test_dry_run_prints_plan_and_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("yolov8n.yaml", "-p", "prune", "-p", "simplify", "--dry-run", "--imgsz", IMGSZ)
    assert code == 0 and os.listdir(tmp_path) == []
    assert "canonicalize" in out and "[auto: required by prune]" in out and "lower to ONNX" in out
    code, out, _ = cli("yolov8n.yaml", "-p", "prune", "--dry-run", "--json", "--imgsz", IMGSZ)
    assert [s["step"] for s in json.loads(out)["plan"]] == ["pass", "pass"]


def test_passes_on_a_narrow_terminal_prints_one_block_per_pass(cli, monkeypatch):
    """At 80 columns a five-column table wraps every cell; each pass gets a block instead: its name,
    stage and provider on one line, its summary, and its parameters one per line."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli("passes")
    lines = out.splitlines()
    assert code == 0 and max(len(ln) for ln in lines) <= 80
    assert "prune (torch; yolocc.passes.builtin)" in lines and "int8 (macro; yolocc.passes.builtin)" in lines
    block = lines[lines.index("prune (torch; yolocc.passes.builtin)"):]
    block = block[:block.index("")]
    assert any(ln.startswith("  ratio=0.25 ") for ln in block) and any(ln.startswith("  importance=") for ln in block)


def test_passes_lists_parameters_and_provider(cli):
    code, out, _ = cli("passes", "--json")
    passes = {p["name"]: p for p in json.loads(out)["passes"]}
    assert code == 0 and passes["prune"]["stage"] == "torch"
    assert {q["name"] for q in passes["prune"]["params"]} >= {"ratio", "importance", "round_to", "layers"}
    assert passes["prune"]["provider"] == "yolocc.passes.builtin" and passes["prune"]["doc"]
    assert passes["int8"]["stage"] == "macro" and passes["qdq"]["stage"] == "onnx"


def test_inspect_json(cli):
    code, out, _ = cli("inspect", "yolov8n.yaml", "--imgsz", IMGSZ, "--json")
    info = json.loads(out)
    assert code == 0 and info["params"] == 3157200 and info["stage"] == "torch"
    assert info["coupling_groups"] > 20 and info["prunable_channels"] > 1000
    assert "model.22" in info["protected"] and info["outputs"] == {"output0": [1, 84, 525]}


def test_real_console_script_has_no_traceback(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "yolocc")
    proc = subprocess.run([exe, str(tmp_path / "nope.pt")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == f"yolocc: error: model file '{tmp_path / 'nope.pt'}' does not exist"


def test_inspect_sensitivity_table_and_chart(cli, tmp_path):
    """On the trained digits detector (random weights barely move their outputs when pruned)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples/digits"
    if not (root / "data/calib/images").is_dir():
        pytest.skip("the digits fixture is generated by make")
    png = tmp_path / "s.png"
    code, out, err = cli("inspect", root / "weights/yolov8n-digits.pt", "--sensitivity", "--calib",
                         root / "data/calib/images", "--png", png, "--json")
    assert code == 0, err
    sens = json.loads(out)["sensitivity"]
    assert len(sens["groups"]) > 10 and sens["ratios"] == [0.25, 0.5, 0.75]
    assert all(g["drop"]["0.75"] >= 0 for g in sens["groups"])
    assert len({round(g["drop"]["0.5"], 6) for g in sens["groups"]}) > 5  # groups differ: it measures
    assert png.read_bytes()[:4] == b"\x89PNG"
    # The table (the analysis is cached now): every group with the MACs of its layers.
    code, out, err = cli("inspect", root / "weights/yolov8n-digits.pt", "--sensitivity", "--calib",
                         root / "data/calib/images")
    assert code == 0, err
    text = " ".join(out.split())
    assert "pruning sensitivity per group" in text and "MACs: of the group's layers" in text
    assert sum(1 for g in sens["groups"] if g["root"] in out) == len(sens["groups"])

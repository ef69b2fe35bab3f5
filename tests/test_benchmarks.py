"""Smoke test: every script in benchmarks/ runs end to end on tiny settings and writes the JSON it promises.

The benchmarks are not imported by the package or the other tests, so a refactor can break them
silently (it did, twice). Each case runs one script as a subprocess from the repo root, its JSON and
content cache in ``tmp_path``, and checks the keys the script documents, not only the exit code.
The settings are for speed, not for meaningful numbers: small images, 2 timed runs, 1 repeat,
1 epoch. ``test_every_benchmark_has_a_smoke_case`` makes a new script without a case fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
DIGITS = ROOT / "examples/digits"
DIGITS_YAML = DIGITS / "data/digits.yaml"
DETECTOR = DIGITS / "weights/yolov8n-digits.pt"

#: A tiny run is 10-35 s on 2 idle cores, but budget, tasks and qat took 230-245 s alone on an AMD EPYC
#: (AVX-512 VNNI, session 21) and ran over 300 s with a benchmark sharing the cores; the limit only
#: catches a hang.
TIMEOUT_S = 600
SLOW_TIMEOUT_S = 1800


def _has_keys(obj: dict, keys: list[str], what: str) -> None:
    missing = [k for k in keys if k not in obj]
    assert not missing, f"{what}: missing keys {missing} (has {sorted(obj)})"


def check_allocation_rank(r, tmp):
    _has_keys(r, ["model", "split", "rank_correlation", "wall_s"], "allocation.json")
    rc = r["rank_correlation"]
    _has_keys(rc, ["k", "ratio", "spearman_rho", "p_value", "groups"], "rank_correlation")
    assert rc["k"] == 2 and len(rc["groups"]) == 2
    for g in rc["groups"]:
        _has_keys(g, ["root", "proxy", "real_drop_pts"], "rank_correlation group")
    assert "variants" not in r  # --no-train


def check_allocation_train(r, tmp):
    _has_keys(r, ["model", "split", "macs_target", "uniform_ratio", "epochs", "seeds", "variants", "wall_s"],
              "allocation.json")
    assert set(r["variants"]) == {"sensitivity", "uniform"}
    for v in r["variants"].values():
        _has_keys(v, ["spec", "runs", "test_mean", "test_std"], "variant")
        assert len(v["runs"]) == 1 and 0 <= v["runs"][0]["test"] <= 1


def check_gpu(r, tmp):
    _has_keys(r, ["gpu", "torch", "onnx", "onnxruntime", "isa", "checks"], "gpu.json")
    trt = r["checks"]["tensorrt"]
    if not str(trt["tensorrt"]).startswith("not importable"):
        pytest.skip("TensorRT is installed: the refusal is not what runs")
    assert trt["rc"] == 2 and "needs TensorRT" in trt["line"] and trt["engine_bytes"] is None
    runs = r["checks"]["throughput"]["runs"]
    assert [(x["workers"], x["amp"], x["val"]) for x in runs] == [(0, False, False), (8, False, False),
                                                                 (8, True, False), (8, True, True)]
    assert all(x["train_img_s"] > 0 and x["epochs_run"] == 3 for x in runs)


def check_budget(r, tmp):
    _has_keys(r, ["isa", "max_drop", "split", "baseline", "final", "drop_pts", "val", "latency_ms",
                  "speedup_vs_fp32", "speedup_vs_int8", "speedup_vs_int8_per_repeat", "macs_ratio", "chosen",
                  "wall_s", "candidates"], "budget.json")
    assert set(r["latency_ms"]) == {"fp32", "int8", "final"}
    assert r["drop_pts"] is not None and r["val"]["drop_pts"] <= r["max_drop"]
    assert any("int8" in p for p in r["chosen"]), r["chosen"]  # --max-macs 0.1: only int8 candidates
    assert (tmp / "budget.onnx").stat().st_size > 0


def check_calibration(r, tmp):
    _has_keys(r, ["isa", "models"], "calibration.json")
    row = r["models"]["yolov8n-random"]
    _has_keys(row, ["methods", "auto"], "calibration row")
    assert "minmax" in row["methods"] and row["methods"]["minmax"]["fidelity"] > 0.9
    assert row["auto"]["chosen"] in row["methods"]


def check_distill(metric, key):
    def check(r, tmp):
        _has_keys(r, ["model", "metric", "split", "ratio", "epochs", "seeds", "passes", "seconds", "per_seed",
                      "baseline", "pruned", "std", key, f"{key}_recovered"], "distill.json")
        assert r["metric"] == metric and set(r["per_seed"]) == {key} and r["epochs"] == 1
        assert 0 <= r[key] <= 1 and 0 < r["baseline"] <= 1

    return check


INT8_ROWS = ["ultralytics-fp32", "ort-s8s8", "ort-u8s8", "yolocc-int8", "yolocc-prune-int8",
             "yolocc-prune-head-int8", "hand-prune-u8s8"]


def check_int8(r, tmp):
    _has_keys(r, ["model", "imgsz", "rows"], "int8.json")
    assert list(r["rows"]) == INT8_ROWS
    for name, row in r["rows"].items():
        _has_keys(row, ["size_bytes", "latency_ms", "speedup_per_repeat", "score_cosine", "box_rel_err",
                        "ratio_vs_fp32", "mAP50-95"], f"int8 row {name}")
    assert r["rows"]["yolocc-int8"]["score_cosine"] > 0.9  # the real detector: yolocc's int8 stays faithful


def check_interleave(r, tmp):
    _has_keys(r, ["isa", "model", "imgsz", "target", "runtime", "block", "rounds", "models"], "interleave.json")
    assert list(r["models"]) == ["fp32", "int8", "cpu-fast"]
    for name, row in r["models"].items():
        assert len(row["ms_by_place"]) == r["block"] == 2 and min(row["ms_by_place"]) > 0, name
    assert r["models"]["fp32"]["speedup_first"] == r["models"]["fp32"]["speedup_last"] == 1.0


def check_channels(r, tmp):
    _has_keys(r, ["model", "imgsz", "isa", "threads", "runtimes", "channel_multiple", "timing", "rows",
                  "ort_prune_pays"], "channels.json")
    assert r["channel_multiple"]["ort"]["multiple"] in (8, 16, 32, 64)
    for name in ("ort_fp32", "ort_int8", "ort_prune8_int8", "ort_pruneauto_int8"):
        _has_keys(r["rows"][name], ["latency_ms", "macs", "vs_fp32", "vs_int8"], f"channels {name}")
    assert r["rows"]["ort_prune8_int8"]["prune"]["round_to"] == 8
    assert r["rows"]["ort_pruneauto_int8"]["prune"]["round_to"] == r["channel_multiple"]["ort"]["multiple"]


def check_openvino_profile(r, tmp):
    _has_keys(r, ["isa", "threads", "imgsz", "baseline", "rows"], "openvino_profile.json")
    assert r["baseline"] == "int8" and set(r["rows"]) == {"int8", "p"} and r["threads"] == 1
    base, pruned = r["rows"]["int8"], r["rows"]["p"]
    for row in (base, pruned):
        _has_keys(row, ["passes", "macs", "wall_ms", "speed", "speed_per_repeat", "profile_ms", "conv_ms",
                        "profile_speed", "ideal_ms", "ideal_speed", "worst_convs"], "openvino_profile row")
        assert 0 < row["conv_ms"] < row["profile_ms"]  # the convolutions were matched to the ONNX nodes
    assert base["speed"] == base["ideal_speed"] == base["profile_speed"] == 1.0 and base["worst_convs"] == []
    assert pruned["macs"] < base["macs"] and pruned["ideal_ms"] < base["profile_ms"] and pruned["worst_convs"]
    assert all(c["macs_ratio"] < 1 for c in pruned["worst_convs"])


def check_openvino_grid(r, tmp):
    _has_keys(r, ["fp32_map", "draws", "summary", "isa", "n"], "openvino-grid.json")
    rows = {"nncf", "symmetric/mean-minmax", "asymmetric/mean-minmax"}
    assert set(r["draws"]) == {"calib", "train1"} and all(set(d) == rows for d in r["draws"].values())
    assert set(r["summary"]) == rows and all(s["draws"] == 2 for s in r["summary"].values())
    for d in r["draws"].values():
        for row in d.values():
            assert 0 < row["test_map"] <= 1 and row["drop_pts"] == pytest.approx((r["fp32_map"] - row["test_map"]) * 100,
                                                                                abs=0.01)


def check_openvino(r, tmp):
    _has_keys(r, ["fp32_ms", "nncf_ms", "yolocc_ms", "fp32_map", "nncf_map", "yolocc_map", "yolocc_prune_ms",
                  "yolocc_prune_map", "yolocc_vs_nncf_latency", "isa", "openvino", "nncf", "rows"], "openvino.json")
    assert set(r["rows"]) == {"fp32", "nncf", "yolocc", "yolocc-prune"} and r["calib_n"] == 16
    assert r["turn"] == 2 and r["call"].startswith("infer() on a shared input")  # --turn 2 --zero-copy
    assert all(row["latency_ms"] > 0 for row in r["rows"].values())


def check_prune(r, tmp):
    assert isinstance(r, list) and [row["model"] for row in r] == ["yolov8n.yaml", "resnet18 (torchvision)"]
    for row in r:
        _has_keys(row, ["imgsz", "params", "params_pruned", "param_reduction", "macs", "macs_pruned", "latency_ms",
                        "latency_ms_pruned", "latency_ratio", "outputs_equal", "compile_s"], f"prune {row['model']}")
        assert row["params_pruned"] < row["params"] and row["macs_pruned"] < row["macs"]
        assert row["outputs_equal"] is True


def check_qat(r, tmp):
    _has_keys(r, ["isa", "qat", "cases"], "qat.json")
    row = r["cases"]["digits-ort-cpu"]
    _has_keys(row, ["fp32", "ptq", "qat", "ptq_drop_pts", "qat_drop_pts", "latency_ratio", "qat_facts"], "qat case")
    assert 0 < row["fp32"] <= 1 and row["latency_ratio"] > 0
    assert row["qat_facts"]["fake_quant_points"] > 0 and len(row["qat_facts"]["epochs"]) == 1


def check_search_scale(r, tmp):
    _has_keys(r, ["isa", "cores", "search", "strategy", "runs", "final"], "search_scale.json")
    assert r["search"] == "branch" and r["tiny"]
    assert [(row["executor"], row["workers"]) for row in r["runs"]] == [("local", 1), ("local", 2), ("ray", 2)]
    ran = [row for row in r["runs"] if "skipped" not in row]  # ray: skipped where the extra is missing
    assert len(ran) >= 2
    for row in ran:
        _has_keys(row, ["executor", "workers", "threads_per_trial", "wall_s", "trials", "efficiency"], "run")
        assert row["threads_per_trial"] == 1 and row["trials"] >= 3 and row["wall_s"] > 0 and row["efficiency"] > 0
    assert ran[0]["efficiency"] == 1.0
    _has_keys(r["final"], ["drop_pts_test", "speedup_vs_int8"], "final")
    assert r["final"]["drop_pts_test"] is not None and r["final"]["speedup_vs_int8"] > 0


def check_soak(r, tmp):
    _has_keys(r, ["verdict", "rows"], "soak.json")
    _has_keys(r["verdict"], ["n", "rss_mid_mb", "rss_last_mb", "rss_growth_mb", "open_files_growth",
                             "memory_grows", "files_leak"], "soak verdict")
    assert r["verdict"]["n"] == 2 and [row["i"] for row in r["rows"]] == [1, 2]


#: benchmarks/speed.py's OpenVINO rows need the ``bench`` extra; without it the case passes --no-openvino.
OPENVINO = all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))
SPEED_ORT_ROWS = {"fp32", "int8", "prune_int8", "fast"}
SPEED_OV_ROWS = {"ov_fp32", "nncf_int8", "ov_int8", "ov_prune_int8", "ov_prune_open_int8", "ov_cpu_fast", "ov_fast"}
SPEED_OV_RATIOS = ["ov_int8_vs_nncf", "ov_prune_int8_vs_ov_int8", "ov_prune_open_int8_vs_ov_int8",
                   "ov_cpu_fast_vs_nncf", "ov_fast_vs_nncf"]


def check_speed(r, tmp):
    _has_keys(r, ["model", "imgsz", "isa", "ceiling", "runtime", "threads", "timing", "fast_passes", "recipe",
                  "fp32_ms", "int8_ms", "prune_int8_ms", "fast_ms", "fast_speedup", "models"], "speed.json")
    assert set(r["models"]) == SPEED_ORT_ROWS | (SPEED_OV_ROWS if OPENVINO else set())
    assert r["ceiling"]["gmacs"] > 0 and r["fast_passes"] and r["timing"]["turn"] == 2 and r["round_to"] == "8"
    for name, row in r["models"].items():
        _has_keys(row, ["runtime", "latency_ms", "macs", "gmacs_per_s", "pct_of_ceiling", "speedup_vs_fp32",
                        "speedup_per_repeat"], f"speed {name}")
    if not OPENVINO:
        assert "ov_fp32_ms" not in r  # --no-openvino
        return
    _has_keys(r, [f"{n}_ms" for n in sorted(SPEED_OV_ROWS)] + SPEED_OV_RATIOS
              + [f"{k}_per_repeat" for k in SPEED_OV_RATIOS] + ["ov_ceiling", "ov_runtime", "nncf", "ov_fast_passes",
                                                                 "ov_recipe"], "speed.json")
    assert r["ov_ceiling"]["gmacs"] > 0 and all(r[k] > 0 and len(r[f"{k}_per_repeat"]) == 1 for k in SPEED_OV_RATIOS)
    assert {row["runtime"] for n, row in r["models"].items() if n in SPEED_OV_ROWS} == {"OpenVINO"}


def check_tasks(r, tmp):
    _has_keys(r, ["isa", "max_drop", "split", "tasks"], "tasks.json")
    row = r["tasks"]["obb"]
    _has_keys(row, ["met", "metric", "baseline", "int8_drop", "budget_drop", "budget_speedup_vs_int8", "wall_s"],
              "tasks row")
    assert row["metric"] == "OBB mAP50-95" and 0 < row["baseline"] <= 1 and row["budget_speedup_vs_int8"] > 0
    assert (tmp / "tasks" / "obb.onnx").stat().st_size > 0


def check_openvino_zero_point(r, tmp):
    _has_keys(r, ["isa", "openvino", "onnxruntime", "threads", "graphs"], "openvino-zero-point.json")
    assert set(r["graphs"]) >= {"s8_split_conv_concat", "u8_zp128_split_conv_concat", "float_split_conv_concat"}
    for name, row in r["graphs"].items():
        _has_keys(row, ["max_abs_diff", "cosine", "agrees", "whole_numbers"], name)
    # the control has no Q/DQ: both runtimes compute the same float conv
    assert r["graphs"]["float_split_conv_concat"]["agrees"]
    assert (tmp / "graphs" / "s8_split_conv_concat.onnx").stat().st_size > 0


def case(script, args, check, *, digits=True, modules=(), slow=None, id=None, timeout=None):
    """One smoke run; ``{tmp}`` in ``args`` is pytest's tmp_path. ``slow``: why the case is marked slow;
    ``timeout``: seconds, for a run that is longer than a tiny one but not slow (default ``TIMEOUT_S``)."""
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(script, args, check, digits, modules, timeout or (SLOW_TIMEOUT_S if slow else TIMEOUT_S),
                        marks=marks, id=id or script.removesuffix(".py"))


CASES = [
    case("allocation.py", ["--no-train", "--rank", "2", "--out", "{tmp}/allocation.json"], check_allocation_rank,
         id="allocation-rank"),
    # The allocation comparison proper: the sensitivity analysis, a 10-step bisection of uniform prunes,
    # two 1-epoch distills and four evaluations: 70-80 s on 2 cores even at one seed, too much for make test.
    case("allocation.py", ["--rank", "0", "--epochs", "1", "--seeds", "0", "--out", "{tmp}/allocation.json"],
         check_allocation_train, slow="two distills, a 10-step bisection and four evaluations: over a minute",
         id="allocation-train"),
    # --max-macs 0.1 is below the ladder's first step: only the int8 trials, no training; on the tiny data
    # (16 val images) the drop is noise, so any drop meets --max-drop 100
    case("budget.py", ["--max-macs", "0.1", "--max-drop", "100", "--data", "{tiny}/digits.yaml", "--calib",
                       "{tiny}/calib/images", "--runs", "2", "--repeat", "1", "--out", "{tmp}/budget.json",
                       "--onnx", "{tmp}/budget.onnx"], check_budget),
    case("calibration.py", ["--tiny", "--out", "{tmp}/calibration.json"], check_calibration, digits=False),
    # onnxruntime only (OpenVINO adds its four rows where installed; the same code path)
    case("channels.py", ["--imgsz", "64", "--calib-n", "8", "--runs", "2", "--repeat", "1", "--runtimes", "ort",
                         "--out", "{tmp}/channels.json"], check_channels),
    case("distill.py", ["--epochs", "1", "--only", "distill", "--data-dir", "{tiny}", "--out", "{tmp}/distill.json"],
         check_distill("mAP50-95", "distill"), id="distill-detect"),
    case("distill.py", ["--task", "classify", "--epochs", "1", "--only", "distill", "--out", "{tmp}/distill.json"],
         check_distill("top1", "distill"), id="distill-classify"),
    # the real detector with --data: every row validated (the evaluate_onnx path)
    # no CUDA here: --allow-cpu runs the TensorRT refusal and the four training configurations, tiny
    case("gpu.py", ["--allow-cpu", "--only", "tensorrt", "throughput", "--imgsz", "64", "--fraction", "0.03",
                    "--batch", "8", "--out", "{tmp}/gpu.json"], check_gpu),
    case("int8.py", ["--model", str(DETECTOR), "--imgsz", "160", "--data", "{tiny}/digits.yaml", "--calib",
                     "{tiny}/calib/images", "--calib-n", "8",
                     "--runs", "2", "--repeat", "1", "--out", "{tmp}/int8.json"], check_int8),
    case("interleave.py", ["--imgsz", "64", "--calib-n", "8", "--rounds", "2", "--block", "2", "--threads", "1",
                           "--out", "{tmp}/interleave.json"], check_interleave),
    # 16 calibration images (yolocc's method=auto cross-fits all of them, 4 folds x 6 candidates, twice),
    # two Ultralytics exports and four validations of the tiny data's 16 test images. Slow: over 3 minutes
    # on 2 cores; its helpers (exports, calibration YAML, test mAP) run in the speed and openvino_grid cases.
    case("openvino.py", ["--runs", "2", "--repeat", "1", "--threads", "1", "--turn", "2", "--zero-copy",
                         "--data", "{tiny}/digits.yaml", "--calib", "{tiny}/calib/images", "--calib-n", "16",
                         "--out", "{tmp}/openvino.json"],
         check_openvino, modules=("openvino", "nncf"), timeout=900,
         slow="two Ultralytics exports, two yolocc compiles and four validations: 195 s on 2 cores"),
    # two calibration draws (the calib folder, 16 train images), one method, both grids: ~3 NNCF/yolocc
    # compiles and 7 validations of the tiny data's 16 test images
    case("openvino_grid.py", ["--draws", "2", "--n", "16", "--methods", "mean-minmax", "--data", "{tiny}/digits.yaml",
                              "--out", "{tmp}/grid.json"],
         check_openvino_grid, modules=("openvino", "nncf"), timeout=900),
    # two yolov8n.yaml rows at 64 px (int8, prune + int8), timed and profiled on OpenVINO: about 30 s
    case("openvino_profile.py", ["--imgsz", "64", "--calib-n", "4", "--rounds", "3", "--repeat", "1", "--threads", "1",
                                 "--row", "int8=int8", "--row", "p=prune:0.25;int8", "--out", "{tmp}/profile.json"],
         check_openvino_profile, modules=("openvino",)),
    # six graphs of a few nodes on OpenVINO and onnxruntime: a few seconds
    case("openvino_zero_point.py", ["--save", "{tmp}/graphs", "--out", "{tmp}/zp.json"], check_openvino_zero_point,
         digits=False, modules=("openvino",)),
    case("prune.py", ["--models", "yolov8n.yaml", "resnet18 (torchvision)", "--imgsz", "64", "--runs", "2",
                      "--out", "{tmp}/prune.json"], check_prune, digits=False),
    # one task, int8 trials only (--max-macs 0.1): the task's own metric decides
    case("tasks.py", ["--tasks", "obb", "--max-macs", "0.1", "--max-drop", "100", "--data-dir", "{tiny}", "--runs", "2",
                      "--repeat", "1", "--out", "{tmp}/tasks.json"], check_tasks),
    case("qat.py", ["--tiny", "--data-dir", "{tiny}", "--out", "{tmp}/qat.json"], check_qat),
    # the three executors on random yolov8n.yaml and a few images: mostly worker and Ray start-up. Slow:
    # over 3 minutes on 2 cores; tests/compiler/test_executor.py runs both executors (and an embedded Ray).
    case("search_scale.py", ["--tiny", "--out", "{tmp}/search_scale.json"], check_search_scale,
         slow="three searches, two of them on worker processes or Ray: 190 s on 2 cores"),
    case("soak.py", ["--n", "2", "--imgsz", "64", "--out", "{tmp}/soak.json"], check_soak),
    # nine models, five of them on OpenVINO (two Ultralytics exports, NNCF's calibrating on the tiny data's 32
    # calib images); --round-to 8 skips the pruned-model timing of round_to=auto (half the run's time)
    case("speed.py", ["--imgsz", "64", "--data", "{tiny}/digits.yaml", "--calib", "{tiny}/calib/images", "--calib-n",
                      "8", "--round-to", "8", "--runs", "2", "--repeat", "1", "--turn", "2",
                      "--out", "{tmp}/speed.json",
                      *([] if OPENVINO else ["--no-openvino"])], check_speed),
]


def test_every_benchmark_has_a_smoke_case():
    covered = {p.values[0] for p in CASES}
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts - covered == set(), "benchmarks without a smoke case in tests/test_benchmarks.py"


@pytest.mark.parametrize("script, args, check, digits, modules, timeout", CASES)
def test_benchmark_smoke(script, args, check, digits, modules, timeout, tmp_path, request):
    if digits and not DIGITS_YAML.exists():
        pytest.skip("the digits fixture is generated by make (examples/digits/make_dataset.py)")
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"benchmarks/{script} needs {', '.join(missing)} (pip install -e '.[bench]')")
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLOCC_CACHE_DIR": str(tmp_path / "cache"),
           "MPLBACKEND": "Agg"}
    # One torch thread: on a small machine shared with other jobs, oversubscribed threads make the
    # tiny runs several times slower; the smoke test measures nothing.
    env.setdefault("OMP_NUM_THREADS", "1")
    tiny = str(request.getfixturevalue("tiny_digits")) if any("{tiny}" in a for a in args) else ""
    argv = [sys.executable, str(BENCH / script), *(a.replace("{tmp}", str(tmp_path)).replace("{tiny}", tiny)
                                                   for a in args)]
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
        pytest.fail(f"benchmarks/{script} ran over {timeout} s; stderr tail:\n{err[-3000:]}")
    tail = f"stdout tail:\n{proc.stdout[-2000:]}\nstderr tail:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"benchmarks/{script} exited {proc.returncode}\n{tail}"
    out = Path(argv[argv.index("--out") + 1])
    assert out.is_file(), f"benchmarks/{script} wrote no {out.name}\n{tail}"
    check(json.loads(out.read_text()), tmp_path)


def test_gpu_benchmark_without_cuda_is_one_line_exit_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--out", str(tmp_path / "gpu.json")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "no CUDA device" in proc.stderr
    assert not (tmp_path / "gpu.json").exists()


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_scale_openvino_row_says_how_it_was_timed(tmp_path):
    """An ``openvino`` row of search_scale.json: the drop against the FP32 IR in points, the speed-up as
    the inverse of the paired ratio, and the timing (``turn``, ``call``), with the defaults of a
    benchmark output written before those options existed; one line where the budget row is missing."""
    row_of = _bench_module("search_scale").openvino_row
    bench = {"imgsz": 160, "fp32_map": 0.61, "rows": {"budget": {"mAP50-95": 0.6065, "vs_nncf_paired_median": 0.5}}}
    old = tmp_path / "old.json"
    old.write_text(json.dumps(bench))
    assert row_of(old) == {"imgsz": 160, "drop_pts_test": 0.35, "speedup_vs_nncf": 2.0, "turn": 1,
                           "call": "infer({0: image})", "source": str(old)}
    new = tmp_path / "new.json"
    new.write_text(json.dumps({**bench, "turn": 6, "call": "infer() on a shared input tensor, outputs not copied"}))
    assert row_of(new)["turn"] == 6 and row_of(new)["call"].startswith("infer() on a shared")
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({**bench, "rows": {}}))
    with pytest.raises(SystemExit, match="no 'budget' row"):
        row_of(missing)

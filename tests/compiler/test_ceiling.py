import json

import numpy as np
import onnxruntime as ort
import pytest

from yolocc.compiler import ceiling
from yolocc.plugins import ort_ceiling

SMALL = (64, 64, 64)


def test_gemm_model_computes_the_integer_product():
    model = ort_ceiling.gemm_model(*SMALL)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = np.random.default_rng(2).integers(0, 256, size=SMALL[:2], dtype=np.uint8)
    b = np.frombuffer(model.graph.initializer[0].raw_data, np.int8).reshape(SMALL[1:])
    expected = (a.astype(np.int32) - 128) @ b.astype(np.int32)
    np.testing.assert_array_equal(sess.run(None, {"a": a})[0], expected)


def test_ceiling_is_measured_once_then_cached(tmp_path, monkeypatch):
    first = ort_ceiling.int8_ceiling_gmacs(cache_root=tmp_path, shape=SMALL)
    assert first["gmacs"] > 0 and first["isa"] and "MatMulInteger" in first["op"] and first["threads"] == 0
    files = list((tmp_path / "ceiling").glob("*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    stored["gmacs"] = 12345.0
    files[0].write_text(json.dumps(stored))
    monkeypatch.setattr(ort_ceiling, "measure_gemm", lambda *a, **k: pytest.fail("measured again despite the cache"))
    assert ort_ceiling.int8_ceiling_gmacs(cache_root=tmp_path, shape=SMALL)["gmacs"] == 12345.0


def test_cache_is_keyed_by_threads(tmp_path, monkeypatch):
    monkeypatch.setattr(ort_ceiling, "measure_gemm", lambda shape, threads: 10.0 * (threads or 1))
    assert ort_ceiling.int8_ceiling_gmacs(1, tmp_path, SMALL)["gmacs"] == 10.0
    assert ort_ceiling.int8_ceiling_gmacs(2, tmp_path, SMALL)["gmacs"] == 20.0
    assert len(list((tmp_path / "ceiling").glob("*.json"))) == 2


def test_default_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ort_ceiling, "measure_gemm", lambda shape, threads: 50.0)
    assert ort_ceiling.int8_ceiling_gmacs(shape=SMALL)["gmacs"] == 50.0
    assert list((tmp_path / "ceiling").glob("*.json"))


def test_efficiency_arithmetic():
    # 4.0 GMAC in 20 ms is 200 GMAC/s: half of a 400 GMAC/s ceiling.
    assert ceiling.efficiency(4.0e9, 20.0, 400.0) == (200.0, 50.0)
    with pytest.raises(ValueError):
        ceiling.efficiency(1e9, 0.0, 100.0)


def test_a_ceiling_measured_under_load_is_measured_again_when_quiet(tmp_path, monkeypatch):
    loads = iter([3.5, None])  # busy while the first measurement runs, quiet on the next call
    monkeypatch.setattr(ceiling, "busy_load", lambda: next(loads, None))
    monkeypatch.setattr(ort_ceiling, "measure_gemm", lambda shape, threads: 10.0)
    first = ort_ceiling.int8_ceiling_gmacs(cache_root=tmp_path, shape=SMALL)
    assert first == {**first, "gmacs": 10.0, "busy_load": 3.5}
    monkeypatch.setattr(ort_ceiling, "measure_gemm", lambda shape, threads: 40.0)
    again = ort_ceiling.int8_ceiling_gmacs(cache_root=tmp_path, shape=SMALL)
    assert again["gmacs"] == 40.0 and "busy_load" not in again
    assert ort_ceiling.int8_ceiling_gmacs(cache_root=tmp_path, shape=SMALL)["gmacs"] == 40.0  # kept now

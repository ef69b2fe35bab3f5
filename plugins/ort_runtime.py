"""The onnxruntime CPU runtime: sessions for latency, fidelity and accuracy of the ort-cpu target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from yolocc.compiler.channels import measured_channel_multiple, sweep_latencies
from yolocc.compiler.target import ChannelMultiple, Runtime


def session(model_bytes: bytes, threads: int = 0):
    """A CPU onnxruntime session with full graph optimisation.

    Thread spinning is off: with several sessions alive, idle sessions' spinning threads would
    steal the cores from the one being timed.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def feed(sess, x: np.ndarray) -> dict[str, np.ndarray]:
    """``x`` as the session's input, cast to float16 for models that take float16."""
    inp = sess.get_inputs()[0]
    return {inp.name: x.astype(np.float16 if "float16" in inp.type else np.float32)}


class OrtSession:
    """An onnxruntime session behind the ``Session`` protocol (the feed is cast once per input)."""

    def __init__(self, model_bytes: bytes, threads: int = 0):
        self.sess = session(model_bytes, threads)
        self._outputs = [o.name for o in self.sess.get_outputs()]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.sess.run(None, feed(self.sess, x))
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(self._outputs, outs)}


class OrtCpuRuntime(Runtime):
    name = "onnxruntime CPUExecutionProvider"

    def load(self, model_bytes: bytes, threads: int = 0) -> OrtSession:
        return OrtSession(model_bytes, threads)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": self.name, "version": ort.__version__}

    def int8_ceiling(self, threads: int = 0, cache_root: Path | None = None) -> dict[str, Any]:
        """A ``MatMulInteger`` u8 x s8 GEMM (``ort_ceiling``): the kernel behind QLinearConv."""
        from .ort_ceiling import int8_ceiling_gmacs

        return int8_ceiling_gmacs(threads, cache_root)

    def channel_multiple(self, threads: int = 1, cache_root: Path | None = None) -> ChannelMultiple:
        """Measured on onnxruntime's CPU provider: a Q/DQ 3x3 conv (QLinearConv) against its channel
        count (``compiler.channels``), cached per ISA, onnxruntime version and thread count."""
        import onnxruntime as ort

        return measured_channel_multiple(
            f"onnxruntime {ort.__version__}", "QLinearConv 3x3", threads, cache_root,
            lambda: sweep_latencies(lambda b: OrtSession(b, threads).run))

    def native_artifact(self, onnx_bytes: bytes, folder: Path) -> Path:
        """``model.onnx``: Ultralytics' ONNX backend runs it on onnxruntime's CPU provider."""
        path = Path(folder) / "model.onnx"
        path.write_bytes(onnx_bytes)
        return path

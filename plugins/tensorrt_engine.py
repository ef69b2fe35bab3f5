"""Emitter for TensorRT engines (``-o model.engine``, with ``--target tensorrt``).

Why: the tensorrt target's Q/DQ ONNX is what TensorRT's explicit quantization consumes, but users
deploy a serialized engine. This builds one with TensorRT's Python API: the ONNX parser on the Q/DQ
graph (explicit quantization: the scales come from the graph, no calibrator), the INT8 flag when the
graph has Q/DQ and FP16 for the float layers where the GPU is fast at it, a workspace memory-pool
limit, an optimization profile for a dynamic batch, and a timing cache kept under the yolocc cache so
rebuilds are faster. The file is Ultralytics' engine layout: a 4-byte little-endian length, that many
bytes of JSON metadata (names, imgsz, stride, task ...), then the engine, so ``YOLO("model.engine")``
loads it. An engine is tied to its GPU and TensorRT version, so it is built on the machine that will
run it: without an importable ``tensorrt`` or without a CUDA GPU, the emitter stops with one line.

Written against TensorRT 8.6/10's documented API; it has not been run against a real TensorRT here
(the tests drive it with a stand-in module that records the calls).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from yolocc.compiler import lowering
from yolocc.compiler.errors import ExportError, UsageError
from yolocc.compiler.fileio import write_atomic, write_with
from yolocc.compiler.interfaces import Emitter
from yolocc.compiler.ir import ModelIR
from yolocc.compiler.options import CompileOptions

log = logging.getLogger(__name__)

#: Workspace memory-pool limit for tactics, in GiB (``YOLOCC_TRT_WORKSPACE_GB`` overrides it).
DEFAULT_WORKSPACE_GB = 4.0
#: Largest batch of the optimization profile when the ONNX has a dynamic batch.
DYNAMIC_MAX_BATCH = 16
INSTALL_HINT = "pip install tensorrt (NVIDIA's wheels; needs a CUDA GPU and driver)"


def tensorrt_module():
    """The imported ``tensorrt`` module, or a ``UsageError`` saying it is missing."""
    try:
        import tensorrt
    except Exception as e:  # ImportError, or a broken install (missing libnvinfer ...)
        why = "is not installed" if isinstance(e, ImportError) else f"fails to import ({type(e).__name__})"
        raise UsageError(f"-o .engine needs TensorRT, which {why}: {INSTALL_HINT}; or write the Q/DQ "
                         f"ONNX (-o model.onnx) and build it with trtexec on the GPU machine") from e
    return tensorrt


def cuda_gpu_count() -> int:
    """How many CUDA devices the driver reports (0 when there is no driver or no GPU)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except Exception:  # torch without CUDA support says nothing about the machine: ask the driver
        pass
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so", "libcuda.dylib")
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0:
            return count.value
        return 0
    return 0


def require_gpu() -> None:
    if cuda_gpu_count() < 1:
        raise UsageError("-o .engine needs a CUDA GPU: TensorRT builds an engine on the GPU that will run it, and "
                         "none is visible here; write the Q/DQ ONNX (-o model.onnx) and build it on that machine")


def engine_metadata(onnx_model) -> dict[str, Any]:
    """Ultralytics' metadata from the ONNX ``metadata_props`` (stored as strings), typed for JSON."""
    meta = lowering.read_metadata(onnx_model)
    if isinstance(meta.get("names"), dict):  # an Ultralytics model: what its TensorRT loader reads
        meta.setdefault("args", {"batch": int(meta.get("batch", 1)), "dynamic": bool(meta.pop("dynamic", False)),
                                 "nms": False})
    return meta


def with_header(metadata: dict[str, Any], engine: bytes) -> bytes:
    """Ultralytics' ``.engine`` layout: 4-byte little-endian JSON length, the JSON, the engine."""
    blob = json.dumps(metadata, sort_keys=True).encode()
    return len(blob).to_bytes(4, byteorder="little", signed=True) + blob + bytes(engine)


def workspace_bytes() -> int:
    raw = os.environ.get("YOLOCC_TRT_WORKSPACE_GB", "")
    try:
        gb = float(raw) if raw else DEFAULT_WORKSPACE_GB
    except ValueError as e:
        raise UsageError(f"YOLOCC_TRT_WORKSPACE_GB must be a number of GiB, got '{raw}'") from e
    if gb <= 0:
        raise UsageError(f"YOLOCC_TRT_WORKSPACE_GB must be positive, got '{raw}'")
    return int(gb * (1 << 30))


def build_engine(trt, onnx_bytes: bytes, quantized: bool, timing_cache: Path | None,
                 hw: tuple[int, int] | None = None, stride: int = 32) -> tuple[bytes, dict[str, Any]]:
    """Serialized engine built from ``onnx_bytes`` with TensorRT module ``trt``, and facts about it.

    A dynamic model gets one optimization profile: batch 1..``DYNAMIC_MAX_BATCH`` and, where height and
    width are symbolic too, ``stride`` up to twice ``hw`` (the compile's (h, w), optimal there), as
    Ultralytics' own dynamic engine export does."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise UsageError("TensorRT could not create a builder (no usable CUDA GPU?)")
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # required before TensorRT 10, default after
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT's ONNX parser rejected the model: {errors[0] if errors else 'unknown error'}"
                          + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes())
    precisions = ["fp32"]
    if quantized:  # explicit quantization: TensorRT takes the scales from the Q/DQ nodes
        config.set_flag(trt.BuilderFlag.INT8)
        precisions.append("int8")
    if builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        precisions.append("fp16")
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    if shape and shape[0] == -1:  # dynamic batch: one optimization profile, batch 1..DYNAMIC_MAX_BATCH
        profile = builder.create_optimization_profile()
        rest = list(shape[1:])
        opt, top, low = list(rest), list(rest), list(rest)
        for i in range(1, len(rest)):  # symbolic height/width (a dynamic model): stride .. 2 x the compile size
            if rest[i] == -1:
                size = (hw or (640, 640))[i - 1] if i <= 2 else stride
                low[i], opt[i], top[i] = stride, size, 2 * size
        profile.set_shape(inp.name, (1, *low), (max(1, DYNAMIC_MAX_BATCH // 2), *opt), (DYNAMIC_MAX_BATCH, *top))
        config.add_optimization_profile(profile)
    cache_hit = False
    cache = None
    if timing_cache is not None:
        previous = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(previous)
        config.set_timing_cache(cache, ignore_mismatch=False)
        cache_hit = bool(previous)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)")
    if timing_cache is not None and cache is not None:
        try:
            timing_cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
        except OSError as e:  # a cache that cannot be written only costs the next build time
            log.warning("could not write the TensorRT timing cache %s: %s", timing_cache, e)
    return bytes(serialized), {"tensorrt": getattr(trt, "__version__", "?"), "precisions": precisions,
                               "workspace_bytes": workspace_bytes(), "timing_cache": str(timing_cache),
                               "timing_cache_reused": cache_hit, "dynamic_batch": bool(shape and shape[0] == -1)}


class TensorRTEngineEmitter(Emitter):
    """Builds a serialized TensorRT engine with Ultralytics' metadata header."""

    name = "tensorrt-engine"
    suffixes = (".engine",)

    def check(self, options: dict[str, Any]) -> None:
        target = options.get("target")
        if target is None or target.name != "tensorrt":
            raise UsageError(f"-o .engine builds a TensorRT engine: compile with --target tensorrt (the target is "
                             f"'{getattr(target, 'name', None)}', whose Q/DQ TensorRT does not accept)")
        tensorrt_module()
        require_gpu()

    def emit(self, ir: ModelIR, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        self.check(options)
        trt = tensorrt_module()
        if ir.stage == "torch":
            lowering.lower(ir, options.get("opset", lowering.DEFAULT_OPSET), options.get("dynamic_batch", False))
        model = ir.onnx_model
        quantized = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
        cache = CompileOptions(cache_dir=options.get("cache_dir")).cache_root() / "tensorrt" / "timing.cache"
        engine, facts = build_engine(trt, model.SerializeToString(), quantized, cache, ir.input.hw,
                                     int(ir.meta.get("onnx_metadata", {}).get("stride", 32)))
        data = with_header(engine_metadata(model), engine)
        write_with(Path(path), lambda tmp: Path(tmp).write_bytes(data))
        return {"format": "tensorrt-engine", "engine_bytes": len(engine), **facts}

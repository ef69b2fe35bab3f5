"""The ``openvino`` target: Q/DQ placed the way OpenVINO's CPU plugin turns it into int8 kernels,
measured (latency, fidelity, accuracy) with the OpenVINO runtime itself.

Why its own placement: OpenVINO reads each Q/DQ pair as a FakeQuantize, and its low-precision
transformations run an op in int8 only where a FakeQuantize feeds it; the conv's bias, SiLU and the
next layer's FakeQuantize are then fused into the conv as post-ops, so the conv writes u8 directly.
That is NNCF's placement for CPU (``nncf/common/hardware/setups/cpu.py`` and its quantizer
propagation): quantizers on the *inputs* of Convolution/MatMul and of residual Add;
none on outputs, none inside the SiLU (Sigmoid/Multiply stay float and fuse); data-movement ops
(Split, MaxPool, nearest Interpolate, Reshape ...) carry their input's scale through so they run in
u8; the inputs of a Concat share one scale (NNCF's "unified scales"), so the Concat runs in u8
without requantizing. Both are ``Placement.transparent_ops``.
For YOLO, NNCF keeps the head decode, Sigmoid and DFL float and quantizes the head convs; ``qdq``'s
float tail does exactly that. Unlike NNCF, the box branch's last convs also quantize their outputs (the
DFL logits, read through reshapes and a concat by the softmax: ``quantize_softmax_tail_inputs``), so
they write u8 and OpenVINO moves the box logits (the NHWC-to-NCHW reorders, the concat) in u8 and
dequantizes once before the DFL: yolov8n at 640 about 5% faster than NNCF's INT8. The class logits
(read by the Sigmoid) stay float. Like NNCF, the 3-channel stem conv runs in int8 on the quantized image
(scale 1/255 for 8-bit images in [0, 1]) with 7-bit weights (``STEM_CHANNELS``): a float stem costs
OpenVINO a float conv, a float NHWC reorder of the image and a float-to-u8 reorder of its output,
which made yolov8n at 640 about 6% slower than NNCF's INT8.
Activations are symmetric with zero point 0, U8 where the calibrated range is non-negative and S8
where it is not (NNCF's PERFORMANCE preset and its signedness rule), weights S8 symmetric per channel;
biases stay float (OpenVINO adds them in the fused post-op). U8 asymmetric activations (NNCF's MIXED
preset, this target's scheme until session 14) made OpenVINO compensate a zero point in every int8
convolution: on an AMX CPU yolov8n at 640 ran 0.94x NNCF's INT8 that way and 1.1-1.2x without.

``verify`` compiles the graph for the CPU and reads the runtime model: which ops run in int8
(``runtimePrecision``), which Q/DQ convs OpenVINO left in float (``Verification.float_layers``), and how
many quantize steps were not fused into a neighbour (each one costs a pass over the tensor). Where
OpenVINO leaves zero-point-0 convolutions in float, ``qdq`` builds the graph again with asymmetric
activations and keeps the build with fewer float layers. OpenVINO 2026.4 on CPUs without AMX (AVX2,
AVX-512 VNNI) left 25 of the 63 convolutions of a random-weights yolov8n in float with zero point 0 (those
reading a C2f's Split, Concat or residual Add, and some after them), none with AMX. It depends on the
ranges: random weights shrink the activations layer by layer (scales down to 1e-11); raising every
activation scale to at least 4e-3 ran all 63 in int8, to 2.5e-3 did not. The trained digits detector
(larger ranges) runs all in int8 with zero point 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from yolocc.compiler.channels import measured_channel_multiple, sweep_latencies
from yolocc.compiler.errors import UsageError
from yolocc.compiler.target import Capability, ChannelMultiple, Placement, QuantScheme, Runtime, Target, Verification

from .openvino_ceiling import int8_ceiling_gmacs
from .openvino_emitter import SUFFIX, openvino_missing, require_openvino, write_ir_folder

#: Runtime layer types whose precision says whether the model's compute runs in int8.
INT8_PRECISIONS = ("u8", "i8")
COMPUTE_LAYERS = ("Convolution", "FullyConnected", "MatMul", "Eltwise", "Pooling", "Concatenation",
                  "Interpolate", "Split")
#: Runtime layer types that carry the ONNX Conv/Gemm/MatMul weights.
WEIGHTED_LAYERS = ("Convolution", "FullyConnected", "MatMul")


def compile_cpu(ov, model, threads: int = 0, core=None):
    """A CPU compiled model for one synchronous stream: the latency configuration, float32 wherever
    the graph is float (no bf16/f16 downcast on CPUs that have it), ``threads`` inference threads."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                              "INFERENCE_PRECISION_HINT": ov.Type.f32}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return (core or ov.Core()).compile_model(model, "CPU", config)


#: OpenVINO's precision-preserving ops: its low-precision transformations move a dequantization
#: through them, so they run on u8 data and need no Q/DQ of their own.
TRANSPARENT_OPS = ("Concat", "Split", "MaxPool", "Resize", "Reshape", "Transpose", "Slice", "Flatten", "Squeeze",
                   "Unsqueeze")
#: Ops whose float inputs get Q/DQ (NNCF's quantizable CPU ops that occur in CNNs; Multiply and Sigmoid
#: are left out so that SiLU stays one fused float activation).
INPUT_OPS = ("Conv", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool")
#: The RGB stem (fewer input channels than this) is quantized with 7-bit weights (-63..63). Its u8 input
#: spans the full 0-255 range, where CPUs without VNNI (AVX2's vpmaddubsw) saturate int16 pair sums
#: with full-range int8 weights; NNCF's default overflow fix narrows the first layer's weights the same
#: way. (A float stem, this target's earlier rule, costs OpenVINO a float conv and two reorders.)
STEM_CHANNELS = 4


def openvino_placement() -> Placement:
    """NNCF's CPU placement in Q/DQ terms: Q/DQ on the inputs of weighted ops and residual Adds, the
    dequantization moved through data-movement ops (``transparent_ops``, ranges shared across them),
    the RGB stem quantized with 7-bit weights, and the DFL's box logits quantized where the box convs
    write them."""
    return Placement(input_ops=INPUT_OPS, share_concat_ranges=True, transparent_ops=TRANSPARENT_OPS,
                     narrow_weights_below_channels=STEM_CHANNELS, quantize_softmax_tail_inputs=True)


class OpenVinoSession:
    """One compiled model and its infer request behind the ``Session`` protocol."""

    def __init__(self, ov, core, model_bytes: bytes, threads: int = 0):
        self.compiled = compile_cpu(ov, core.read_model(model_bytes), threads, core)
        self.request = self.compiled.create_infer_request()
        self._outputs = [o.get_any_name() for o in self.compiled.outputs]
        self._dtype = np.float16 if self.compiled.inputs[0].get_element_type() == ov.Type.f16 else np.float32

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        result = self.request.infer({0: np.ascontiguousarray(x, dtype=self._dtype)})
        # The request reuses its output buffers: copy before the next call overwrites them.
        return {n: np.array(result[i], dtype=np.float32, copy=True) for i, n in enumerate(self._outputs)}


class OpenVinoRuntime(Runtime):
    name = "OpenVINO CPU"
    #: OpenVINO picks its convolution kernel per shape, so one conv's latency against its channel count
    #: has steps that are not blocks (AVX-512 VNNI, 1 thread: two sweeps in a row chose 8 and 32) and
    #: misses what whole models pay (thin layers at 24 channels ran slower than at 32): the pruned
    #: model is timed instead (README, "Channel counts the runtime likes").
    channel_multiple_on_model = True

    def __init__(self):
        self.ov = require_openvino("--target openvino")
        self.core = self.ov.Core()

    def load(self, model_bytes: bytes, threads: int = 0) -> OpenVinoSession:
        return OpenVinoSession(self.ov, self.core, model_bytes, threads)

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "version": self.ov.__version__}

    def int8_ceiling(self, threads: int = 0, cache_root: Path | None = None) -> dict[str, Any]:
        """A Q/DQ MatMul that OpenVINO runs as an int8 FullyConnected (``openvino_ceiling``)."""
        return int8_ceiling_gmacs(compile_cpu, threads, cache_root)

    def channel_multiple(self, threads: int = 1, cache_root: Path | None = None) -> ChannelMultiple:
        """Measured on OpenVINO's CPU plugin (compiled as every latency is, ``compile_cpu``): a Q/DQ 3x3
        conv, which it runs as an int8 Convolution, against its channel count (``compiler.channels``),
        cached per ISA, OpenVINO version and thread count."""
        return measured_channel_multiple(
            f"OpenVINO {self.ov.__version__}", "int8 Convolution 3x3 (Q/DQ)", threads, cache_root,
            lambda: sweep_latencies(lambda b: self.load(b, threads).run))

    def native_artifact(self, onnx_bytes: bytes, folder: Path) -> Path:
        """The IR folder Ultralytics' validator loads, so accuracy is measured on OpenVINO."""
        out = Path(folder) / f"model{SUFFIX}"
        write_ir_folder(onnx_bytes, out)
        return out


class OpenVinoTarget(Target):
    name = "openvino"
    doc = ("OpenVINO CPU, NNCF-style placement: U8/S8 activations with zero point 0 (asymmetric U8 where this CPU's "
           "OpenVINO would run zero point 0 in float), S8 per-channel weights, "
           "Q/DQ on the inputs of Conv/MatMul/Add, Concat and data movement on shared scales, SiLU fused, RGB stem "
           "int8 (7-bit weights); measured on OpenVINO")
    scheme = QuantScheme(activation_dtype="uint8", activation_symmetric=True, quantize_bias=False)
    placement = openvino_placement()
    default_emitter = "openvino"
    default_suffix = SUFFIX
    auto_candidate = True
    #: OpenVINO runs Ultralytics' own head faster than the anchor-major one written for onnxruntime, and
    #: the DFL as a softmax over the bins axis plus a weighted sum (no transpose, no 1x1 conv): with it
    #: yolov8n at 640 ran 1.1-1.8% faster as int8 and 1.7-4.5% as the openvino-fast recipe's structure
    #: (AVX-512 VNNI, 2 threads; README, "Both CPU runtimes"). The MatMul DFL ran slower than either.
    capabilities = frozenset({Capability.BINS_AXIS_SOFTMAX_SUM})

    def available(self) -> str | None:
        """None when the target can run here; otherwise one line saying what to install."""
        missing = openvino_missing()
        return None if missing is None else f"--target openvino needs OpenVINO: {missing}"

    def runtime(self) -> OpenVinoRuntime:
        missing = self.available()
        if missing is not None:
            raise UsageError(missing)
        return OpenVinoRuntime()

    def verify(self, model) -> Verification:
        """Compile ``model`` (a Q/DQ ``onnx.ModelProto``) for the CPU and report what runs in int8."""
        missing = self.available()
        if missing is not None:
            return Verification(problems=[missing])
        ov = require_openvino("verifying --target openvino")
        core = ov.Core()
        compiled = compile_cpu(ov, core.read_model(model.SerializeToString()), threads=1, core=core)
        return runtime_facts(model, compiled.get_runtime_model())


    def reference_fidelity(self, model) -> float | None:
        """``model`` (a Q/DQ ``onnx.ModelProto``) on OpenVINO's CPU plugin against onnxruntime's CPU
        provider, the reference execution of its Q/DQ operators, on one fixed input (``timing_input``):
        the cosine of every output row along axis 1 (a detector's box coordinates and each class score
        apart, so the scores are not hidden by the boxes), averaged (``measure.output_distance`` with one
        part per row). Both run int8 arithmetic, so they
        agree to about 0.99 (0.996-0.999 on the digits detector with U8 asymmetric activations, AVX-512
        VNNI). With zero point 0 on that CPU OpenVINO 2026.4 gave 0.64-0.74: its class scores moved
        away from the graph's (README, "OpenVINO: zero point 0 computes other numbers without AMX")."""
        if self.available() is not None:
            return None
        import onnxruntime as ort

        from yolocc.compiler.measure import output_distance, timing_input

        ov = require_openvino("verifying --target openvino")
        data = model.SerializeToString()
        try:  # no reference execution (an op onnxruntime lacks): nothing to compare with
            ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in ref.get_inputs()[0].shape]
            x = timing_input(shape)
            expected = ref.run(None, {ref.get_inputs()[0].name: x})
        except Exception:  # noqa: BLE001 - onnxruntime raises its own exception types
            return None
        compiled = compile_cpu(ov, ov.Core().read_model(data), threads=1)
        got = compiled({0: x})
        want = {str(i): e for i, e in enumerate(expected)}
        out = {str(i): got[compiled.output(i)].reshape(e.shape) for i, e in enumerate(expected)}
        rows = {k: {str(r): slice(r, r + 1) for r in range(e.shape[1])} for k, e in want.items() if e.ndim >= 3}
        parts = sum(len(rows.get(k) or {"all": None}) for k in want)
        return 1.0 - output_distance(want, out, rows) / parts


def runtime_facts(onnx_model, runtime_model) -> Verification:
    """Facts from OpenVINO's runtime (executable) model: per layer type, how many run in int8; the
    Q/DQ weighted layers (Conv/Gemm/MatMul) OpenVINO still runs in float; quantize steps left unfused."""
    quantized = _qdq_layers(onnx_model)
    precision: dict[str, dict[str, int]] = {}
    int8_layers: set[str] = set()
    standalone_quantize = 0
    for op in runtime_model.get_ordered_ops():
        rt = op.get_rt_info()
        layer = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
        prec = rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else "?"
        originals = rt["originalLayersNames"].astype(str).split(",") if "originalLayersNames" in rt else []
        if layer in COMPUTE_LAYERS:
            counts = precision.setdefault(layer, {})
            counts[prec] = counts.get(prec, 0) + 1
        if layer in WEIGHTED_LAYERS and prec in INT8_PRECISIONS:
            # OpenVINO splits a layer with a bias into "NAME/WithoutBiases..." and an Add named NAME.
            int8_layers.update(n for n in (o.split("/WithoutBiases")[0] for o in originals) if n in quantized)
        elif layer == "Subgraph" and any("QuantizeLinear" in n for n in originals):
            standalone_quantize += 1  # a quantize (or requantize) that no conv/eltwise absorbed
    missed = sorted(quantized - int8_layers)
    facts = {"openvino_int8_layers": f"{len(int8_layers)}/{len(quantized)}",
             "openvino_runtime_precision": {k: dict(sorted(v.items())) for k, v in sorted(precision.items())},
             "openvino_unfused_quantize": standalone_quantize}
    problems = [f"OpenVINO runs the Q/DQ layer '{n}' in float" for n in missed[:5]]
    if len(missed) > 5:
        problems.append(f"... and {len(missed) - 5} more Q/DQ layers in float")
    return Verification(facts=facts, problems=problems, float_layers=missed)


def _qdq_layers(onnx_model) -> set[str]:
    """Names of the ONNX Conv/Gemm/MatMul nodes whose weight comes from a DequantizeLinear."""
    dq_outputs = {n.output[0] for n in onnx_model.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in onnx_model.graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] in dq_outputs}

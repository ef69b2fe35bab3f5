"""Targets: how the compiled graph will run, and every rule that follows from it.

A target owns its quantization scheme, where Q/DQ go (``Placement``), which ranges are shared,
the check of a finished graph (``verify``), the runtime that measures latency and accuracy, and
its default emitter. The ``qdq`` pass, the report and the measurements ask the target; nothing
outside a target's own plugin tests its name. A new target is one class registered with
``registry.add_target(...)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np


@dataclass(frozen=True)
class QuantScheme:
    """Number formats: activations U8/S8 (asymmetric or symmetric), S8 per-channel weights.

    Symmetric activations carry zero point 0. Symmetric U8 follows NNCF's signedness rule: U8 where the
    calibrated range is non-negative, S8 where it is not (SiLU outputs dip to -0.28), so the runtime's
    int8 kernels never compensate a zero point (``qdq.activation_qparams``)."""

    activation_dtype: str  # "uint8" | "int8"
    activation_symmetric: bool
    #: Conv/Gemm bias as int32 behind DequantizeLinear (onnxruntime's QLinearConv wants it).
    quantize_bias: bool = True

    def describe(self) -> str:
        """The activation format in a few words, e.g. "U8 asym", "S8 sym", "U8/S8 sym (zero point 0)"."""
        if self.activation_dtype == "int8":
            return "S8 sym" if self.activation_symmetric else "S8 asym"
        return "U8/S8 sym (zero point 0)" if self.activation_symmetric else "U8 asym"


@dataclass(frozen=True)
class Placement:
    """Where Q/DQ go. ``qdq`` applies these rules; a target adds its own float nodes on top."""

    #: Ops whose float activation inputs get Q/DQ.
    input_ops: tuple[str, ...]
    #: Ops whose outputs also get Q/DQ (so the runtime fuses DQ -> op -> Q into an integer kernel).
    output_ops: tuple[str, ...] = ()
    #: Data-movement ops whose output reuses the input's scale/zero point (their Q/DQ drop away).
    passthrough_ops: tuple[str, ...] = ()
    #: The inputs and output of a Concat share one range, so the concat needs no requantization.
    share_concat_ranges: bool = False
    #: Convolutions with fewer input channels than this (and their activation) stay float.
    float_below_channels: int = 0
    #: Quantized convolutions with fewer input channels than this (the RGB stem, which reads the full
    #: 0-255 image range) get 7-bit weights (-63..63, still int8): CPUs without VNNI multiply u8 x s8 in
    #: pairs summed into int16 (AVX2's vpmaddubsw), which 255 * 127 * 2 overflows and 255 * 63 * 2
    #: does not (NNCF's overflow fix, applied to the first layer by default).
    narrow_weights_below_channels: int = 0
    #: The outputs of quantized convolutions that the float tail (the YOLO decode) reads only through data
    #: movement into a Softmax (the DFL's box logits) get Q/DQ, each with its own range: the runtime moves
    #: them and the layout changes after them in u8 and dequantizes once before the softmax. Tensors that
    #: reach a Sigmoid (class logits: their rare positive values, often outside the calibrated range at the
    #: coarse levels, decide the scores) stay float.
    quantize_softmax_tail_inputs: bool = False
    #: Ops the runtime runs on quantized data by moving the dequantization through them (OpenVINO's
    #: precision-preserving Concat, Split, MaxPool, nearest Resize, Reshape ...): their float inputs get
    #: Q/DQ on one shared range (with ``share_concat_ranges``) and their outputs none; consumers read the
    #: outputs as already quantized, so no requantization is inserted around them.
    transparent_ops: tuple[str, ...] = ()
    #: Activations the runtime folds into the integer op before them (onnxruntime drops a Relu, or a
    #: Clip, that feeds a QuantizeLinear whose range it covers): the op's raw output gets no Q/DQ, so
    #: op -> activation -> Q fuses into one kernel; the activation's output is quantized.
    fused_activations: tuple[str, ...] = ()
    #: The runtime fuses an elementwise Add into the convolution that produces one of its inputs
    #: (TensorRT's Conv+Add fusion for residual connections whose branch ends in a Conv without
    #: activation, e.g. YOLO11's C2PSA attention): that raw Conv output gets no Q/DQ; the Add's other
    #: input is quantized.
    fuses_conv_add: bool = False


class Capability:
    """Names of what a target's kernels do well, which decide the frontend's layout rewrites."""

    #: The runtime's int8 convolutions write channels-last (NHWC) outputs, so a head that reads its
    #: box branch anchor-major needs no transposes (the Ultralytics frontend's anchor-major Detect).
    CHANNELS_LAST_INT8 = "channels-last-int8"
    #: A softmax over the last axis followed by a MatMul runs faster than a softmax over channels and a
    #: 1x1 convolution (the Ultralytics frontend's MatMul DFL).
    LAST_AXIS_SOFTMAX_MATMUL = "last-axis-softmax-matmul"
    #: A softmax over the box bins where they lie (a middle axis) and a weighted sum over that axis run
    #: faster than the same softmax followed by a 1x1 convolution (yolocc's ``DFLBinsAxis`` rewrite
    #: in the Ultralytics frontend); a target with ``LAST_AXIS_SOFTMAX_MATMUL`` as well gets the MatMul form.
    BINS_AXIS_SOFTMAX_SUM = "bins-axis-softmax-sum"
    ALL = frozenset({CHANNELS_LAST_INT8, LAST_AXIS_SOFTMAX_MATMUL, BINS_AXIS_SOFTMAX_SUM})


@dataclass
class Verification:
    """A target's check of a quantized graph: facts for the report and rule violations."""

    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Names of the graph's Q/DQ weighted layers (Conv/Gemm/MatMul with int8 weights) that the target's
    #: runtime still runs in float on this machine; empty where the target does not check, or all run int8.
    float_layers: list[str] = field(default_factory=list)


#: The channel multiple where a runtime measures none, or its sweep shows no compute-bound signal:
#: the rounding torch-pruning and most int8 kernels take without much loss.
FALLBACK_CHANNEL_MULTIPLE = 8


@dataclass(frozen=True)
class ChannelMultiple:
    """A runtime's preferred channel multiple (``multiple``, in channels) and where it comes from."""

    multiple: int
    #: True when measured on the runtime; False for the fallback.
    measured: bool
    #: One line: how the multiple was found (for the report and ``prune``'s facts).
    reason: str
    runtime: str = ""
    isa: str = ""
    op: str = ""
    threads: int = 1
    #: The sweep: channel count -> fastest latency in ms (empty for the fallback).
    latency_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def fallback(cls, why: str) -> ChannelMultiple:
        return cls(FALLBACK_CHANNEL_MULTIPLE, False, f"{why}; default multiple {FALLBACK_CHANNEL_MULTIPLE}")


class Session(Protocol):
    """One loaded model on a runtime."""

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name, as float32 arrays."""


class Runtime:
    """Runs ONNX bytes the way the target will: latency, output fidelity and accuracy.

    Everything yolocc measures for a target goes through its runtime: ``load`` for latency and
    fidelity, ``native_artifact`` (or, where it has none, ``load``) for accuracy on ``--data``, and
    ``int8_ceiling`` for the report's efficiency column, ``channel_multiple`` for the channel counts
    ``prune`` keeps."""

    name: ClassVar[str] = ""
    #: True where ``channel_multiple``'s one-convolution sweep does not predict this runtime's whole
    #: models: ``prune:round_to=auto`` then times the pruned model itself at the sweep's multiple and
    #: its neighbours (``passes.channel_choice``) and keeps the fastest. False (the default): the sweep
    #: decides.
    channel_multiple_on_model: ClassVar[bool] = False

    def load(self, model_bytes: bytes, threads: int = 0) -> Session:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Facts about the runtime for the report (name, version, device)."""
        return {"runtime": self.name}

    def native_artifact(self, onnx_bytes: bytes, folder: Path) -> Path | None:
        """Write the model in the form this runtime's own tools load by path (ONNX for onnxruntime, an
        IR folder for OpenVINO) under ``folder`` and return its path. A frontend's evaluator hands that
        path to the framework's validator (Ultralytics': its backend for the format runs it).

        None (the default): the runtime has no format such tools load; evaluators then run the model
        through ``load`` in process, so accuracy is still measured on this runtime."""
        return None

    def int8_ceiling(self, threads: int = 0, cache_root: Path | None = None) -> dict[str, Any] | None:
        """The multiply-accumulates per second this runtime sustains on one large int8 GEMM on this
        machine: ``{"gmacs", "isa", "op", "threads", "runtime"}`` (see ``compiler.ceiling``), or None
        when the runtime does not measure one (the report then leaves out its efficiency column)."""
        return None

    def channel_multiple(self, threads: int = 1, cache_root: Path | None = None) -> ChannelMultiple:
        """The channel count (a multiple, in channels) this runtime's convolutions like on this machine:
        ``prune:round_to=auto`` keeps channel counts a multiple of it. Measured on the runtime itself
        (``compiler.channels``: an int8 3x3 conv's latency against its channel count, ``threads``
        threads) and cached per ISA, runtime version and thread count. The default measures nothing and
        returns ``ChannelMultiple.fallback`` (8 channels)."""
        return ChannelMultiple.fallback(f"{self.name or 'this runtime'} measures no channel multiple")


class Target:
    """An execution target. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    #: None: this target has no integer path (``int8``/``qdq`` refuse it with a clear error).
    scheme: ClassVar[QuantScheme | None] = None
    placement: ClassVar[Placement | None] = None
    #: The emitter used when ``-o`` is not given.
    default_emitter: ClassVar[str] = "onnx"
    #: The output suffix of ``default_emitter`` (for the default output name).
    default_suffix: ClassVar[str] = ".onnx"
    #: What the target's kernels do well (``Capability`` values). A frontend maps these to its own
    #: rewrites: it applies a layout-changing rewrite only where the target declares the capability
    #: the rewrite relies on. The default declares every capability (what the built-in rewrites assume).
    capabilities: ClassVar[frozenset[str]] = Capability.ALL
    #: A CPU target ``--target auto`` measures and may choose (when installed: ``available()`` is None).
    auto_candidate: ClassVar[bool] = False

    def extra_float_nodes(self, graph: Any) -> set[str]:
        """Names of nodes (onnx-graphsurgeon graph) this target keeps float beyond the YOLO tail."""
        return set()

    def verify(self, model: Any) -> Verification:
        """Check a quantized ``onnx.ModelProto`` against this target's rules."""
        return Verification()

    def reference_fidelity(self, model: Any) -> float | None:
        """How closely this target's runtime computes a quantized ``onnx.ModelProto`` as its Q/DQ
        operators define it: the mean cosine of the runtime's outputs against a reference execution
        (onnxruntime) on a fixed input, 1.0 identical; None (the default) where the target does not
        check. ``qdq`` asks on a zero-point-0 grid and falls back to asymmetric activations below
        ``qdq.REFERENCE_FIDELITY``."""
        return None

    def runtime(self) -> Runtime | None:
        """The runtime that measures this target (None: the default target's runtime)."""
        return None

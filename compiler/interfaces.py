"""The interfaces frontends, emitters and targets implement (passes: see ``passbase``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .ir import ModelIR
from .metrics import Metrics
from .options import EVAL_SPLITS  # noqa: F401  (re-exported: the splits a frontend evaluates on)
from .target import Capability, Runtime, Target  # noqa: F401  (Target re-exported for plugins written against API 1.0)
from .training import TrainSettings


@dataclass
class HeadParts:
    """A model's output head as the frontend names it, for per-layer ratios and head pruning.

    ``index``: the head's position in ``Frontend.layers``; ``branches``: its prunable branches in
    the order a per-layer file lists their ratios (e.g. box regression, then classification);
    ``keep``: the modules that stay protected when the branches are opened to pruning.
    """

    index: int
    module: Any
    branches: dict[str, Any] = field(default_factory=dict)
    keep: list[Any] = field(default_factory=list)


class Frontend:
    """Loads a model file into a ``ModelIR`` and answers what generic passes need to know about its
    framework. ``load`` returns None for files it does not handle; the other methods have neutral
    defaults, so a plain-torch frontend overrides only ``load``. ``Frontend()`` itself is the null
    frontend a ``PassContext`` holds when no frontend loaded the model."""

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 100  # lower is tried first

    def load(self, model: Any, options: dict[str, Any]) -> ModelIR | None:
        raise NotImplementedError

    def evaluate(self, ir: ModelIR, onnx_bytes: bytes, data: str, runtime: Runtime,
                 split: str = "val") -> Metrics | None:
        """Accuracy of one stage's ONNX on the ``split`` of labelled ``data``, run on ``runtime`` (the
        target's: through ``runtime.native_artifact``, or its sessions where it has none). None: this
        frontend cannot evaluate. Raises ``UsageError`` for data it cannot read."""
        return None

    def agreement(self, ir: ModelIR, reference: dict[str, Any], outputs: dict[str, Any]) -> Metrics | None:
        """How closely ``outputs`` reproduce ``reference`` by the task's own metric: both the ONNX outputs
        ``{name: (N, ...) array}`` of ``ir``'s graph on the same N images, ``reference`` the float model's
        (its confident predictions are the ground truth). A ``Metrics`` whose primary value is a fraction
        (1.0: the same predictions), with paired bootstrap replicates over the N images (``drop_se``
        of two calls on the same images is their paired noise). None: this frontend cannot decode the
        task's outputs, or the reference predicts nothing to agree with; callers fall back to output
        fidelity (``measure.output_distance``)."""
        return None

    def preprocess(self, ir: ModelIR, image: Any) -> Any:
        """One HWC uint8 image as cv2 reads it for the model's input channels (BGR for 3, grayscale with
        C = 1 for 1) -> the (C, H, W) float32 input the deployed model gets.

        The default resizes to the input's (h, w) and scales to [0, 1] (BGR becomes RGB)."""
        import cv2
        import numpy as np

        h, w = ir.input.hw
        resized = cv2.resize(image, (w, h)).reshape(h, w, -1)  # cv2 drops a single channel's axis
        if resized.shape[-1] == 3:
            resized = resized[..., ::-1]
        return np.ascontiguousarray(resized.transpose(2, 0, 1)).astype(np.float32) / 255.0

    def canonicalize(self, ir: ModelIR, capabilities: frozenset[str] = Capability.ALL) -> dict[str, int]:
        """Numerically equivalent rewrites that make the model prunable, plus layout rewrites for the
        target's ``capabilities`` (``Target.capabilities``: the frontend maps each to its own rules);
        counts per rule."""
        return {}

    def layers(self, ir: ModelIR) -> list[Any] | None:
        """Top-level layers addressed by index in per-layer ratio files (None: not supported)."""
        return None

    def head(self, ir: ModelIR) -> HeadParts | None:
        """The output head's parts (None: no head this frontend knows of)."""
        return None

    def conv_bn_blocks(self, ir: ModelIR) -> list[tuple[str, str]]:
        """(conv, BatchNorm) qualname pairs that the framework's own blocks guarantee to be foldable (the
        conv's output feeds only the BN), for models whose dependency graph cannot be traced; the
        default knows none."""
        return []

    def adopt_fused_conv(self, parent: Any, conv_attr: str, bn_attr: str, fused: Any) -> bool:
        """Put ``fused`` (conv with the BN folded in) into ``parent`` in the framework's own fused form;
        False leaves the generic replacement (BN becomes Identity) to the caller."""
        return False

    def check_train(self, ir: ModelIR, distill: bool) -> None:
        """Raise ``UsageError`` before any work if ``train`` cannot train this model (or distil into it)."""
        from .errors import UsageError

        raise UsageError(f"the {self.name or 'generic'} frontend cannot train models: recovery passes "
                         f"(finetune, distill) need a frontend with a training loop, such as Ultralytics'")

    def train(self, ir: ModelIR, data: str, settings: TrainSettings, teacher: Any = None) -> tuple[Any, dict]:
        """Train ``ir.module`` on ``data`` (recovery); return (trained module, facts for the report).

        ``teacher`` is a module (or a checkpoint path) to distil from; ``settings`` are the pass's
        typed training arguments (``compiler.training.TrainSettings``: epochs, lr, distillation ...)."""
        self.check_train(ir, teacher is not None)
        raise NotImplementedError

    def checkpoint(self, ir: ModelIR, module: Any = None) -> Any:
        """The object to ``torch.save`` for ``module`` (default: the IR's) so it reloads later."""
        return ir.module if module is None else module


class Emitter:
    """Writes the compiled IR as an artifact; chosen by the output path's suffix."""

    name: ClassVar[str] = ""
    #: Endings of the output names this emitter writes (``.onnx``, ``_openvino_model`` ...).
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: The artifact is a folder (replaced as a whole), not a file.
    writes_folder: ClassVar[bool] = False

    def check(self, options: dict[str, Any]) -> None:
        """Raise ``UsageError`` before any pass runs if this emitter cannot write here (a missing optional
        runtime, a target it cannot build for); ``options`` as for ``emit``."""

    def emit(self, ir: ModelIR, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        """Write ``path`` and return facts about the artifact for the report. ``path`` is a staging
        name the compiler renames into place when the whole compile succeeded; ``options`` holds
        ``opset``, ``dynamic_batch``, the model's ``frontend`` and the ``target``."""
        raise NotImplementedError

"""The interfaces frontends, emitters and targets implement (passes: see ``passbase``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .ir import ModelIR

#: The splits of --data a frontend evaluates on: ``val`` (default) or the held-out ``test``.
EVAL_SPLITS = ("val", "test")


class Frontend:
    """Loads a model file into a ``ModelIR``. ``load`` returns None for files it does not handle."""

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 100  # lower is tried first

    def load(self, path: str, options: dict[str, Any]) -> ModelIR | None:
        raise NotImplementedError

    def evaluate(self, ir: ModelIR, onnx_bytes: bytes, data: str, split: str = "val") -> dict[str, float] | None:
        """Accuracy of one stage's ONNX on the ``split`` of labelled ``data`` (None: this frontend cannot).

        ``split`` is passed only when it is not ``"val"``, so frontends written for API 1.0 still work."""
        return None


class Emitter:
    """Writes the compiled IR as an artifact; chosen by the output path's suffix."""

    name: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()

    def emit(self, ir: ModelIR, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        """Write ``path`` (atomically) and return facts about the artifact for the report."""
        raise NotImplementedError


class Target:
    """How the compiled graph will be executed; passes read its rules."""

    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""

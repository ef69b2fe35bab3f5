"""``CompileOptions``: every run option in one typed object, with its default defined once.

The CLI, the Python API and recipes all build one of these; the cache key hashes it; passes read
it through ``PassContext.option``. Recipe keys and CLI flags use the field names.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import UsageError

#: The splits of --data accuracy is measured on: ``val`` (default) or the held-out ``test``.
EVAL_SPLITS = ("val", "test")
DEFAULT_OPSET = 17
DEFAULT_TARGET = "ort-cpu"
DEFAULT_SEARCH = "ladder"


def _named(field_name: str) -> str:
    """An option as the Python API and recipes spell it, and as the CLI does: ``latency_turn (--latency-turn)``."""
    return f"{field_name} (--{field_name.replace('_', '-')})"


@dataclass(frozen=True)
class CompileOptions:
    """How to compile: input size, export, target, data, measurement and cache settings."""

    imgsz: int | tuple[int, int] | None = None  # side, or (h, w); None: from the checkpoint, else the frontend's default
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = False
    target: str = DEFAULT_TARGET
    calib: str | None = None  # image folder, data YAML or .npy/.npz for calibration
    calib_n: int | None = None  # None: the calibrate pass's default
    data: str | None = None  # labelled data: accuracy per stage, training data for recovery
    eval_split: str = "val"
    measure: bool = True
    latency_runs: int = 20
    latency_turn: int = 6  # runs in a row per stage and round; the last is timed (1: interleaved runs)
    threads: int = 0  # 0: the runtime's default
    batch: int = 1  # also measure throughput at this batch size (models with a dynamic batch)
    cache_dir: str | None = None  # --cache: the content cache (compile results, calibration)
    max_drop: float | None = None  # --max-drop: the accuracy budget in points (see budget)
    max_macs: float | None = None  # --max-macs: the deepest MAC reduction the budget search tries
    search: str | None = None  # --search: the budget's search strategy (None: DEFAULT_SEARCH)
    trust_model: bool = False  # --trust-model: allow a full pickle (.pt) to run code while loading
    executor: str | None = None  # --executor: where budget trials run: local, ray, ray://HOST:PORT (None: local)
    workers: int | None = None  # --workers: trials of a batch run at once (None: 1, in this process)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``UsageError`` naming the option (field and flag) for any out-of-range value."""
        if self.imgsz is not None:
            object.__setattr__(self, "imgsz", parse_imgsz(self.imgsz))
        if self.opset < DEFAULT_OPSET:
            raise UsageError(f"opset {self.opset} is too old: yolocc emits opset {DEFAULT_OPSET} or newer")
        if self.calib_n is not None and self.calib_n < 1:
            raise UsageError(f"{_named('calib_n')} must be at least 1, got {self.calib_n}")
        if self.latency_runs < 0:
            raise UsageError(f"{_named('latency_runs')} must be >= 0, got {self.latency_runs}")
        if not 1 <= self.latency_turn <= 64:
            raise UsageError(f"{_named('latency_turn')} must be between 1 and 64, got {self.latency_turn}")
        if not 1 <= self.batch <= 1024:
            raise UsageError(f"{_named('batch')} must be between 1 and 1024, got {self.batch}")
        if self.threads < 0:
            raise UsageError(f"{_named('threads')} must be >= 0, got {self.threads}")
        if self.eval_split not in EVAL_SPLITS:
            raise UsageError(f"unknown evaluation split '{self.eval_split}' (choose from: {', '.join(EVAL_SPLITS)})")
        if self.max_drop is not None and not (math.isfinite(self.max_drop) and 0 <= self.max_drop <= 100):
            raise UsageError(f"{_named('max_drop')} must be between 0 and 100 points, got {self.max_drop}")
        if self.max_macs is not None and not (math.isfinite(self.max_macs) and 0 <= self.max_macs < 1):
            raise UsageError(f"{_named('max_macs')} must be a fraction in [0, 1), got {self.max_macs}")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"{_named('workers')} must be at least 1, got {self.workers}")
        if self.executor is not None and self.executor not in ("local", "ray") \
                and not (self.executor.startswith("ray://") and len(self.executor) > len("ray://")):
            raise UsageError(f"unknown executor '{self.executor}' (choose from: local, ray, ray://HOST:PORT)")

    # ------------------------------------------------------------------ building
    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "options") -> "CompileOptions":
        """Typed options from a mapping (a recipe, CLI flags); unknown keys and wrong types are errors."""
        return cls(**coerce(values, source))

    def merged(self, values: Mapping[str, Any], source: str = "options") -> "CompileOptions":
        """A copy with ``values`` (checked like ``from_mapping``) replacing these."""
        return replace(self, **coerce(values, source))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cache_settings(self) -> dict[str, Any]:
        """What decides the artifact and report, for the cache key (data paths are hashed by content)."""
        return {k: v for k, v in self.as_dict().items()
                if k not in ("cache_dir", "calib", "data", "executor", "workers")}  # where trials run: not what

    def cache_root(self) -> Path:
        """The content cache: ``cache_dir``, else ``YOLOCC_CACHE_DIR``, else ~/.cache/yolocc."""
        return Path(self.cache_dir or os.environ.get("YOLOCC_CACHE_DIR") or Path.home() / ".cache" / "yolocc")


_TYPES = {"imgsz": int, "opset": int, "dynamic_batch": bool, "target": str, "calib": str, "calib_n": int,
          "data": str, "eval_split": str, "measure": bool, "latency_runs": int, "latency_turn": int, "threads": int,
          "batch": int, "cache_dir": str, "max_drop": float, "max_macs": float, "search": str, "trust_model": bool,
          "executor": str, "workers": int}


def parse_imgsz(value: Any) -> int | tuple[int, int]:
    """An input size as the options hold it: an int side for a square input, ``(h, w)`` for a rectangular one.

    Accepts an int, ``"160"``, ``"96,160"`` (height, width, as Ultralytics' ``imgsz=[h, w]``) or a list/tuple
    of one or two ints; ``[160, 160]`` becomes ``160``. Each side must be 1..8192 pixels. Raises ``UsageError``."""
    sides: Any = value
    if isinstance(value, str):
        try:
            sides = [int(v) for v in value.replace("x", ",").split(",")]
        except ValueError:
            raise UsageError(f"imgsz must be N or H,W (pixels), got '{value}'") from None
    if isinstance(sides, (list, tuple)):
        if not 1 <= len(sides) <= 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in sides):
            raise UsageError(f"imgsz must be N or H,W (pixels), got {value!r}")
        sides = tuple(sides) if len(sides) == 2 and sides[0] != sides[1] else sides[0]
    if isinstance(sides, bool) or not isinstance(sides, (int, tuple)):
        raise UsageError(f"imgsz must be N or H,W (pixels), got {value!r}")
    for side in (sides if isinstance(sides, tuple) else (sides,)):
        if not 1 <= side <= 8192:
            raise UsageError(f"imgsz must be between 1 and 8192, got {side}")
    return sides


def coerce(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check each value's type (paths may be ``Path``; floats may be given as ints); None means unset."""
    out: dict[str, Any] = {}
    unknown = set(values) - set(_TYPES)
    if unknown:
        raise UsageError(f"{source}: unknown option(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(_TYPES)})")
    for key, value in values.items():
        typ = _TYPES[key]
        if value is None:
            continue  # unset: the default applies
        if key == "imgsz" and not isinstance(value, bool) and isinstance(value, (int, list, tuple)):
            out[key] = parse_imgsz(value)
        elif typ is str and isinstance(value, (str, os.PathLike)):
            out[key] = str(value)
        elif typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
        elif typ in (int, bool) and isinstance(value, typ) and (typ is bool or not isinstance(value, bool)):
            out[key] = value
        else:
            kind = "int or [h, w]" if key == "imgsz" else typ.__name__
            raise UsageError(f"{source}: '{key}' must be {kind}, got {value!r}")
    return out

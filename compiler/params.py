"""Typed pass parameters and the ``name:arg,key=value`` syntax of ``-p``.

``prune:0.25`` binds ``0.25`` to the pass's first parameter; ``prune:ratio=0.25,round_to=8``
names them. Unknown keys, bad types and out-of-range values are ``UsageError``s.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .errors import UsageError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One typed parameter of a pass."""

    name: str
    kind: str  # float | int | int|auto | str | bool | bool|auto | choice | path
    default: Any = None
    doc: str = ""
    low: float | None = None
    high: float | None = None
    high_open: bool = False  # True: value must be < high
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """A short human description such as ``ratio=0.25 (float in [0, 1))``."""
        if self.kind == "choice":
            t = "|".join(self.choices)
        elif self.low is not None or self.high is not None:
            hi = ")" if self.high_open else "]"
            t = f"{self.kind} in [{self.low}, {self.high}{hi}"
        else:
            t = self.kind
        return f"{self.name}={self.default} ({t})"

    def convert(self, pass_name: str, raw: Any) -> Any:
        """Convert a raw (string or Python) value and check its range."""
        where = f"pass '{pass_name}': {self.name}"
        if self.kind == "float":
            value = _num(float, raw, where)
            self._check_range(value, where)
        elif self.kind == "int":
            value = _num(int, raw, where)
            self._check_range(value, where)
        elif self.kind == "int|auto":  # a count, or "auto": the pass decides (e.g. epochs until recovered)
            if isinstance(raw, str) and raw.strip().lower() == "auto":
                value = "auto"
            else:
                value = _num(int, raw, f"{where} (an integer or 'auto')")
                self._check_range(value, where)
        elif self.kind in ("bool", "bool|auto"):  # bool|auto: "auto" lets the pass decide from the plan
            if self.kind == "bool|auto" and isinstance(raw, str) and raw.strip().lower() == "auto":
                value = "auto"
            elif isinstance(raw, bool):
                value = raw
            elif str(raw).lower() in _TRUE:
                value = True
            elif str(raw).lower() in _FALSE:
                value = False
            else:
                either = " or auto" if self.kind == "bool|auto" else ""
                raise UsageError(f"{where} must be true or false{either}, got '{raw}'")
        elif self.kind == "choice":
            value = str(raw)
            if value not in self.choices:
                raise UsageError(f"{where} must be one of {', '.join(self.choices)}; got '{raw}'")
        elif self.kind == "path":
            value = str(raw)
            if not os.path.isfile(value):
                raise UsageError(f"{where}: file '{value}' does not exist")
        else:
            value = str(raw)
        return value

    def _check_range(self, value: float, where: str) -> None:
        if self.low is not None and value < self.low:
            raise UsageError(f"{where} must be >= {self.low}, got {value}")
        if self.high is not None:
            if self.high_open and value >= self.high:
                raise UsageError(f"{where} must be < {self.high}, got {value}")
            if not self.high_open and value > self.high:
                raise UsageError(f"{where} must be <= {self.high}, got {value}")


def _num(typ: type, raw: Any, where: str) -> Any:
    """A finite float, or an integer given as an int, an integral float or its decimal text."""
    kind = "an integer" if typ is int else "a finite number"
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise UsageError(f"{where} must be {kind}, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{where} must be {kind}, got '{raw}'") from None
    if not math.isfinite(value):
        raise UsageError(f"{where} must be {kind}, got '{raw}'")
    if typ is float:
        return value
    if isinstance(raw, int):
        return raw
    if not value.is_integer():
        raise UsageError(f"{where} must be an integer, got '{raw}'")
    try:
        return int(raw) if isinstance(raw, str) and raw.strip().lstrip("+-").isdigit() else int(value)
    except (ValueError, OverflowError):
        raise UsageError(f"{where} must be an integer, got '{raw}'") from None


@dataclass(frozen=True)
class PassSpec:
    """A pass name plus its raw arguments, as written by the user."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    positional: tuple[Any, ...] = ()

    def __str__(self) -> str:
        parts = [str(v) for v in self.positional] + [f"{k}={v}" for k, v in self.args.items()]
        return self.name + (":" + ",".join(parts) if parts else "")


def parse_pass_spec(text: str) -> PassSpec:
    """Parse ``name``, ``name:value`` or ``name:key=value,key=value``."""
    text = text.strip()
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"empty pass name in '{text}'")
    args: dict[str, str] = {}
    positional: list[str] = []
    if rest.strip():
        for item in rest.split(","):
            item = item.strip()
            if not item:
                raise UsageError(f"empty argument in '{text}'")
            if "=" in item:
                key, _, value = item.partition("=")
                key = key.strip()
                if not key:
                    raise UsageError(f"argument without a name in '{text}'")
                if key in args:
                    raise UsageError(f"argument '{key}' given twice in '{text}'")
                args[key] = value.strip()
            else:
                if args:
                    raise UsageError(f"positional argument '{item}' after a named one in '{text}'")
                positional.append(item)
    return PassSpec(name, args, tuple(positional))


def bind(pass_name: str, params: Sequence[Param], spec_args: Mapping[str, Any],
         positional: Sequence[Any] = ()) -> dict[str, Any]:
    """Bind raw arguments to ``params``: defaults, conversion, range checks, unknown keys."""
    by_name = {p.name: p for p in params}
    if len(positional) > len(params):
        raise UsageError(f"pass '{pass_name}' takes at most {len(params)} positional argument(s), "
                         f"got {len(positional)}")
    raw: dict[str, Any] = {}
    for p, value in zip(params, positional):
        raw[p.name] = value
    for key, value in spec_args.items():
        if key not in by_name:
            known = ", ".join(by_name) or "none"
            raise UsageError(f"pass '{pass_name}' has no argument '{key}' (it takes: {known})")
        if key in raw:
            raise UsageError(f"pass '{pass_name}': argument '{key}' given twice")
        raw[key] = value
    bound = {}
    for p in params:
        bound[p.name] = p.convert(pass_name, raw[p.name]) if raw.get(p.name) is not None else p.default
    return bound

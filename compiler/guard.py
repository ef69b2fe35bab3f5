"""Failures of plugin-provided objects, attributed: a third-party frontend, emitter, target, runtime,
session or search strategy that raises an unexpected exception becomes one ``PluginError`` line naming
the plugin, the object and the method, instead of "an internal error in yolocc".

``guard`` wraps an object's interface methods on the instance (``isinstance`` checks keep working);
objects a guarded method returns (a target's runtime, a runtime's session) are guarded in turn.
Built-in objects are never wrapped: their failures are yolocc's bugs and keep their traceback.
"""

from __future__ import annotations

import functools
from typing import Any

from .errors import PluginError, YoloccError

#: The interface methods guarded per kind of object, and what the return value of some of them is.
METHODS = {
    "frontend": ("load", "evaluate", "preprocess", "canonicalize", "layers", "head", "adopt_fused_conv",
                 "check_train", "train", "checkpoint"),
    "emitter": ("check", "emit"),
    "target": ("extra_float_nodes", "verify", "reference_fidelity", "runtime"),
    "runtime": ("load", "describe", "native_artifact", "int8_ceiling", "channel_multiple"),
    "session": ("run",),
    "strategy": ("search",),
}
RETURNS = {("target", "runtime"): "runtime", ("runtime", "load"): "session"}


def guard(obj: Any, provider: str, kind: str) -> Any:
    """``obj`` with its ``METHODS[kind]`` wrapped so that their failures name ``provider``; returns ``obj``."""
    if obj is None or getattr(obj, "_yolocc_guarded", False):
        return obj
    label = f"{kind} '{getattr(obj, 'name', '') or type(obj).__name__}'"
    for method in METHODS[kind]:
        bound = getattr(obj, method, None)
        if callable(bound):
            setattr(obj, method, _wrapped(bound, provider, label, method, RETURNS.get((kind, method))))
    try:
        obj._yolocc_guarded = True
    except AttributeError:  # an object with __slots__: its methods could not be wrapped either
        pass
    return obj


def _wrapped(bound, provider: str, label: str, method: str, returns: str | None):
    @functools.wraps(bound)
    def call(*args, **kwargs):
        try:
            result = bound(*args, **kwargs)
        except YoloccError:
            raise
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else ""
            raise PluginError(f"plugin '{provider}': {label} failed in {method}: {type(e).__name__}"
                              f"{': ' + first if first else ''}") from e
        return guard(result, provider, returns) if returns else result

    return call

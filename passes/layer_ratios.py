"""Per-layer pruning ratios from a YAML file in Ultralytics' layer-index format.

    # layer index: ratio
    2: 0.1
    4: 0.3
    22: [0.2, 0.4]   # the Detect head: [regression branch, classification branch]
"""

from __future__ import annotations

from pathlib import Path

import yaml

from yolocc.compiler.errors import UsageError


def load_layer_ratios(path: str, n_layers: int, head_index: int | None) -> dict[int | str, float | tuple[float, float]]:
    """Read and validate the file; keys are layer indices (or layer qualnames), values ratios in [0, 1)."""
    where = f"layer-ratio file '{path}'"
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"cannot read {where}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    if isinstance(data, dict) and set(data) == {"ratios"}:
        data = data["ratios"]
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{where} must map layer indices to ratios, e.g. '4: 0.3'")
    out: dict[int, float | tuple[float, float]] = {}
    for key, value in data.items():
        if isinstance(key, str) and "." in key and not key.replace(".", "").isdigit():
            out[key] = _ratio(where, key, value)  # a layer's qualname (as prune:macs=...,save= writes them)
            continue
        try:
            idx = int(key)
        except (TypeError, ValueError):
            raise UsageError(f"{where}: key '{key}' is not a layer index or a layer name") from None
        if not 0 <= idx < n_layers:
            raise UsageError(f"{where}: layer {idx} does not exist (the model has layers 0-{n_layers - 1})")
        if isinstance(value, (list, tuple)):
            if idx != head_index or len(value) != 2:
                raise UsageError(f"{where}: only the head (layer {head_index}) takes a "
                                 f"[regression, classification] pair; layer {idx} got {value}")
            out[idx] = (_ratio(where, idx, value[0]), _ratio(where, idx, value[1]))
        else:
            out[idx] = _ratio(where, idx, value)
    return out


def _ratio(where: str, idx: int, value) -> float:
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: layer {idx} ratio '{value}' is not a number") from None
    if not 0.0 <= r < 1.0:
        raise UsageError(f"{where}: layer {idx} ratio must be in [0, 1), got {r}")
    return r

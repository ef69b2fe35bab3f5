"""Recipes: a pipeline kept in a file (YAML, TOML, or ``[tool.yolocc]`` in a pyproject.toml).

    # r.yaml
    passes:
      - prune:0.25              # the -p syntax ...
      - {name: int8, method: minmax}   # ... or a mapping
    imgsz: 640
    calib: images/
    target: ort-cpu

Keys other than ``passes`` set the options of the same name (``imgsz``, ``calib``, ``calib_n``,
``target``, ``opset``, ``dynamic_batch``, ``data``, ``eval_split``); command-line flags override them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError
from .params import PassSpec, parse_pass_spec

OPTION_KEYS = {"imgsz": int, "calib": str, "calib_n": int, "target": str, "opset": int,
               "dynamic_batch": bool, "data": str, "eval_split": str}


def load_recipe(path: str | Path) -> tuple[list[PassSpec], dict[str, Any]]:
    """The passes and options of a recipe file."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"recipe '{p}' does not exist")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        elif p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(p.read_text(encoding="utf-8"))
            if p.name == "pyproject.toml":
                data = data.get("tool", {}).get("yolocc")
                if data is None:
                    raise UsageError(f"'{p}' has no [tool.yolocc] table")
        else:
            raise UsageError(f"recipe '{p}' must be .yaml, .yml or .toml")
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"cannot read recipe '{p}': {type(e).__name__}: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise UsageError(f"recipe '{p}' must be a mapping with a 'passes' list")
    unknown = set(data) - set(OPTION_KEYS) - {"passes"}
    if unknown:
        raise UsageError(f"recipe '{p}': unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: passes, {', '.join(OPTION_KEYS)})")
    passes = data.get("passes") or []
    if not isinstance(passes, list):
        raise UsageError(f"recipe '{p}': 'passes' must be a list")
    specs = [_spec(p, item) for item in passes]
    options = {}
    for key, typ in OPTION_KEYS.items():
        if key in data:
            value = data[key]
            if typ is not str and not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise UsageError(f"recipe '{p}': '{key}' must be {typ.__name__}, got {value!r}")
            options[key] = str(value) if typ is str else value
    return specs, options


def _spec(path: Path, item: Any) -> PassSpec:
    if isinstance(item, str):
        return parse_pass_spec(item)
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        args = {k: v for k, v in item.items() if k != "name"}
        return PassSpec(item["name"], args)
    raise UsageError(f"recipe '{path}': pass entry {item!r} must be 'name:args' or a mapping with 'name'")

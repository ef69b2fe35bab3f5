"""Recipes: a pipeline kept in a file (YAML, TOML, or ``[tool.yolocc]`` in a pyproject.toml).

    # r.yaml
    passes:
      - prune:0.25              # the -p syntax ...
      - {name: int8, method: minmax}   # ... or a mapping
    imgsz: 640
    calib: images/
    target: ort-cpu

Keys other than ``passes`` are ``CompileOptions`` fields (``imgsz``, ``calib``, ``calib_n``,
``target``, ``opset``, ``dynamic_batch``, ``data``, ``eval_split``, ``max_drop`` ...), type-checked;
command-line flags override them. Pass entries keep their YAML/TOML types: a mapping entry is bound
as it is, never rendered back to ``-p`` text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError
from .options import CompileOptions, coerce
from .params import PassSpec, parse_pass_spec


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
    unknown = set(data) - set(CompileOptions.names()) - {"passes"}
    if unknown:
        raise UsageError(f"recipe '{p}': unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: passes, {', '.join(CompileOptions.names())})")
    passes = data.get("passes") or []
    if not isinstance(passes, list):
        raise UsageError(f"recipe '{p}': 'passes' must be a list")
    specs = [_spec(p, item) for item in passes]
    options = coerce({k: v for k, v in data.items() if k != "passes"}, f"recipe '{p}'")
    return specs, options


def _spec(path: Path, item: Any) -> PassSpec:
    if isinstance(item, str):
        return parse_pass_spec(item)
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        args = {k: v for k, v in item.items() if k != "name"}
        return PassSpec(item["name"], args)
    raise UsageError(f"recipe '{path}': pass entry {item!r} must be 'name:args' or a mapping with 'name'")

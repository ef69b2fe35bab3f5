"""The ``yolocc`` command line. Terminal output lives here; the library only logs.

Exit codes: 0 success; 2 bad input or a failed compile (one line on stderr); 1 a bug (traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import PassError, UsageError, YoloccError

SUBCOMMANDS = ("passes", "inspect")
EPILOG = """other commands:
  yolocc passes [--json]               list passes: name, stage, parameters, provider, doc
  yolocc inspect MODEL [--imgsz N] [--json]
                                       show the IR: layers, params, MACs, coupling groups

exit codes: 0 ok, 2 bad input or failed compile (one line on stderr), 1 internal error (a bug)
examples:
  yolocc yolov8n.yaml -p prune:0.25 -o pruned.onnx --report report.json
  yolocc model.pt -p prune:ratio=0.3,importance=l1,round_to=8 -p fuse-bn -o model.onnx
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _compile_parser() -> argparse.ArgumentParser:
    from .interfaces import EVAL_SPLITS

    p = _Parser(prog="yolocc", description="yolocc: compress YOLO and other PyTorch CNNs into deployable ONNX.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model: Ultralytics .pt or model YAML (yolov8n.yaml), torch .pt module pickle, or .onnx")
    p.add_argument("-p", "--pass", dest="passes", action="append", default=[], metavar="PASS[:ARGS]",
                   help="add a pass, in order; e.g. prune:0.25 or prune:ratio=0.25,importance=l1 (see 'yolocc passes')")
    p.add_argument("-o", "--output", help="artifact to write: .onnx, or .pt for the torch-stage model "
                                          "(default: MODEL-yolocc.onnx in the current folder)")
    p.add_argument("--imgsz", type=int, help="input size (default: from the checkpoint, else 640)")
    p.add_argument("--report", action="append", default=[], metavar="PATH",
                   help="write the report to PATH: .json or .md (repeatable)")
    p.add_argument("--calib", metavar="PATH",
                   help="calibration data for int8: image folder, Ultralytics data YAML (train images), or .npy/.npz")
    p.add_argument("--calib-n", type=int, metavar="N", help="number of calibration images (default: 128)")
    p.add_argument("--data", metavar="DATA",
                   help="labelled data (Ultralytics data YAML, or a classify folder): add accuracy to every stage")
    p.add_argument("--eval-split", choices=EVAL_SPLITS,
                   help="split of --data that accuracy is measured on (default: val; training picks checkpoints "
                        "on val, so 'test' gives held-out numbers)")
    p.add_argument("--target", help="runtime the quantized graph is for: ort-cpu (default) or tensorrt")
    p.add_argument("--dry-run", "--plan", dest="dry_run", action="store_true",
                   help="print the expanded plan (macros, auto-inserted passes, lowering) and exit")
    p.add_argument("--opset", type=int, help="ONNX opset, 17 or newer (default: 17)")
    p.add_argument("--dynamic-batch", action="store_const", const=True,
                   help="emit ONNX with a dynamic batch dimension")
    p.add_argument("--recipe", metavar="FILE",
                   help="passes and options from a YAML/TOML recipe or a pyproject.toml's [tool.yolocc]")
    p.add_argument("--cache", metavar="DIR", help="content-addressed compile cache: skip an unchanged compile")
    p.add_argument("--latency-runs", type=int, default=20,
                   help="timed onnxruntime runs per stage for the report, 0 to skip (default: 20)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads for latency (default: all cores)")
    p.add_argument("--no-measure", action="store_true", help="skip per-stage measurements (faster)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("--version", action="version", version=f"yolocc {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _SUBCOMMAND_MAIN[argv[0]](argv[1:])
        return _compile_main(argv)
    except YoloccError as e:
        if isinstance(e, PassError) and e.__cause__ is not None and not isinstance(e.__cause__, YoloccError):
            return _bug(e)
        print(f"yolocc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("yolocc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # anything else is a bug
        return _bug(e)


def _bug(e: BaseException) -> int:
    traceback.print_exception(e)
    print("yolocc: internal error (a bug); please report it with the traceback above", file=sys.stderr)
    return 1


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="yolocc: %(levelname)s: %(message)s", stream=sys.stderr)


def _compile_main(argv: list[str]) -> int:
    from .api import Compiler
    from .fileio import check_writable

    args = _compile_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if args.latency_runs < 0:
        raise UsageError(f"--latency-runs must be >= 0, got {args.latency_runs}")
    for path in args.report:
        if Path(path).suffix.lower() not in (".json", ".md"):
            raise UsageError(f"--report path '{path}' must end in .json or .md")
        check_writable(path)
    _apply_recipe(args)
    compiler = Compiler()
    output = args.output
    if output is None and not args.dry_run:
        output = f"{Path(args.model).stem}-yolocc.onnx"
    if output is not None:
        compiler.registry.emitter_for(output)
        check_writable(output)
    ir = None if args.cache and not args.dry_run else compiler.load(args.model, args.imgsz)
    if args.dry_run:
        steps = compiler.plan(ir, args.passes)
        if args.json:
            print(json.dumps({"model": ir.source, "stage": ir.stage, "plan": [s.as_dict() for s in steps]}, indent=2))
        else:
            _print_plan(ir, steps)
        return 0
    compiler.registry.target(args.target)
    if args.calib_n is not None and args.calib_n < 1:
        raise UsageError(f"--calib-n must be at least 1, got {args.calib_n}")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bars:
        tasks: dict[str, int] = {}

        def progress(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = bars.add_task(description, total=total)
            bars.update(tasks[description], completed=done, total=total)

        def on_stage(rec):
            console.log(f"{rec.name}: {'changed' if rec.modified else 'no change'} ({rec.time_s:.2f} s)"
                        if rec.origin != "input" else f"loaded {args.model}")

        result = compiler.compile(ir or args.model, args.passes, output, imgsz=args.imgsz,
                                  opset=args.opset, dynamic_batch=args.dynamic_batch,
                                  measure=not args.no_measure, latency_runs=args.latency_runs,
                                  threads=args.threads, calib=args.calib, calib_n=args.calib_n,
                                  target=args.target, data=args.data, eval_split=args.eval_split,
                                  cache_dir=args.cache,
                                  on_stage=on_stage, progress=progress)
    if result.report.cache and result.report.cache.get("hit"):
        console.log(f"cache hit: {result.report.cache['key'][:16]} ({result.report.cache['time_s']:.2f} s)")
    for path in args.report:
        result.report.write(path)
    if args.report and any(s.metrics for s in result.report.stages):
        from .plot import write_accuracy_latency_png

        png = write_accuracy_latency_png(result.report, Path(args.report[0]).with_suffix(".png"))
        if png:
            args.report.append(str(png))
    if args.json:
        print(json.dumps(result.report.as_dict(), indent=2))
    else:
        _print_report(result.report)
        if result.artifact:
            print("wrote " + ", ".join([str(result.artifact), *args.report]))
    return 0


_OPTION_DEFAULTS = {"opset": 17, "dynamic_batch": False, "target": "ort-cpu", "eval_split": "val"}


def _apply_recipe(args: argparse.Namespace) -> None:
    """Fill passes and unset options from ``--recipe``; command-line flags win."""
    if args.recipe:
        from .recipe import load_recipe

        specs, options = load_recipe(args.recipe)
        if specs and args.passes:
            raise UsageError("give the passes either in the recipe or with -p, not both")
        args.passes = args.passes or [str(s) for s in specs]
        for key, value in options.items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
    for key, value in _OPTION_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _print_plan(ir, steps) -> None:
    print(f"plan for {ir.source} ({ir.stage} stage):")
    for i, s in enumerate(steps, 1):
        stage = s.pass_.stage if s.pass_ else "-"
        origin = "" if s.origin == "user" else f"   [{s.origin}]"
        print(f"  {i}. {s.describe():<50} {stage:<6}{origin}")


def _print_report(report) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = report.rows()
    table = Table(title=f"yolocc: {report.model} ({report.task}, imgsz {report.imgsz})")
    for col in (rows[0] if rows else {}):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in rows:
        table.add_row(*r.values())
    Console().print(table)


def _passes_main(argv: list[str]) -> int:
    from .registry import build_registry, get_plugin_manager

    p = _Parser(prog="yolocc passes", description="List the registered passes.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    reg = build_registry(get_plugin_manager())
    entries = [{"name": name, "stage": r.obj.kind(), "provider": r.provider, "doc": r.obj.summary(),
                "params": [{"name": q.name, "type": q.kind, "default": q.default, "doc": q.doc,
                            **({"choices": list(q.choices)} if q.choices else {})} for q in r.obj.params]}
               for name, r in sorted(reg.passes.items())]
    if args.json:
        print(json.dumps({"passes": entries, "broken_plugins": reg.broken}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="yolocc passes")
    for col in ("pass", "stage", "parameters", "provider", "description"):
        table.add_column(col)
    for name, r in sorted(reg.passes.items()):
        table.add_row(name, r.obj.kind(), "\n".join(q.describe() for q in r.obj.params) or "-",
                      r.provider, r.obj.summary())
    Console().print(table)
    for name, why in sorted(reg.broken.items()):
        print(f"plugin '{name}' failed to load: {why}", file=sys.stderr)
    return 0


def _inspect_main(argv: list[str]) -> int:
    from .api import Compiler
    from .inspect import summarize

    p = _Parser(prog="yolocc inspect", description="Show a model's IR: layers, params, MACs, coupling groups.")
    p.add_argument("model")
    p.add_argument("--imgsz", type=int)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    _setup_logging(False)
    ir = Compiler().load(args.model, args.imgsz)
    info = summarize(ir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"yolocc inspect: {ir.source}", show_header=False)
    for key in ("frontend", "task", "stage", "input", "outputs", "layers", "params", "macs",
                "coupling_groups", "prunable_groups", "prunable_channels", "protected"):
        if key in info:
            value = info[key]
            if key == "protected":
                value = ", ".join(value)
            elif key == "input":
                value = f"{value['name']} {value['shape']}"
            elif key == "outputs":
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            summary.add_row(key, str(value))
    console.print(summary)
    if info.get("groups"):
        groups = Table(title="channel-coupling groups (torch-pruning)")
        for col in ("root", "channels", "members", "prunable"):
            groups.add_column(col)
        for g in info["groups"]:
            groups.add_row(g["root"], str(g["channels"]), str(len(g["members"])), "yes" if g["prunable"] else "no")
        console.print(groups)
    return 0


_SUBCOMMAND_MAIN = {"passes": _passes_main, "inspect": _inspect_main}

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
from .analyses import SENSITIVITY
from .errors import PassError, UsageError, YoloccError
from .options import parse_imgsz

SUBCOMMANDS = ("passes", "targets", "strategies", "inspect")
EPILOG = """other commands:
  yolocc passes [--json]               list passes: name, stage, parameters, provider, doc
  yolocc targets [--json]              list targets: name, quantization scheme, runtime, provider
  yolocc strategies [--json]           list --max-drop search strategies (--search NAME)
  yolocc inspect MODEL [--imgsz N|H,W] [--json] [--trust-model] [--sensitivity --calib PATH [--png PATH]]
                                       show the IR: layers, params, MACs, coupling groups

exit codes: 0 ok, 2 bad input or failed compile (one line on stderr), 1 internal error (a bug)
examples:
  yolocc yolov8n.yaml -p prune:0.25 -o pruned.onnx --report report.json
  yolocc model.pt --max-drop 1.0 --data data.yaml --calib images/ -o fast.onnx
  yolocc model.pt -p prune:ratio=0.3,importance=l1,round_to=8 -p fuse-bn -o model.onnx
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _compile_parser() -> argparse.ArgumentParser:
    from .options import EVAL_SPLITS

    p = _Parser(prog="yolocc", description="yolocc: compress YOLO and other PyTorch CNNs into deployable ONNX, "
                                           "OpenVINO IR, TensorRT engines or .pt.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model: Ultralytics .pt or model YAML (yolov8n.yaml), torch .pt module pickle, or .onnx")
    p.add_argument("-p", "--pass", dest="passes", action="append", default=[], metavar="PASS[:ARGS]",
                   help="add a pass, in order; e.g. prune:0.25 or prune:ratio=0.25,importance=l1 (see 'yolocc passes')")
    p.add_argument("-o", "--output", help="artifact to write: .onnx, .pt (the torch-stage model), NAME_openvino_model "
                                          "(OpenVINO IR folder) or .engine (TensorRT, --target tensorrt) "
                                          "(default: MODEL-yolocc + the target's default, .onnx for ort-cpu)")
    p.add_argument("--imgsz", type=parse_imgsz, metavar="N|H,W",
                   help="input size: N (square) or H,W (rectangular, e.g. 384,640) (default: from the checkpoint, "
                        "else 640)")
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
    p.add_argument("--trust-model", action="store_const", const=True,
                   help="load a .pt that is a full pickle (e.g. torch.save(model)); unpickling can run any code, so "
                        "only for files you trust (default: refused; Ultralytics checkpoints load safely without it)")
    p.add_argument("--max-drop", type=float, metavar="PTS",
                   help="accuracy budget: search for the fastest model (prune + distill + int8 with mixed "
                        "precision) whose val metric on --data stays within PTS points of the input; needs --data "
                        "and --calib; replaces -p (exit 2 with the best candidate if the budget cannot be met)")
    p.add_argument("--max-macs", type=float, metavar="F",
                   help="with --max-drop: the deepest MAC reduction the search tries, a fraction (default: 0.65; "
                        "smaller is faster to search)")
    p.add_argument("--search", metavar="NAME",
                   help="with --max-drop: the search strategy (default: ladder; 'yolocc strategies' lists them)")
    p.add_argument("--executor", metavar="local|ray|ray://HOST:PORT",
                   help="with --max-drop: where a batch of trials runs: local (default: this machine), ray (an "
                        "embedded local Ray, or the cluster at $RAY_ADDRESS) or ray://HOST:PORT (join that Ray "
                        "cluster; --data, --calib and the model must be readable at the same paths on every node); "
                        "ray needs the 'ray' extra")
    p.add_argument("--workers", type=int, metavar="N",
                   help="with --max-drop: run up to N trials of a batch at once (local: N worker processes; ray: "
                        "an embedded Ray with N CPUs) (default: 1, in this process)")
    p.add_argument("--target", help="where the model will run: ort-cpu (default), tensorrt, openvino, auto "
                                    "(measure the model on every installed CPU runtime and take the fastest), "
                                    "or a plugin's target (see 'yolocc targets')")
    p.add_argument("--dry-run", "--plan", dest="dry_run", action="store_true",
                   help="print the expanded plan (macros, auto-inserted passes, lowering) and exit")
    p.add_argument("--opset", type=int, help="ONNX opset, 17 or newer (default: 17)")
    p.add_argument("--dynamic-batch", action="store_const", const=True,
                   help="symbolic batch, height and width in the output (as Ultralytics' dynamic export); "
                        "the compile still calibrates, measures and evaluates at --imgsz")
    p.add_argument("--recipe", metavar="FILE",
                   help="passes and options from a YAML/TOML recipe or a pyproject.toml's [tool.yolocc]")
    p.add_argument("--cache", dest="cache_dir", metavar="DIR",
                   help="content cache: skip an unchanged compile; calibration ranges are kept under it too "
                        "(default for calibration: $YOLOCC_CACHE_DIR or ~/.cache/yolocc)")
    p.add_argument("--latency-runs", type=int,
                   help="timed runs per stage on the target's runtime for the report, 0 to skip (default: 20)")
    p.add_argument("--latency-turn", type=int, metavar="N",
                   help="time each stage as the last of N runs in a row (back to back, as a loop over one "
                        "model runs it); 1: one run between the other stages' (default: 6)")
    p.add_argument("--threads", type=int, help="runtime threads for latency (default: all cores)")
    p.add_argument("--batch", type=int, metavar="N",
                   help="also measure throughput at batch N (needs --dynamic-batch; default: batch 1 only)")
    p.add_argument("--no-measure", dest="measure", action="store_const", const=False,
                   help="skip per-stage measurements (faster)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log progress details, and list every stage in the table (not only your passes)")
    p.add_argument("--version", action="version", version=f"yolocc {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _SUBCOMMAND_MAIN[argv[0]](argv[1:])
        return _compile_main(argv)
    except YoloccError as e:
        if isinstance(e, PassError) and e.internal:
            return _bug(e)
        print(f"yolocc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("yolocc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (e.g. piped into head): not an error of ours
        sys.stderr.close()
        return 0
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
    from .autotarget import AUTO_TARGET, candidates
    from .autotarget import resolve as resolve_target
    from .options import DEFAULT_TARGET
    from .fileio import check_report_path, refuse_input_overwrite

    args = _compile_parser().parse_args(argv)
    _setup_logging(args.verbose)
    for path in args.report:
        check_report_path(path)
    passes, options = _options(args)
    compiler = Compiler()
    choice = None
    if options.target == AUTO_TARGET:
        if args.dry_run:  # the plan does not depend on the target: show it without measuring
            options = options.merged({"target": DEFAULT_TARGET}, "--dry-run")
            print(f"--target auto measures the model on every installed CPU runtime when it compiles "
                  f"({', '.join(candidates(compiler.registry))}); the plan is the same for each", file=sys.stderr)
        else:
            options, choice = resolve_target(compiler, args.model, passes, options)
    target, _ = compiler.target(options.target)
    output = args.output
    if output is None and not args.dry_run:
        output = f"{Path(args.model).stem}-yolocc{target.default_suffix}"
    if output is not None:
        compiler.registry.emitter_for(output)
    for path in [output, *args.report]:
        if path is not None:
            refuse_input_overwrite(args.model, path)
    ir = None if options.cache_dir and not args.dry_run else compiler.load(args.model, options.imgsz,
                                                                           options.trust_model)
    if args.dry_run:
        steps = compiler.plan(ir, passes)
        if args.json:
            print(json.dumps({"model": ir.source, "stage": ir.stage, "plan": [s.as_dict() for s in steps]}, indent=2))
        else:
            _print_plan(ir, steps)
        return 0
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    console = _console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bars:  # piped stderr: no bars (an error stays one line)
        tasks: dict[str, int] = {}

        def progress(description: str, done: int, total: int) -> None:
            key, _, status = description.partition("\t")  # "name\tstatus": one bar per name, its status beside it
            shown = f"{key}: {status}" if status else key
            if key not in tasks:
                tasks[key] = bars.add_task(shown, total=total)
            bars.update(tasks[key], completed=done, total=total, description=shown)

        def on_stage(rec):  # stage lines only with -v: an error must stay the one line on stderr
            if args.verbose:
                console.log(f"{rec.name}: {'changed' if rec.modified else 'no change'} ({rec.time_s:.2f} s)"
                            if rec.origin != "input" else f"loaded {args.model}")

        with _LoggedWarnings() as logged:
            result = compiler.compile(ir or args.model, passes, output, options=options, reports=args.report,
                                      on_stage=on_stage, progress=progress, target_choice=choice)
    from .report_render import diagnostics

    for stage, text in diagnostics(result.report):  # also without -v: a pass found something to see
        if text not in logged.messages:  # a pass that logged it already printed it
            print(f"yolocc: warning: {stage}: {text}", file=sys.stderr)
    if result.report.cache and result.report.cache.get("hit") and args.verbose:
        console.log(f"cache hit: {result.report.cache['key'][:16]} ({result.report.cache['time_s']:.2f} s)")
    if args.json:
        print(json.dumps(result.report.as_dict(), indent=2))
    else:
        _print_report(result.report, expand=args.verbose)
        if result.artifact:
            import textwrap

            print(textwrap.fill("wrote " + ", ".join([str(result.artifact), *result.report.written]),
                                _terminal_width(), subsequent_indent="  ", break_on_hyphens=False,
                                break_long_words=False))
    return 0


#: CLI destinations that are not ``CompileOptions`` fields.
_CLI_ONLY = {"model", "passes", "output", "report", "dry_run", "recipe", "json", "verbose"}


class _LoggedWarnings(logging.Handler):
    """The warnings logged while it is active (their text), so a diagnostic is printed once."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.add(record.getMessage())

    def __enter__(self) -> "_LoggedWarnings":
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger().removeHandler(self)


def _options(args: argparse.Namespace):
    """The passes and the typed ``CompileOptions``: defaults, then the recipe, then command-line flags."""
    from .options import CompileOptions

    passes, recipe_options = list(args.passes), {}
    if args.recipe:
        from .recipe import load_recipe

        specs, recipe_options = load_recipe(args.recipe)
        if specs and args.passes:
            raise UsageError("give the passes either in the recipe or with -p, not both")
        passes = passes or specs
    flags = {k: v for k, v in vars(args).items() if k not in _CLI_ONLY and v is not None}
    return passes, CompileOptions.from_mapping(recipe_options, f"recipe '{args.recipe}'").merged(flags, "command line")


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _print_plan(ir, steps) -> None:
    print(f"plan for {ir.source} ({ir.stage} stage):")
    for i, s in enumerate(steps, 1):
        stage = s.pass_.stage if s.pass_ else "-"
        origin = "" if s.origin == "user" else f"   [{s.origin}]"
        print(f"  {i}. {s.describe():<50} {stage:<6}{origin}")


def _terminal_width() -> int:
    """Columns to fit the output to: the terminal's (or $COLUMNS), 80 when not a terminal, 40 at least."""
    import shutil

    return max(shutil.get_terminal_size((80, 24)).columns, 40)


def _print_report(report, expand: bool = False) -> None:
    import textwrap

    from .report_render import change_text, terminal_table

    width = _terminal_width()
    print(terminal_table(report, width, expand), end="")
    if report.budget and report.budget.get("final"):
        b, f = report.budget, report.budget["final"]
        test = "" if f["test"] is None else f", test {f['test']:.4f} ({-f['drop_pts_test']:+.2f} pt)"
        vs_int8 = f", {f['speedup_vs_int8']:.2f}x than int8 alone" if f.get("speedup_vs_int8") else ""
        print(textwrap.fill(f"budget {b['max_drop']} pt of {b['metric']} met: {f['name']}: val {f['val']:.4f} "
                            f"({change_text(f['drop_pts_val'], f.get('drop_se_val'))}){test}; "
                            f"{f['speedup_vs_input']:.2f}x faster than the input"
                            f"{vs_int8} ({report.latency.get('runtime', '')}, {report.latency.get('isa', '')})", width))
        if f["test"] is not None and f["drop_pts_test"] > b["max_drop"]:
            print(f"yolocc: warning: budget: on the test split the chosen model is {f['drop_pts_test']:.2f} pt "
                  f"below the input, over the {b['max_drop']} pt met on val (the search chooses on val only; "
                  f"val and test disagree by this much on this data)", file=sys.stderr)
        elif f.get("drop_se_val") and f["drop_pts_val"] + f["drop_se_val"] > b["max_drop"]:
            print(f"yolocc: warning: budget: met on val by less than one standard error of val noise "
                  f"({f['drop_se_val']:.2f} pt, bootstrap over the val images): a larger val split resolves "
                  f"smaller drops", file=sys.stderr)


#: Terminal width from which ``yolocc passes`` prints one table (narrower: one block per pass).
WIDE_TABLE_COLUMNS = 120


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

    console = Console()
    if console.width < WIDE_TABLE_COLUMNS:  # five columns do not fit: one block per pass
        for name, r in sorted(reg.passes.items()):
            console.print(f"[bold]{name}[/bold] ({r.obj.kind()}; {r.provider})", highlight=False)
            console.print(r.obj.summary(), highlight=False, markup=False)
            for q in r.obj.params:
                console.print(f"  {q.describe()}", highlight=False, markup=False)
            console.print()
    else:
        table = Table(title="yolocc passes")
        for col in ("pass", "stage", "parameters", "provider", "description"):
            table.add_column(col)
        for name, r in sorted(reg.passes.items()):
            table.add_row(name, r.obj.kind(), "\n".join(q.describe() for q in r.obj.params) or "-",
                          r.provider, r.obj.summary())
        console.print(table)
    for name, why in sorted(reg.broken.items()):
        print(f"plugin '{name}' failed to load: {why}", file=sys.stderr)
    return 0


def _inspect_main(argv: list[str]) -> int:
    from .api import Compiler
    from .inspect import summarize

    p = _Parser(prog="yolocc inspect", description="Show a model's IR: layers, params, MACs, coupling groups.")
    p.add_argument("model")
    p.add_argument("--imgsz", type=parse_imgsz, metavar="N|H,W")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sensitivity", action="store_true",
                   help="also measure each prunable group's sensitivity (needs --calib)")
    p.add_argument("--calib", metavar="PATH", help="images for --sensitivity")
    p.add_argument("--png", metavar="PATH", help="with --sensitivity: write the bar chart to PATH (.png)")
    p.add_argument("--trust-model", action="store_true", help="load a .pt full pickle (it can run code)")
    args = p.parse_args(argv)
    _setup_logging(False)
    compiler = Compiler()
    ir = compiler.load(args.model, args.imgsz, args.trust_model)
    info = summarize(ir)
    if args.sensitivity:
        info["sensitivity"] = _sensitivity(compiler, ir, args)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if args.sensitivity:
        table = Table(title="pruning sensitivity per group (proxy: 1 - output cosine on calibration images; "
                            "MACs: of the group's layers)")
        ratios, layer_macs = info["sensitivity"]["ratios"], info["sensitivity"]["layer_macs"]
        for col in ("group root", "channels", "MACs", *[f"drop @{r}" for r in ratios]):
            table.add_column(col, justify="left" if col == "group root" else "right")
        for g in sorted(info["sensitivity"]["groups"], key=lambda g: -g["drop"][str(ratios[-1])]):
            macs = sum(layer_macs.get(name, 0.0) for name in {name for name, _ in g["members"]})
            table.add_row(g["root"], str(g["channels"]), f"{macs / 1e6:.1f}M",
                          *[f"{g['drop'][str(r)]:.4f}" for r in ratios])
        console.print(table)
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


def _targets_main(argv: list[str]) -> int:
    from .registry import build_registry, get_plugin_manager

    p = _Parser(prog="yolocc targets", description="List the registered targets.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    reg = build_registry(get_plugin_manager())
    entries = []
    for name, r in sorted(reg.targets.items()):
        t = r.obj
        try:
            runtime = t.runtime()
            runtime_name = runtime.name if runtime is not None else "default (ort-cpu's)"
        except YoloccError as e:  # e.g. an optional runtime that is not installed
            runtime_name = f"unavailable: {e}"
        scheme = t.scheme
        entries.append({"name": name, "provider": r.provider, "doc": t.doc,
                        "int8": None if scheme is None else
                        f"{scheme.describe()} act, S8/channel weights",
                        "runtime": runtime_name,
                        "default_output": t.default_suffix})
    if args.json:
        print(json.dumps({"targets": entries}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="yolocc targets (descriptions: --json)")
    for col in ("target", "int8", "runtime", "provider"):
        table.add_column(col)
    for e in entries:
        table.add_row(e["name"], e["int8"] or "-", e["runtime"], e["provider"])
    Console().print(table)
    return 0


def _strategies_main(argv: list[str]) -> int:
    from .registry import build_registry, get_plugin_manager

    p = _Parser(prog="yolocc strategies", description="List the search strategies of the accuracy budget "
                                                        "(--max-drop ... --search NAME).")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    reg = build_registry(get_plugin_manager())
    entries = [{"name": name, "provider": r.provider, "doc": r.obj.doc} for name, r in sorted(reg.strategies.items())]
    if args.json:
        print(json.dumps({"strategies": entries}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="yolocc search strategies (--max-drop PTS --search NAME)")
    for col in ("strategy", "what it does", "provider"):
        table.add_column(col)
    for e in entries:
        table.add_row(e["name"], e["doc"], e["provider"])
    Console().print(table)
    return 0


def _sensitivity(compiler, ir, args) -> dict:
    """The sensitivity analysis of ``ir`` (canonicalized first, as prune sees it), plus its bar chart."""
    from .options import CompileOptions

    if not args.calib:
        raise UsageError("inspect --sensitivity needs --calib IMAGES_DIR")
    if args.png and not args.png.lower().endswith(".png"):
        raise UsageError(f"--png path '{args.png}' must end in .png")
    compiler.apply(ir, ["canonicalize", "sensitivity"], CompileOptions(calib=args.calib))
    result = ir.analyses[SENSITIVITY]
    if args.png:
        from .fileio import write_with
        from .plot import sensitivity_png

        write_with(args.png, lambda tmp: sensitivity_png(result, tmp, ir.source))
    return result


_SUBCOMMAND_MAIN = {"passes": _passes_main, "targets": _targets_main, "strategies": _strategies_main,
                    "inspect": _inspect_main}

"""How a report reads: stages folded into the user's decisions, a terminal table that fits its
width, and the Markdown report.

A user who wrote ``-p prune:0.25 -p int8`` made two decisions; the automatic ``canonicalize`` and
the ``calibrate``/``qdq`` parts of the ``int8`` macro are how they were carried out. Each decision is
one row, measured at its last stage; ``expand`` (``-v``) lists the stages under it, and the JSON
keeps every stage.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .metrics import primary_metric

BUDGET_ORIGIN = "budget candidate"


@dataclass
class Decision:
    """One row: a user decision (or the input, or a budget candidate) and the stages it ran."""

    name: str
    stages: list  # StageRecords; the last one holds the decision's result

    @property
    def result(self):
        return self.stages[-1]

    @property
    def time_s(self) -> float:
        return sum(s.time_s for s in self.stages)


def decisions(stages: list) -> list[Decision]:
    """Fold automatic steps into the decision they run for, and a macro's parts into the macro."""
    rows: list[tuple[str | None, Decision]] = []
    pending: list = []  # automatic steps run before the decision that required them
    for s in stages:
        if s.origin.startswith("auto"):
            pending.append(s)
            continue
        macro = s.origin if s.origin.startswith("macro ") else None
        if macro is not None and rows and rows[-1][0] == macro:
            rows[-1][1].stages.extend([*pending, s])
        else:
            rows.append((macro, Decision(macro.split(" ", 1)[1] if macro else s.name, [*pending, s])))
        pending = []
    if pending:  # automatic steps after the last decision belong to it
        if rows:
            rows[-1][1].stages.extend(pending)
        else:
            rows.append((None, Decision(pending[-1].name, pending)))
    return [d for _, d in rows]


# ---------------------------------------------------------------- cell formats
_COUNT_UNITS = (("G", 1e9), ("M", 1e6), ("k", 1e3))
_BYTE_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def _scaled(v: float, units, digits: str, sep: str = "", base_unit: str = "") -> str:
    """``v`` in the largest unit it reaches, e.g. 3.01M; below all units, as an integer."""
    for unit, div in units:
        if abs(v) >= div:
            return f"{v / div:{digits}}{sep}{unit}"
    return f"{int(v)}{sep}{base_unit}".rstrip()


def count(v: float) -> str:
    return _scaled(v, _COUNT_UNITS, ".2f")


def nbytes(v: float) -> str:
    return _scaled(v, _BYTE_UNITS[1:], ".2f", " ", "B")


def _short_count(v: float) -> str:
    return _scaled(v, _COUNT_UNITS, ".3g")


def _short_bytes(v: float) -> str:
    return _scaled(v, _BYTE_UNITS, ".3g", "", "B")


def _ms(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def with_delta(v, base, fmt, absolute: bool = False) -> str:
    """``fmt(v)`` and its change against ``base``: percent, or points for an accuracy (``absolute``)."""
    if v is None:
        return "-"
    if base in (None, 0) or v == base:
        return fmt(v)
    if absolute:  # accuracy: the change in points, not percent of itself
        return f"{fmt(v)} ({(v - base) * 100:+.1f} pt)"
    return f"{fmt(v)} ({(v - base) / base * 100:+.1f}%)"


def _change(v, base) -> str:
    """A non-input row's size-like value as its change against the input, e.g. ``-37%``."""
    if v is None or not base:
        return "-"
    pct = (v - base) / base * 100
    return "0%" if abs(pct) < 0.5 else f"{pct:+.0f}%"


def fidelity_cell(fid: dict | None) -> str:
    if not fid:
        return "-"
    # Prefer the class-score slice of a detector's output: boxes (0-640) would dominate the rest.
    key = next((k for k in fid if k.endswith("[scores]")), next(iter(fid)))
    entry = fid[key]
    if "cosine" not in entry:
        return "shape mismatch"
    label = "scores " if key.endswith("[scores]") else ""
    text = f"{label}cos {entry['cosine']:.4f}"
    # A task's own part (mask coefficients, keypoints, OBB angle) or another output (a segmenter's
    # prototypes): the least faithful of them beside the scores, so a task head is not hidden.
    main = key.split("[")[0]
    extra = [(k, v["cosine"]) for k, v in fid.items() if "cosine" in v and k != key and k != main
             and not k.endswith("[boxes]")]
    if label and extra:
        name, cos = min(extra, key=lambda kv: kv[1])
        text += f", {name[name.find('[') + 1:-1] if '[' in name else name} {cos:.4f}"
    return text


def metric_name(report) -> str | None:
    """The report's primary metric (``metrics.primary_metric``)."""
    return primary_metric(report)


# ---------------------------------------------------------------- terminal table
@dataclass
class Column:
    header: str
    cell: Callable[[Any, Any], str]  # (stage, input stage) -> text
    align: str = ">"


def terminal_columns(report) -> list[Column]:
    """The columns in the order they are given up when the terminal is too narrow (stage never)."""
    metric = metric_name(report)
    batch = report.latency.get("batch", 1)

    def size_like(attr: str, fmt: Callable[[float], str]) -> Callable:
        return lambda s, base: (fmt(getattr(s, attr)) if s is base and getattr(s, attr) is not None
                                else _change(getattr(s, attr), getattr(base, attr)))

    cols = [Column("p50/p95 ms", lambda s, b: "-" if s.latency_ms is None else
                   f"{_ms(s.latency_ms)}/{_ms(s.latency_p95_ms or s.latency_ms)}"),
            Column("img/s", lambda s, b: "-" if s.throughput_ips is None else f"{s.throughput_ips:.0f}")]
    if batch > 1:
        cols.append(Column(f"b{batch} img/s", lambda s, b: "-" if s.batch_throughput_ips is None
                           else f"{s.batch_throughput_ips:.0f}"))
    cols.append(Column("mem", lambda s, b: "-" if s.memory_bytes is None else _short_bytes(s.memory_bytes)))
    if metric is not None:
        cols.append(Column(metric, lambda s, b: _metric_cell(s, b, metric)))
    cols += [Column("MACs", size_like("macs", _short_count)),
             Column("peak", lambda s, b: "-" if s.ceiling_pct is None else f"{s.ceiling_pct:.0f}%"),
             Column("size", size_like("size_bytes", _short_bytes)),
             Column("speed", lambda s, b: "-" if not (s.latency_ms and b.latency_ms)
                    else f"{b.latency_ms / s.latency_ms:.2f}x"),
             Column("params", size_like("params", _short_count))]
    return cols


def _metric_cell(s, base, metric: str) -> str:
    v = (s.metrics or {}).get(metric)
    if v is None:
        return "-"
    b = (base.metrics or {}).get(metric)
    return f"{v:.4f}" if s is base or b is None else f"{v:.4f} {(v - b) * 100:+.2f}"


def _layout(names: list[str], cells: list[list[str]], headers: list[str], aligns: list[str]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    name_w = max(len("stage"), *(len(n) for n in names))
    lines = ["  ".join([f"{'stage':<{name_w}}", *(f"{h:{a}{w}}" for h, a, w in zip(headers, aligns, widths))])]
    lines.append("-" * len(lines[0]))
    for n, r in zip(names, cells):
        lines.append("  ".join([f"{n:<{name_w}}", *(f"{c:{a}{w}}" for c, a, w in zip(r, aligns, widths))]))
    return [ln.rstrip() for ln in lines]


def terminal_table(report, width: int = 80, expand: bool = False) -> str:
    """The report as plain text no wider than ``width``: one row per decision (``expand``: and the
    stages under it); columns are left out, last first, until the table fits, and the footer says
    which. The input row has absolute values; MACs, size and params of later rows are changes."""
    width = max(width, 40)
    base = report.stages[0]
    names, stages = [], []
    for d in decisions(report.stages):
        names.append(d.name)
        stages.append(d.result)
        if expand and (len(d.stages) > 1 or d.stages[0].name != d.name):
            for s in d.stages:
                names.append(f"  {s.name}" + (" (auto)" if s.origin.startswith("auto") else ""))
                stages.append(s)
    cols, dropped = [c for c in terminal_columns(report) if any(c.cell(s, base) != "-" for s in stages)], []
    while True:
        lines = _layout(names, [[c.cell(s, base) for c in cols] for s in stages],
                        [c.header for c in cols], [c.align for c in cols])
        if max(len(ln) for ln in lines) <= width or not cols:
            break
        dropped.insert(0, cols.pop().header)
    title = f"yolocc: {Path(report.model).name} ({report.task}, imgsz {report.imgsz_text})"
    noted = [ln for n in notes(report) for ln in textwrap.wrap(n, width, subsequent_indent="  ")]
    return "\n".join([title, *lines, *noted, *textwrap.wrap(_footer(report, dropped, expand), width)]) + "\n"


def notes(report) -> list[str]:
    """The one-line notes passes leave for the reader in ``changes["note"]`` (e.g. which calibration
    method ``calibrate:method=auto`` chose, and every method's score), after the one ``--target auto``
    leaves (which runtime it chose and why)."""
    choice = getattr(report, "target_choice", None) or {}
    return ([choice["line"]] if choice.get("line") else []) + \
        [s.changes["note"] for s in report.stages if isinstance(s.changes.get("note"), str)]


def diagnostics(report) -> list[tuple[str, str]]:
    """Every diagnostic a pass reported (``PassResult.diagnostics``, e.g. a target's placement rules
    that the quantized graph breaks), as (stage name, text) in stage order, each once."""
    seen: dict[tuple[str, str], None] = {}
    for s in report.stages:
        for d in s.diagnostics:
            seen.setdefault((s.name, d), None)
    return list(seen)


def _footer(report, dropped: list[str], expand: bool) -> str:
    lat = report.latency
    parts = []
    if lat:
        parts.append(f"Latency on {lat.get('runtime', '?')} {lat.get('version', '')}".rstrip()
                     + f", {lat.get('isa', '?')}: p50/p95 of {lat.get('runs')} batch-1 runs, stages round-robin"
                     + (f", each the last of {lat['turn']} in a row;" if lat.get("turn", 1) > 1
                        else ", one run each per round;")
                     + " mem: the session's resident memory.")
        if lat.get("batch_skipped"):
            parts.append(lat["batch_skipped"].capitalize() + ".")
        if lat.get("int8_ceiling"):
            busy = lat["int8_ceiling"].get("busy_load")
            parts.append(f"peak: MACs/s as a share of this machine's int8 GEMM ceiling "
                         f"({lat['int8_ceiling']['gmacs']:.0f} GMAC/s"
                         + (f", measured under load {busy}: re-measured on a quiet run" if busy else "") + ").")
    metric = metric_name(report)
    if metric:
        split = (report.accuracy or {}).get("split", "val")
        parts.append(f"{metric} on the {split} split, then its change in points.")
    parts.append("Rows after the input: MACs, size and params as a change against the input.")
    if not expand and any(len(d.stages) > 1 for d in decisions(report.stages)):
        parts.append("Automatic steps are folded into the pass that needed them (-v: every stage).")
    if dropped:
        parts.append(f"Left out to fit the width: {', '.join(dropped)} (see --report or --json).")
    return " ".join(parts)


# ---------------------------------------------------------------- Markdown
def markdown(report) -> str:
    base = report.stages[0] if report.stages else None
    metric = metric_name(report)
    lines = [f"# yolocc report: {report.model}", "",
             f"task: {report.task}, imgsz: {report.imgsz_text}, compile time: {report.compile_time_s:.1f} s", ""]
    head = ["decision", "params", "MACs", "size", "p50", "p95", "img/s", "memory", "GMAC/s (peak)", "fidelity"]
    batch = report.latency.get("batch", 1)
    if batch > 1:
        head.insert(7, f"img/s (batch {batch})")
    if metric:
        head.append(metric)
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = decisions(report.stages)
    for d in rows:
        s = d.result
        cells = [d.name, with_delta(s.params, base.params, count), with_delta(s.macs, base.macs, count),
                 with_delta(s.size_bytes, base.size_bytes, nbytes),
                 with_delta(s.latency_ms, base.latency_ms, lambda v: f"{v:.2f} ms"),
                 "-" if s.latency_p95_ms is None else f"{s.latency_p95_ms:.2f} ms",
                 "-" if s.throughput_ips is None else f"{s.throughput_ips:.1f}",
                 "-" if s.memory_bytes is None else nbytes(s.memory_bytes),
                 "-" if s.gmacs_per_s is None else f"{s.gmacs_per_s:.1f} ({s.ceiling_pct:.0f}%)",
                 fidelity_cell(s.fidelity)]
        if batch > 1:
            cells.insert(7, "-" if s.batch_throughput_ips is None else f"{s.batch_throughput_ips:.1f}")
        if metric:
            cells.append(with_delta((s.metrics or {}).get(metric), (base.metrics or {}).get(metric),
                                    lambda v: f"{v:.4f}", absolute=True))
        lines.append("| " + " | ".join(cells) + " |")
    if report.latency:
        lat = report.latency
        turn = f" (each the last of {lat['turn']} runs in a row)" if lat.get("turn", 1) > 1 else \
            " (one run each per round, each after another stage's)"
        lines += ["", f"Latency: {lat['runtime']} on {lat.get('isa', '?')}, p50 and p95 of {lat['runs']} batch-1 runs{turn} "
                      f"after {lat['warmup']} warm-up runs, stages timed round-robin in one run; img/s: images per "
                      f"second sustained over those runs; memory: {lat.get('memory', 'resident memory')}."]
        if lat.get("int8_ceiling"):
            c = lat["int8_ceiling"]
            lines += ["", f"GMAC/s: the stage's MACs over its p50; peak: that as a share of this machine's int8 "
                          f"ceiling, {c['gmacs']:.1f} GMAC/s ({c['op']}, {c['runtime']}, {c['isa']}, the fastest of "
                          f"20 runs)."]
        if lat.get("batch_skipped"):
            lines += ["", lat["batch_skipped"].capitalize() + "."]
    lines += [ln for n in notes(report) for ln in ("", n)]
    warnings = diagnostics(report)
    if warnings:
        lines += ["", "### Warnings", "", *(f"- {stage}: {text}" for stage, text in warnings)]
    lines += ["", "Fidelity: cosine similarity of the outputs with the input model's on one fixed input."]
    if metric:
        lines += ["", f"{metric}: on the {(report.accuracy or {}).get('split', 'val')} split."]
    if len(report.stages) > len(rows):
        lines += ["", "### Every stage", "", "| stage | origin | changed | time | p50 |", "|---|---|---|---|---|"]
        for s in report.stages:
            lines.append(f"| {s.name} | {s.origin} | {'yes' if s.modified else 'no'} | {s.time_s:.2f} s | "
                         f"{'-' if s.latency_ms is None else f'{s.latency_ms:.2f} ms'} |")
    if report.budget:
        lines += ["", *budget_markdown(report.budget)]
    if report.artifact:
        lines += ["", f"Artifact: `{report.artifact.get('path')}` ({nbytes(report.artifact.get('size_bytes', 0))}, "
                      f"sha256 {report.artifact.get('sha256', '')[:16]}...)"]
    return "\n".join(lines) + "\n"


def budget_markdown(b: dict[str, Any]) -> list[str]:
    """The --max-drop section: verdict, then every candidate (val, test, drop, latency, MACs, size)."""
    m = b["metric"]
    lines = [f"## Accuracy budget: --max-drop {b['max_drop']} pt ({m}; chosen on val, test reported)", ""]
    if b.get("final"):
        f = b["final"]
        test_drop = "" if f["drop_pts_test"] is None else f" ({-f['drop_pts_test']:+.2f} pt)"
        passes = " ".join(f"-p {p}" for p in f["passes"])
        vs_int8 = f", {f['speedup_vs_int8']:.2f}x than int8 alone" if f.get("speedup_vs_int8") else ""
        lines.append(f"Chosen: **{f['name']}** (`{passes}`): val {f['val']:.4f} "
                     f"({change_text(f['drop_pts_val'], f.get('drop_se_val'))}), "
                     f"test {_opt(f['test'])}{test_drop}; {f['speedup_vs_input']:.2f}x faster than the input"
                     f"{vs_int8}.")
    else:
        lines.append("No candidate met the budget.")
    lines += ["", "| candidate | val | test | change (val) | within | latency | MACs | size | trial |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in b["candidates"]:
        latency = "-" if c["latency_ms"] is None else f"{c['latency_ms']:.2f} ms"
        change = "not evaluated" if c["drop_pts"] is None else change_text(c["drop_pts"], c.get("drop_se"))
        name = f"{c['name']}{' (from the cache)' if c.get('reused') else ''}"
        lines.append(f"| {name} | {_opt(c['val'])} | {_opt(c['test'])} | {change} | "
                     f"{'yes' if c['within'] else 'no'} | {latency} | {count(c['macs'] or 0)} | "
                     f"{nbytes(c['size_bytes'] or 0)} | {trial_text(c)} |")
    lines += ["", "Change (val): against the input, +- one standard error of val noise (bootstrap over the val "
              "images, paired with the input).", "", f"Search wall time: {b['wall_s']:.0f} s."]
    return lines


def trial_text(c: dict[str, Any]) -> str:
    """How a budget candidate was built: its wall time and worker (``host:pid``), why its training
    stopped, and whether it was read back from the cache (then: the time it took when built)."""
    parts = []
    if c.get("wall_s") is not None:
        parts.append(f"{c['wall_s']:.0f} s")
    if c.get("worker"):
        parts.append(f"on {c['worker']}")
    if c.get("stopped"):
        parts.append(f"stopped: {c['stopped']}")
    if c.get("reused"):
        parts.append("reused from the cache")
    return ", ".join(parts) or "-"


def change_text(drop: float, se: float | None) -> str:
    """A val drop (points) as the change it is, with its standard error where known: "-0.42 +- 0.85 pt"."""
    change = 0.0 - drop  # 0.0 - 0.0 is +0.0, where -0.0 would print as "-0.00"
    return f"{change:+.2f} pt" if se is None else f"{change:+.2f} +- {se:.2f} pt"


def _opt(v) -> str:
    return "-" if v is None else f"{v:.4f}"

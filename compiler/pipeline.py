"""Planning and running a pass pipeline.

The plan keeps the user's order. It expands macros, inserts a pass that provides a missing
required analysis (e.g. ``canonicalize`` before ``prune``), inserts the lowering step where the
stage changes from torch to onnx, and refuses impossible orders; it never reorders silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from . import lowering
from .errors import PassError, PipelineError, UsageError, YoloccError
from .ir import ModelIR, ONNX, TORCH
from .params import PassSpec, parse_pass_spec
from .passbase import Pass, PassContext, PassResult
from .registry import BUILTIN_MODULES, Registry

log = logging.getLogger(__name__)


@dataclass
class Step:
    """One step of a plan: a pass, or the lowering from torch to ONNX."""

    kind: str  # "pass" | "lower"
    pass_: Pass | None = None
    origin: str = "user"  # user | auto (why) | macro name
    provider: str = ""  # the plugin that registered the pass

    def describe(self) -> str:
        if self.kind == "lower":
            return "lower to ONNX"
        return str(self.pass_)

    def as_dict(self) -> dict[str, Any]:
        d = {"step": self.kind, "origin": self.origin}
        if self.pass_ is not None:
            d.update(name=self.pass_.name, stage=self.pass_.stage, args=dict(self.pass_.args))
        return d


def resolve(registry: Registry, items: Iterable[str | PassSpec | Pass]) -> list[Pass]:
    """Turn ``-p`` strings, ``PassSpec``s or ready ``Pass`` objects into ``Pass`` instances."""
    out = []
    for item in items:
        if isinstance(item, Pass):
            out.append(item)
            continue
        spec = parse_pass_spec(item) if isinstance(item, str) else item
        out.append(registry.pass_class(spec.name).from_spec(spec))
    return out


def _expand(p: Pass, origin: str, stage: str, depth: int = 0) -> list[tuple[Pass, str]]:
    parts = p.expand(stage)
    if parts is None:
        return [(p, origin)]
    if depth > 8:
        raise PipelineError(f"macro '{p.name}' expands too deeply (a macro that includes itself?)")
    out = []
    for part in parts:
        out.extend(_expand(part, f"macro {p.name}", stage, depth + 1))
    return out


def _provider(registry: Registry, analysis: str, needed_by: str) -> type[Pass]:
    for reg in registry.passes.values():
        if analysis in reg.obj.provides:
            return reg.obj
    raise PipelineError(f"pass '{needed_by}' requires '{analysis}', and no registered pass provides it")


def plan(registry: Registry, items: Iterable[str | PassSpec | Pass], start_stage: str = TORCH,
         start_analyses: Iterable[str] = (), source: str = "the model",
         start_states: dict[str, str] | None = None) -> list[Step]:
    """Build the ordered list of steps; raise ``PipelineError`` for an impossible order.

    Besides stages and analyses, the plan tracks what passes make true of the model (``Pass.makes``:
    BN folded, fp16, quantized) and refuses a pass that ``rejects`` such a state, naming the pass that
    made it and the fix. ``start_states`` are those of the input (e.g. a quantized ONNX)."""
    steps: list[Step] = []
    stage = start_stage
    available = set(start_analyses)
    last_onnx: str | None = None
    states = dict(start_states or {})  # state -> who made it

    def add(p: Pass, origin: str, chain: tuple[str, ...] = ()) -> None:
        nonlocal stage, available, last_onnx
        for state, fix in p.rejects.items():
            if state in states:
                raise PipelineError(f"pass '{p.name}' cannot run after {states[state]}: the model is "
                                    f"{STATE_WORDS.get(state, state)}; {fix}")
        if p.stage == TORCH and stage == ONNX:
            if last_onnx is None:
                raise PipelineError(f"pass '{p.name}' works on a PyTorch model, but {source} is ONNX; "
                                    f"start from the PyTorch model (.pt/.yaml) instead")
            raise PipelineError(f"pass '{p.name}' (torch stage) cannot run after '{last_onnx}' (onnx stage): "
                                f"the model is lowered to ONNX before '{last_onnx}'; put '{p.name}' before '{last_onnx}'")
        for req in p.requires:
            if req not in available:
                if req in chain:
                    raise PipelineError(f"passes require each other in a cycle: {' -> '.join(chain + (req,))}")
                provider = _provider(registry, req, p.name)
                add(provider(), f"auto: required by {p.name}", chain + (req,))
        if p.stage == ONNX and stage == TORCH:
            steps.append(Step("lower", origin=f"auto: before {p.name}"))
            stage = ONNX
        reg = registry.passes.get(p.name)
        steps.append(Step("pass", p, origin, reg.provider if reg is not None and reg.obj is type(p) else "?"))
        if p.stage == ONNX:
            last_onnx = p.name
        who = f"'{origin.split()[-1]}' ({p.name})" if origin.startswith("macro") else f"'{p.name}'"
        states.update({state: who for state in p.makes})
        available = {a for a in available if a in p.preserves} | set(p.provides)

    for user_pass in resolve(registry, items):
        for p, origin in _expand(user_pass, "user", stage):  # macros see the stage they start at
            add(p, origin)
    return steps


#: How plan errors describe a model state.
STATE_WORDS = {"bn_folded": "BatchNorm-folded", "fp16": "float16", "quantized": "already quantized (Q/DQ)"}

StageCallback = Callable[[Step, PassResult, float], None]


def run(ir: ModelIR, steps: Sequence[Step], ctx: PassContext, on_pass: StageCallback | None = None) -> PassContext:
    """Run ``steps`` on ``ir`` in place; wrap pass failures in ``PassError`` naming the history."""
    opts = ctx.options
    later = [s.pass_ for s in steps if s.kind == "pass"]
    needing = [p.name for p in later if p.needs_data]
    if needing and not opts.data:
        raise UsageError(f"{needing[0]} trains on a dataset and measures its val split: pass --data DATA.yaml "
                         f"(or a classify folder)")
    for i, p in enumerate(later):
        if p.needs_recovery and opts.data and not ctx.trial and not any(q.recovers for q in later[i + 1:]):
            log.warning("pass '%s' changes what the model computes and no finetune/distill follows it: "
                        "add -p distill after it to recover the accuracy on --data", p.name)
    done = 0
    for step in steps:
        if step.kind == "lower":
            lowering.lower(ir, opts.opset, opts.dynamic_batch)
            continue
        p = step.pass_
        assert p is not None
        done += 1
        ctx.upcoming = tuple(later[done:])
        if ctx.hook is not None:
            ctx.hook.yolocc_before_pass(pass_=p, ir=ir, ctx=ctx)
        t0 = time.perf_counter()
        try:
            result = p(ir, ctx)
        except (Exception, SystemExit) as e:  # a plugin's pass calling sys.exit is a failure, not an exit
            after = f" after [{', '.join(ctx.history)}]" if ctx.history else ""
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if not isinstance(e, YoloccError):
                msg = f"{type(e).__name__}: {msg}"
            third_party = step.provider not in BUILTIN_MODULES
            who = f" (plugin '{step.provider}')" if third_party else ""
            raise PassError(f"pass '{p.name}'{who} failed{after}: {msg}", provider=step.provider,
                            internal=not third_party and not isinstance(e, YoloccError)) from e
        elapsed = time.perf_counter() - t0
        log.info("pass %s: %s in %.2fs", p.name, "changed the model" if result.modified else "no change", elapsed)
        if ctx.hook is not None:
            ctx.hook.yolocc_after_pass(pass_=p, ir=ir, ctx=ctx, result=result)
        ctx.history.append(p.name)
        if on_pass is not None:
            on_pass(step, result, elapsed)
    return ctx

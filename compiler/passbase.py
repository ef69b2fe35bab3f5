"""The pass interface: ``Pass``, ``PassResult`` and the ``PassContext`` handed to each call."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from . import analyses
from .errors import PipelineError
from .interfaces import Frontend
from .ir import ModelIR
from .metrics import Metrics
from .options import CompileOptions
from .params import Param, PassSpec, bind
from .target import Runtime, Target


@dataclass
class PassResult:
    """What a pass did: whether the IR changed, counts/ratios of what changed, diagnostics."""

    modified: bool
    changes: dict[str, Any] = field(default_factory=dict)
    diagnostics: list[str] = field(default_factory=list)


def _default_target() -> Target:
    return Target()


def _default_runtime() -> Runtime:
    return Runtime()


@dataclass
class PassContext:
    """Run-wide options and services a pass may use; never global state.

    Every service is present: ``Compiler.context`` fills them from the run (the model's frontend, the
    ``--target`` and its runtime); a context built by hand gets the null ``Frontend()`` (neutral
    answers, no training), a ``Target()`` without an integer path and a ``Runtime()`` that cannot load.
    """

    options: CompileOptions = field(default_factory=CompileOptions)
    #: The pluggy hook relay for event hooks (``yolocc_before_pass`` ...); None: nobody listens.
    hook: Any = None
    history: list[str] = field(default_factory=list)  # passes already run
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("yolocc"))
    #: ``progress(description, completed, total)`` for long work, or None.
    progress: Callable[[str, int, int], None] | None = None
    #: The ``Target`` the graph is compiled for (its quantization rules, verification, runtime).
    target: Target = field(default_factory=_default_target)
    #: The ``Frontend`` that loaded the model: what generic passes ask about the framework.
    frontend: Frontend = field(default_factory=Frontend)
    #: The ``Runtime`` that measures the target (its own, or the default target's).
    runtime: Runtime = field(default_factory=_default_runtime)
    #: The passes the plan runs after the current one (set by ``pipeline.run``): lets a pass choose a
    #: default by what follows it (e.g. prune opens the head when recovery training follows).
    upcoming: tuple = ()
    #: A module the run distils from, given by the caller (a search trial's teacher); None: the
    #: recovery passes use the model before pruning (``analyses.TEACHER``).
    teacher: Any = None
    #: ``Metrics`` of the teacher on the val split when the caller measured them already; None: the
    #: recovery passes measure the reference themselves.
    reference: Metrics | None = None
    #: True when the passes are one trial of a budget search (``compiler.trialrun``): a later trial may
    #: train back what they cost, so a pass that needs recovery is not warned about here.
    trial: bool = False

    def recovery_follows(self) -> bool:
        """Whether a pass that trains the model back (finetune, distill) runs later in the plan."""
        return any(getattr(p, "recovers", False) for p in self.upcoming)

    def option(self, key: str, default: Any = None) -> Any:
        """One run option (a ``CompileOptions`` field), or ``default`` where it is unset."""
        value = getattr(self.options, key, None)
        return default if value is None else value

    def val_metrics(self, ir: ModelIR, model) -> Metrics | None:
        """Accuracy of ``model`` (ONNX bytes or a ``ModelProto`` of ``ir``) on the val split of ``--data``,
        by the run's frontend on the target's runtime; None where the frontend cannot evaluate (the caller
        says what that means for it)."""
        data = model if isinstance(model, bytes) else model.SerializeToString()
        return self.frontend.evaluate(ir, data, str(self.options.data), self.runtime, split="val")

    def progress_for(self, description: str):
        """A ``(done, total)`` callback for long work, or None when nobody listens."""
        if self.progress is None:
            return None
        return lambda done, total: self.progress(description, done, total)


#: Analyses that are snapshots of an earlier model, not facts about the current one: no change to
#: the model makes them stale (``analyses.TEACHER`` is the default distillation teacher).
SNAPSHOTS = analyses.SNAPSHOTS


def keep_teacher(ir: ModelIR) -> None:
    """Keep the model as it is now as the distillation teacher (``pre_prune``) unless an earlier pass
    already did: the teacher is the model before the first pass that changed what it computes."""
    if analyses.TEACHER not in ir.analyses:
        import copy

        ir.analyses[analyses.TEACHER] = copy.deepcopy(ir.module)


class Pass:
    """Base class of every pass, built-in or third-party.

    Subclasses set ``name`` (the CLI name), ``stage`` (``torch`` or ``onnx``), ``params`` and a
    one-line docstring, and implement ``call``. ``requires`` names IR analyses that must exist
    first (the pipeline inserts the pass that ``provides`` one, where it can); analyses not in
    ``preserves`` are dropped when the pass modifies the model. ``makes``/``rejects`` let the planner
    refuse an order that cannot work (e.g. pruning a BN-folded model, int8 on an fp16 graph).
    """

    name: ClassVar[str] = ""
    stage: ClassVar[str] = "torch"
    params: ClassVar[tuple[Param, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    preserves: ClassVar[tuple[str, ...]] = ()
    #: States this pass makes true of the model (``bn_folded``, ``fp16``, ``quantized``), which the
    #: planner tracks, and states it cannot run on, each with the fix the plan error suggests.
    makes: ClassVar[tuple[str, ...]] = ()
    rejects: ClassVar[dict[str, str]] = {}
    #: Training passes that recover accuracy (finetune, distill); passes that change the function
    #: (``act``) set ``needs_recovery`` and the pipeline warns when no recovering pass follows them.
    recovers: ClassVar[bool] = False
    needs_recovery: ClassVar[bool] = False
    #: The pass needs torch-pruning's channel dependency graph (``ModelIR.dependency_graph``): the plan
    #: refuses it, with one line, for a model torch-pruning cannot trace.
    needs_channel_graph: ClassVar[bool] = False
    #: The pass reads ``--data`` (training images, the val split): ``pipeline.run`` refuses the plan
    #: without it, in one line, before any pass runs.
    needs_data: ClassVar[bool] = False

    def __init__(self, *positional: Any, **kwargs: Any):
        self.args = bind(self.name, self.params, kwargs, positional)

    @classmethod
    def from_spec(cls, spec: PassSpec) -> "Pass":
        return cls(*spec.positional, **dict(spec.args))

    @classmethod
    def kind(cls) -> str:
        """``torch``/``onnx`` for ordinary passes, ``macro`` for passes that expand into others."""
        return "macro" if cls.expand is not Pass.expand else cls.stage

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def expand(self, stage: str) -> list["Pass"] | None:
        """Macro passes return the passes they stand for at ``stage``; ordinary passes return None."""
        return None

    def check_plan(self, ir: ModelIR, frontend: Frontend) -> None:
        """Raise ``UsageError`` at plan time, before any pass runs or any data loads, if this pass cannot
        run on ``ir`` (the plan's input model) with ``frontend`` (the one that loaded it); e.g. a
        training pass on a model its frontend cannot train. The default accepts every model."""

    def call(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    def __call__(self, ir: ModelIR, ctx: PassContext) -> PassResult:
        """Check preconditions, run ``call``, record provenance."""
        missing = [a for a in self.requires if a not in ir.analyses]
        if missing:
            raise PipelineError(f"pass '{self.name}' requires analysis {', '.join(missing)}, which no earlier pass produced")
        if ir.stage != self.stage:
            raise PipelineError(f"pass '{self.name}' runs at the {self.stage} stage but the model is at the {ir.stage} stage")
        result = self.call(ir, ctx)
        if result.modified and self.needs_recovery and ctx.option("data") and not ctx.recovery_follows() \
                and not ctx.trial:
            result.diagnostics.append(f"no finetune/distill follows '{self.name}': the accuracy it costs is "
                                      f"not recovered")
        absent = [a for a in self.provides if a not in ir.analyses]
        if absent:
            raise PipelineError(f"pass '{self.name}' declares that it provides {', '.join(absent)} "
                                f"but did not produce it (a bug in the pass)")
        if result.modified:
            ir.invalidate()  # the cached views (dependency graph, networkx) describe the old model
            for key in list(ir.analyses):
                if key not in self.preserves and key not in self.provides and key not in SNAPSHOTS:
                    del ir.analyses[key]
        ir.log_pass(self.name, self.args, result.changes)
        return result

    def spec(self) -> str:
        """``name`` plus the arguments that differ from their defaults, as ``-p`` would take them (for
        reports and plans; yolocc never parses this back)."""
        defaults = {p.name: p.default for p in self.params}
        shown = ",".join(f"{k}={_text(v)}" for k, v in self.args.items() if v != defaults.get(k))
        return self.name + (f":{shown}" if shown else "")

    def __str__(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in self.args.items() if v is not None)
        return self.name + (f":{shown}" if shown else "")


def _text(value: Any) -> str:
    """An argument as ``-p`` text: booleans lower-case, floats without trailing noise."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)

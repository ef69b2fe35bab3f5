"""The pass interface: ``Pass``, ``PassResult`` and the ``PassContext`` handed to each call."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import PipelineError
from .ir import ModelIR
from .options import CompileOptions
from .params import Param, PassSpec, bind


@dataclass
class PassResult:
    """What a pass did: whether the IR changed, counts/ratios of what changed, diagnostics."""

    modified: bool
    changes: dict[str, Any] = field(default_factory=dict)
    diagnostics: list[str] = field(default_factory=list)


@dataclass
class PassContext:
    """Run-wide options and services a pass may use; never global state."""

    options: CompileOptions = field(default_factory=CompileOptions)
    hook: Any = None  # pluggy hook relay, for event hooks
    history: list[str] = field(default_factory=list)  # passes already run
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("yolocc"))
    progress: Any = None  # callable(description, completed, total) or None
    #: The ``Target`` the graph is compiled for (its quantization rules, verification, runtime).
    target: Any = None
    #: The ``Frontend`` that loaded the model: what generic passes ask about the framework.
    frontend: Any = None
    #: The ``Runtime`` that measures the target (its own, or the default target's).
    runtime: Any = None
    #: The passes the plan runs after the current one (set by ``pipeline.run``): lets a pass choose a
    #: default by what follows it (e.g. prune opens the head when recovery training follows).
    upcoming: tuple = ()

    def recovery_follows(self) -> bool:
        """Whether a pass that trains the model back (finetune, distill) runs later in the plan."""
        return any(getattr(p, "recovers", False) for p in self.upcoming)

    def option(self, key: str, default: Any = None) -> Any:
        """One run option (a ``CompileOptions`` field), or ``default`` where it is unset."""
        value = getattr(self.options, key, None)
        return default if value is None else value

    def progress_for(self, description: str):
        """A ``(done, total)`` callback for long work, or None when nobody listens."""
        if self.progress is None:
            return None
        return lambda done, total: self.progress(description, done, total)


#: Analyses that are snapshots of an earlier model, not facts about the current one: no change to
#: the model makes them stale (``pre_prune`` is the default distillation teacher, ``pre_prune_metrics``
#: its val accuracy, which ``epochs=auto`` recovers towards).
SNAPSHOTS = ("pre_prune", "pre_prune_metrics")


def keep_teacher(ir: ModelIR) -> None:
    """Keep the model as it is now as the distillation teacher (``pre_prune``) unless an earlier pass
    already did: the teacher is the model before the first pass that changed what it computes."""
    if "pre_prune" not in ir.analyses:
        import copy

        ir.analyses["pre_prune"] = copy.deepcopy(ir.module)


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
        if result.modified and self.needs_recovery and ctx.option("data") and not ctx.recovery_follows():
            result.diagnostics.append(f"no finetune/distill follows '{self.name}': the accuracy it costs is "
                                      f"not recovered")
        absent = [a for a in self.provides if a not in ir.analyses]
        if absent:
            raise PipelineError(f"pass '{self.name}' declares that it provides {', '.join(absent)} "
                                f"but did not produce it (a bug in the pass)")
        if result.modified:
            for key in list(ir.analyses):
                if key not in self.preserves and key not in self.provides and key not in SNAPSHOTS:
                    del ir.analyses[key]
        ir.log_pass(self.name, self.args, result.changes)
        return result

    def __str__(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in self.args.items() if v is not None)
        return self.name + (f":{shown}" if shown else "")

"""Building and measuring one budget trial from picklable inputs, in this process or in a worker.

The budget (``compiler.budget``) turns a ``Trial`` into a ``TrialJob``: its parent's model, its passes
(typed ``Pass`` objects), the teacher's module and val metrics, and the options. ``run_trial`` applies
the passes to a copy of the parent's model, lowers it to ONNX and measures val (and test) on the
target's runtime; it returns a ``TrialOutcome``, which the budget turns back into a ``TrialResult``.
In a worker process the compiler (registry, frontends, targets) is rebuilt once per process from the
installed plugins (``yolocc`` entry points), so a trial runs the same code there as here; plugins
registered only in the parent's plugin manager are not seen by workers (their ``Pass`` objects are,
since they travel pickled with the job).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import onnx

from . import lowering, onnxgraph
from .metrics import Metrics
from .options import CompileOptions

if TYPE_CHECKING:
    from .ir import ModelIR
    from .passbase import Pass


@dataclass
class TrialJob:
    """Everything needed to build and measure one trial (picklable: it may go to a worker)."""

    name: str
    parent: "ModelIR"  # the parent trial's model (copied before the passes change it)
    passes: list["Pass"]
    options: CompileOptions
    teacher: Any = None  # the teacher trial's torch module (recovery passes distil from it)
    reference: Metrics | None = None  # the teacher's val metrics (epochs=auto recovers towards them)
    with_test: bool = False  # also measure the data's test split
    evaluate: bool = True  # False: build and size the model only (no val, no test)

    def trains(self) -> bool:
        """Whether a pass trains the model (finetune, distill): the trial wants a GPU or many CPUs."""
        return any(getattr(p, "recovers", False) for p in self.passes)


@dataclass
class TrialOutcome:
    """What ``run_trial`` built and measured (the budget attaches it to its ``Trial``)."""

    ir: "ModelIR"
    val: Metrics | None  # None: not evaluated (``TrialJob.evaluate``)
    test: Metrics | None
    facts: list[dict[str, Any]] = field(default_factory=list)
    size_bytes: int = 0
    macs: int = 0
    time_s: float = 0.0
    #: Where it ran: ``host:pid`` of the process that built it (the budget's own, or a worker's).
    worker: str = ""


def worker_name() -> str:
    """This process as a trial's ``worker``: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


_WORKER_COMPILERS: dict[type, Any] = {}


def _worker_compiler(kind: type):
    """This worker process's compiler of class ``kind``, built once from the installed plugins."""
    if kind not in _WORKER_COMPILERS:
        _WORKER_COMPILERS[kind] = kind()
    return _WORKER_COMPILERS[kind]


def run_trial(job: TrialJob, compiler=None, runtime=None, progress: Callable[[str, int, int], None] | None = None,
              compiler_class: type | None = None) -> TrialOutcome:
    """Build and measure ``job``. ``compiler``/``runtime``: the caller's (in process); in a worker, None:
    a ``compiler_class()`` (``Compiler``, pickled by reference) is built there once. The result's model
    has no cached views, so it pickles back."""
    t0 = time.perf_counter()
    out_of_process = compiler is None
    if compiler is None:
        if compiler_class is None:
            raise TypeError("run_trial needs a compiler, or the compiler_class a worker builds one from")
        compiler = _worker_compiler(compiler_class)
    if runtime is None:
        _, runtime = compiler.target(job.options.target)
    ir = job.parent.snapshot()
    facts: list[dict] = []
    if job.passes:
        compiler.apply(ir, job.passes, job.options, progress,
                       on_pass=lambda step, result, dt: facts.append(
                           {"pass": step.pass_.name, "changes": result.changes, "time_s": round(dt, 2)}),
                       teacher=job.teacher, reference=job.reference, trial=True)
    model = lowering.onnx_bytes(ir, job.options.opset)
    val = test = None
    if job.evaluate:
        evaluate = compiler.evaluator(ir, job.options, runtime)
        val = evaluate(model, "val")
        test = evaluate(model, "test") if job.with_test else None
    if out_of_process:
        ir.invalidate()  # the dependency graph is a cache of the module: it need not travel back
    return TrialOutcome(ir, val, test, facts, size_bytes=len(model), macs=onnxgraph.macs(onnx.load_from_string(model)),
                        time_s=time.perf_counter() - t0, worker=worker_name())

"""Typed training settings for recovery (``finetune``/``distill``), with every default defined once.

The passes build their parameters from these defaults and hand a ``TrainSettings`` to
``Frontend.train``; a frontend reads fields, never a loose dict. The distillation defaults are the
ones measured on the digits fixtures (README, Results): detection feature weight 0.5 and output
distillation weight 6.0 at T=2; classification alpha 0.7 with the curriculum T0=5, gamma 0.9 and no
logit standardization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class DistillSettings:
    """How the student learns from the teacher.

    Detection: ``feat`` weights the neck-feature distillation (learned projector), ``kd`` the class-logit
    and DFL output distillation at ``temperature``; segment, pose and OBB add their own outputs (mask
    coefficients and prototypes, keypoints, angle) weighted by ``task_kd``. Classification:
    ``(1 - alpha) * CE + alpha * T^2 * KL(teacher || student)`` with ``T(e) = max(1, t0 * gamma**e)``
    over epochs; ``standardize`` z-scores the logits before the softmax."""

    feat: float = 0.5
    kd: float = 6.0
    temperature: float = 2.0
    task_kd: float = 1.0
    alpha: float = 0.7
    t0: float = 5.0
    gamma: float = 0.9
    standardize: bool = False


@dataclass(frozen=True)
class Confirmation:
    """One confirming measurement of a candidate: its val metric (``value``, a fraction) and the value
    that must reach the target (``bound``): ``value`` less the noise margin, ``margin`` standard errors
    of its paired drop against the reference (``metrics.drop_se``); equal to ``value`` without a margin."""

    value: float
    bound: float


@dataclass(frozen=True)
class AutoStop:
    """``epochs=auto``: train at most ``max_epochs``; stop once the val ``metric`` reaches ``target``
    (a fraction, e.g. mAP50-95 0.61), or after ``patience`` epochs without improvement.

    ``confirm(module) -> Confirmation`` measures a candidate (an eval-mode copy of the model being
    trained, as its checkpoint would hold it) the way the report measures every stage: exported, on the
    target's runtime, at the model's own input size. When set, the trainer's own validation reaching
    ``target`` stops training only if the confirmation's ``bound`` reaches it too. A trainer can
    validate differently (Ultralytics: ``rect`` batches letterboxed to a larger size, 0.4-0.8 pt higher
    on the pose, segment and OBB digits fixtures), so stopping on its number alone ends recovery short
    of the target; and the val split is noisy (the bound's margin), so stopping at the first epoch whose
    value crosses the target keeps a model whose true drop is likely over it (on the digits pose fixture:
    val drop 0.34 pt, test 1.11 pt at -55% MACs; one more epoch gave val -1.98, test -0.92)."""

    max_epochs: int
    patience: int
    metric: str
    target: float
    confirm: Callable[[Any], Confirmation] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TrainSettings:
    """One recovery run. ``optimizer``/``clip`` None: the frontend's per-task default. ``distill`` None:
    hard labels only (finetune). ``auto`` None: exactly ``epochs`` epochs. ``progress(epoch, total)``
    is called after each epoch when set."""

    imgsz: int
    epochs: int = 30
    lr: float = 0.001
    optimizer: str | None = None
    clip: float | None = None
    batch: int = 16
    seed: int = 0
    name: str = "finetune"
    distill: DistillSettings | None = None
    auto: AutoStop | None = None
    progress: Callable[[int, int], None] | None = None
    #: The one device it trains on, as ``training_device`` resolved it: "cpu" or a CUDA index ("0");
    #: None: the frontend's default.
    device: str | None = None
    #: Dataloader worker processes (``loader_workers``).
    workers: int = 0

    @property
    def max_epochs(self) -> int:
        """The most epochs this run may take."""
        return self.auto.max_epochs if self.auto is not None else self.epochs


#: ``epochs=auto`` defaults (the finetune/distill parameters and the budget search share them).
MAX_EPOCHS = 30
PATIENCE = 5
#: Points of the val metric below the reference that count as recovered.
WITHIN = 1.0
#: Standard errors of val noise (the paired bootstrap SE of the drop) that recovery must clear beyond
#: ``within`` before it stops, and that the ladder's steps must clear within their share of the budget.
MARGIN = 1.0


#: Why a recovery run trains on one device only (``training_device``'s refusal, one line).
MULTI_DEVICE = ("training on several devices (Ultralytics' DDP) is not supported: DDP relaunches the trainer in "
                "worker processes, and epochs=auto's confirmation (the val metric measured on the target's runtime "
                "after each epoch, and the model it keeps) would run there, out of yolocc's reach; train each trial "
                "on one device and run several trials at once with --workers N or --executor ray")


#: Most dataloader workers a CUDA recovery run starts by default.
MAX_LOADER_WORKERS = 8


def loader_workers(spec: int | None, device: str, cpus: int) -> int:
    """Dataloader worker processes for a recovery run on ``device`` ("cpu" or a CUDA index): ``spec`` when
    given; else 0 on the CPU (the trial keeps its torch threads to itself, and the budget's ``--workers``
    trials do not multiply processes) and ``min(MAX_LOADER_WORKERS, cpus)`` on a CUDA device, where loading
    is the bottleneck: distilling the digits detector at 640 on an H200 trained 80 images/s with 0 workers
    and 486 with 8 (``benchmarks/gpu.py``, ``runs/bench/gpu.json``)."""
    if spec is not None:
        return int(spec)
    return 0 if device == "cpu" else max(1, min(MAX_LOADER_WORKERS, cpus))


def training_device(spec: str | None, cuda_devices: int) -> str:
    """The device a recovery run trains on, as Ultralytics' ``device`` argument: ``spec`` "cpu", or one
    CUDA index ("0"); None: "0" when torch sees a CUDA device (``cuda_devices`` > 0), else "cpu".

    Raises ``UsageError`` (one line, at plan time) for several devices ("0,1", "0+1" as ``-p`` spells
    it, a list: see ``MULTI_DEVICE``), for an index torch does not see, and for anything else."""
    from .errors import UsageError

    if spec is None:
        return "0" if cuda_devices > 0 else "cpu"
    text = str(spec).strip().lower().removeprefix("cuda:")
    if text == "cpu":
        return "cpu"
    parts = [p for p in text.replace(" ", "").replace("+", ",").strip("[]()").split(",") if p]
    if len(parts) > 1:
        raise UsageError(f"device={spec}: {MULTI_DEVICE}")
    if len(parts) != 1 or not parts[0].isdigit():
        raise UsageError(f"device={spec}: expected cpu or one CUDA device index such as 0")
    if int(parts[0]) >= cuda_devices:
        seen = f"{cuda_devices} CUDA device(s)" if cuda_devices else "no CUDA device"
        raise UsageError(f"device={spec}: torch sees {seen} here")
    return parts[0]

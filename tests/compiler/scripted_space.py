"""A scripted search space for strategy tests: trials 'measure' drops a test gives (no training)."""

from yolocc.compiler.metrics import Metrics
from yolocc.compiler.options import CompileOptions
from yolocc.compiler.search import Trial, TrialResult

BUDGET = 1.0  # points


def macs_of(trial: Trial) -> int:
    """Scripted MACs: 1000 for the input, 1000 * (1 - T) below a prune:macs=T in the lineage."""
    for p in trial.lineage():
        if p.name == "prune":
            return round(1000 * (1 - p.args["macs"]))
    return 1000


def latency_of(trial: Trial) -> float:
    """Scripted latency (ms): its MACs / 100, x 0.7 with an ``act`` swap, x 0.5 once INT8."""
    names = [p.name for p in trial.lineage()]
    return macs_of(trial) / 100 * (0.7 if "act" in names else 1.0) * (0.5 if "int8" in names else 1.0)


class ScriptedSpace:
    """A search space whose trials 'measure' the val drops a test scripts, {trial name: drop in points, or
    (drop, layers mixed precision kept float)}; unscripted trials drop 0. ``noise``: {trial name: the standard
    error of its drop in points} (unscripted: unknown). ``latency``: {trial name: ms} (unscripted:
    ``latency_of``), or "off" (timing off: None for every trial). Records every batch (and every timed list in
    ``timed``); each result has the MACs ``macs_of`` scripts."""

    def __init__(self, outcomes: dict, budget: float = BUDGET, max_macs: float | None = None,
                 noise: dict | None = None, latency: dict | str | None = None):
        self.budget, self.outcomes, self.batches, self.noise = budget, outcomes, [], noise or {}
        self.latencies, self.timed = latency, []
        self.options = CompileOptions(max_macs=max_macs)
        self.input = TrialResult(Trial("input", candidate=False), Metrics("mAP50-95", {"mAP50-95": 0.5}), macs=1000)

    def run(self, trials):
        self.batches.append([t.name for t in trials])
        out = []
        for t in trials:
            outcome = self.outcomes.get(t.name, 0.0)
            drop, floats = outcome if isinstance(outcome, tuple) else (outcome, [])
            facts = [{"pass": "int8", "changes": {"mixed_precision": {"float_layers": floats}}}] if floats else []
            val = Metrics("mAP50-95", {"mAP50-95": 0.5 - drop / 100}) if t.evaluate else None
            out.append(TrialResult(t, val, facts=facts, macs=macs_of(t)))
        return out

    def drop(self, result):
        assert result.val is not None, f"{result.trial.name} was not evaluated"
        return round((self.input.val.value - result.val.value) * 100, 6)

    def drop_se(self, result):
        return self.noise.get(result.trial.name)

    def latency(self, results):
        self.timed.append([r.trial.name for r in results])
        if self.latencies == "off":
            return [None] * len(results)
        return [(self.latencies or {}).get(r.trial.name, latency_of(r.trial)) for r in results]

    def pass_(self, name, **args):
        raise AssertionError("strategies build their passes themselves")

    def progress(self, *a):
        pass

    def ran(self):
        return [name for batch in self.batches for name in batch]

"""``uniform``: a small search strategy for yolocc's accuracy budget (``--max-drop PTS --search uniform``).

It tries INT8 alone and uniform pruning at a few ratios followed by INT8, with no recovery training
(seconds per trial instead of minutes), and keeps the candidate with the fewest MACs whose val
metric stays within the budget. Everything it needs comes from ``yolocc.compiler.plugin_api``:
typed trials of ``Pass`` objects, run through the ``SearchSpace`` the budget hands it. Exposed under
the ``yolocc`` entry-point group as ``sparsify-search`` (see ``pyproject.toml``).
"""

from __future__ import annotations

from yolocc.compiler.plugin_api import SearchSpace, SearchStrategy, Trial, TrialResult, hookimpl

#: Uniform pruning ratios tried before INT8 (0: INT8 alone).
RATIOS = (0.0, 0.1, 0.2)


class UniformSearch(SearchStrategy):
    """Uniform pruning (no recovery) + INT8 at a few ratios; the fewest MACs within the budget wins."""

    name = "uniform"
    doc = "uniform prune:r (r in 0, 0.1, 0.2; no training) + int8; the fewest MACs within the budget (example plugin)"

    def search(self, space: SearchSpace) -> TrialResult | None:
        trials = [Trial(f"prune:{r} + int8" if r else "int8", ([space.pass_("prune", ratio=r)] if r else [])
                        + [space.pass_("int8")]) for r in RATIOS]
        space.progress("uniform pruning + int8", 0, len(trials))
        results = space.run(trials)
        within = [r for r in results if space.drop(r) <= space.budget]
        return min(within, key=lambda r: (r.macs, -r.val.value)) if within else None


@hookimpl
def yolocc_register_strategies(registry):
    registry.add_strategy(UniformSearch())

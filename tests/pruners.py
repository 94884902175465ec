"""A test-only Optuna pruner that makes a search's pruning deterministic."""

from __future__ import annotations

import optuna

# A search's overrides that make trial 0 its one pruned trial.
PRUNE_TRIAL_ZERO = ["search/pruner=none", "search.pruner._target_=tests.pruners.PruneTrialZero"]


class PruneTrialZero(optuna.pruners.BasePruner):
    """Prunes trial 0 at its first report and never any other trial: a search with it has one
    pruned trial whatever the trials' metrics."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 0

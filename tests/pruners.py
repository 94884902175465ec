"""A test-only Optuna pruner that makes a search's pruning deterministic."""

from __future__ import annotations

import optuna


class PruneTrialZero(optuna.pruners.BasePruner):
    """Prunes trial 0 at its first report and never any other trial: a search with it has one
    pruned trial whatever the trials' metrics."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 0

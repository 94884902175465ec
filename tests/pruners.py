"""A test-only Optuna pruner that makes a search's pruning deterministic."""

from __future__ import annotations

import time

import optuna

# A search's overrides that make trial 0 its one pruned trial.
PRUNE_TRIAL_ZERO = ["search/pruner=none", "search.pruner._target_=tests.pruners.PruneTrialZero"]


class PruneTrialZero(optuna.pruners.BasePruner):
    """Prunes trial 0 at its first report and never any other trial: a search with it has one
    pruned trial whatever the trials' metrics.

    Trial 0 is pruned only once trial 1 has reported an epoch (or after `patience` seconds), so
    that in a search of two slots the two trials overlap however long the launcher takes to start
    the second (a SLURM job can start seconds after a tiny trial's first epoch has ended). With one
    slot, trial 1 cannot start before trial 0 ends: the wait runs out and the trials do not overlap."""

    def __init__(self, patience: float = 120.0) -> None:
        self.patience = patience

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if trial.number != 0:
            return False
        deadline = time.monotonic() + self.patience
        while time.monotonic() < deadline and not self.trial_one_reported(study):
            time.sleep(0.5)
        return True

    @staticmethod
    def trial_one_reported(study: optuna.Study) -> bool:
        return any(other.number == 1 and other.intermediate_values for other in study.get_trials(deepcopy=False))

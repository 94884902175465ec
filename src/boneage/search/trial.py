"""The study trial a training job is, seen from inside the job.

The sweeper starts each trial as an ordinary training job with `search.trial=<number>`; the
job opens the study's storage itself (a journal file or a database, which many processes and
hosts may write at once), reports its metric each epoch and, when the pruner says so, stops
and tells the study it was pruned. The sweeper tells the study how the others ended.
"""

from __future__ import annotations

from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig
from optuna.trial import TrialState

from boneage.search.storage import open_storage


class StudyTrial:
    """Trial `number` of the study `search` names, with the pruner `search.pruner` builds."""

    def __init__(self, search: DictConfig) -> None:
        pruner = instantiate(search.pruner) if search.get("pruner") else None
        storage = open_storage(search.storage)
        self.study = optuna.load_study(study_name=search.study_name, storage=storage, pruner=pruner)
        self.number = int(search.trial)
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(search.study_name), self.number
        )
        self.trial = optuna.trial.Trial(self.study, trial_id)

    @property
    def prunable(self) -> bool:
        """Optuna prunes single-objective studies only: a Pareto front has no one value to compare."""
        return len(self.study.directions) == 1

    def report(self, value: float, epoch: int) -> bool:
        """Report the trial's value at this epoch; whether the pruner stops the trial here."""
        self.trial.report(value, step=epoch)
        return self.trial.should_prune()

    def note(self, **attributes: Any) -> None:
        for key, value in attributes.items():
            self.trial.set_user_attr(key, value)

    def pruned(self) -> None:
        """Tell the study the trial was pruned (at its last reported epoch); the sweeper sees it."""
        self.study.tell(self.number, state=TrialState.PRUNED)

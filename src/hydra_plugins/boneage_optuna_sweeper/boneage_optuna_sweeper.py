"""Hydra's entry to boneage's Optuna search (`hydra/sweeper=boneage_optuna`, which
`hparams_search=optuna` selects). The search itself is `boneage.search.sweeper`, imported when a
search starts: Hydra imports every plugin module on every command."""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class BoneageOptunaSweeperConf:
    _target_: str = "hydra_plugins.boneage_optuna_sweeper.boneage_optuna_sweeper.BoneageOptunaSweeper"
    study_name: str = "boneage"  # the study's name in its storage
    storage: str = "optuna.journal"  # a journal file's path, or a database URL (sqlite:///..., postgresql://...)
    direction: str = "minimize"  # minimize | maximize (one objective)
    # one direction per optimized_metric in a multi-objective search, e.g. [minimize, minimize]
    directions: Optional[list[str]] = None  # noqa: UP045
    n_trials: int = 20  # trials this command runs (a rerun adds as many to the study)
    n_jobs: int = 1  # trials running at once, through the launcher
    max_failure_rate: float = 0.0  # the search fails if more of its trials failed than this fraction
    sampler: dict[str, Any] = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler"})
    # the search space, key: Hydra sweep syntax, e.g. model.dropout: interval(0.0, 0.7)
    params: Optional[dict[str, str]] = None  # noqa: UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="boneage_optuna", node=BoneageOptunaSweeperConf, provider="boneage"
)


class BoneageOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from boneage.search.sweeper import OptunaSearch

        self.search = OptunaSearch(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self.search.sweep(arguments)

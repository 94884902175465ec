"""The Optuna search as a Hydra sweeper: each trial is one training job of the configured
launcher, and a slot that frees (its trial finished, failed or was pruned) starts the next at once.

Hydra's Optuna plugin launches trials in batches of `n_jobs` and waits for the whole batch, so a
pruned trial's slot stays idle; here each of the `n_jobs` slots is a thread that asks the study
for a trial, launches that one job and tells the study how it ended. The jobs themselves open
the study's storage to report each epoch (`boneage.search.trial`): a journal file, or a database
URL, is shared by every process and host of the search.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from boneage.config.errors import ConfigError, TrainingError
from boneage.config.resolvers import study_storage
from boneage.runs.objectives import objective_values
from boneage.runs.records import RunRecord
from boneage.runtime.lifetime import alive
from boneage.search.space import SearchSpace
from boneage.search.storage import open_storage

log = logging.getLogger(__name__)

IN_PROCESS_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"  # runs one job at a time
RESULTS_FILE = "optimization_results.yaml"


class OptunaSearch:
    """`n_trials` trials of the study `study_name` in `storage`, `n_jobs` at a time."""

    def __init__(
        self,
        study_name: str,
        storage: str,
        sampler: optuna.samplers.BaseSampler,  # Hydra instantiated it from hydra.sweeper.sampler
        direction: str = "minimize",
        directions: Sequence[str] | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        params: dict | None = None,
    ) -> None:
        self.study_name, self.storage = study_name, study_storage(storage)
        self.sampler = sampler
        self.directions = list(directions or [direction])
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, max(1, n_jobs), max_failure_rate
        self.params = dict(params or {})
        self._asking = threading.Lock()
        self._stopping = threading.Event()
        self._left = n_trials
        self._own: list[int] = []  # trial numbers this search started

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))  # resolved once, before the slots' threads
        if OmegaConf.select(config, "search") is None:
            raise ConfigError(
                "the Optuna sweeper needs the search node of hparams_search=optuna: add hparams_search=optuna"
            )

    def sweep(self, arguments: list[str]) -> None:
        space = SearchSpace.from_overrides([*(f"{key}={value}" for key, value in self.params.items()), *arguments])
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(self.storage),
            sampler=self.sampler,
            directions=self.directions,
            load_if_exists=True,
        )
        finish_stale_trials(study, OmegaConf.select(self.config, "optimized_metric"))
        slots = 1 if self.config.hydra.launcher._target_ == IN_PROCESS_LAUNCHER else self.n_jobs
        log.info(f"Study {self.study_name} in {self.storage}: {self.n_trials} trials, {slots} at a time")
        pool = ThreadPoolExecutor(slots, thread_name_prefix="trial-slot")
        try:
            for slot in [pool.submit(self._run_trials, study, space) for _ in range(slots)]:
                slot.result()
        except BaseException:
            self._stopping.set()  # the slots start no new trial; the running ones end as their jobs end
            raise
        finally:
            pool.shutdown(wait=True)
            for number in set(self._own) & _numbers(study, TrialState.RUNNING):  # its job never came back
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        self._check_failures(study)
        write_results(study, self.sweep_dir / RESULTS_FILE)

    def _run_trials(self, study: optuna.Study, space: SearchSpace) -> None:
        while (trial := self._ask(study, space)) is not None:
            overrides = [*space.overrides(trial), f"search.trial={trial.number}"]
            log.info(f"\ttrial {trial.number}: {' '.join(overrides)}")
            try:
                values = trial_values(self.launcher.launch([overrides], initial_job_idx=trial.number)[0])
            except Exception as error:  # a launcher that failed to start the job: this trial failed
                log.error(f"trial {trial.number} could not run: {error}")
                values = None
            if trial.number in _numbers(study, TrialState.PRUNED):  # its job told the study itself
                log.info(f"trial {trial.number}: pruned")
            elif values is None:
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                log.info(f"trial {trial.number}: failed (its run.json says why)")
            else:
                study.tell(trial, values, skip_if_finished=True)
                log.info(f"trial {trial.number}: {', '.join(f'{value:.4g}' for value in values)}")

    def _ask(self, study: optuna.Study, space: SearchSpace) -> optuna.Trial | None:
        """The next trial, its parameters sampled from all that the study knows now; None when done."""
        with self._asking:
            if self._left <= 0 or self._stopping.is_set():
                return None
            self._left -= 1
            trial = study.ask(space.distributions)
            trial.set_user_attr("sweeper", {"host": socket.gethostname(), "pid": os.getpid()})
            self._own.append(trial.number)
            return trial

    def _check_failures(self, study: optuna.Study) -> None:
        failed = sorted(set(self._own) & _numbers(study, TrialState.FAIL))
        if self._own and len(failed) / len(self._own) > self.max_failure_rate:
            raise TrainingError(
                f"{len(failed)} of {len(self._own)} trials failed (trials {failed}; their run.json says why), "
                f"more than hydra.sweeper.max_failure_rate={self.max_failure_rate}"
            )


def _numbers(study: optuna.Study, state: TrialState) -> set[int]:
    return {trial.number for trial in study.get_trials(deepcopy=False, states=(state,))}


def as_values(returned: Any) -> list[float]:
    """One objective value or several, as the list of floats Optuna's `tell` takes."""
    return [float(value) for value in (returned if isinstance(returned, list | tuple) else [returned])]


def trial_values(job: JobReturn) -> list[float] | None:
    """The values a finished job returned (`optimized_metric`); None for a failed or pruned job."""
    if job.status != JobStatus.COMPLETED or job.return_value is None:
        return None
    values = as_values(job.return_value)
    return None if any(math.isnan(value) for value in values) else values


def finish_stale_trials(study: optuna.Study, optimized_metric: Any) -> None:
    """Trials left running by a search process that is gone (killed, its machine rebooted): the
    ones whose job finished or was pruned are told so from their run record, the others failed."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("sweeper") or {}
        if owner.get("host") != host or alive(int(owner.get("pid", 0))):
            continue  # another machine's search, or one still running here
        told = study.tell(trial.number, *_recorded_outcome(trial, optimized_metric), skip_if_finished=True)
        log.warning(f"trial {trial.number} was left running by a search that is gone: now {told.state.name.lower()}")


def _recorded_outcome(trial: FrozenTrial, optimized_metric: Any) -> tuple[list[float] | None, TrialState]:
    record = RunRecord(trial.user_attrs["run_dir"]).read_if_readable() if "run_dir" in trial.user_attrs else {}
    if record.get("status") == "pruned":
        return None, TrialState.PRUNED
    if record.get("status") == "finished":
        returned = objective_values(optimized_metric, record.get("metrics") or {}, record.get("speed"))
        if returned is not None:
            return as_values(returned), TrialState.COMPLETE
    return None, TrialState.FAIL


def write_results(study: optuna.Study, path: Path) -> None:
    """The best trial (or, with several objectives, the Pareto front) beside the sweep's jobs."""
    try:
        best = study.best_trials
    except ValueError:  # no trial completed
        return
    results = {"study": study.study_name, "directions": [direction.name.lower() for direction in study.directions]}
    results["best_trials"] = [{"number": t.number, "values": t.values, "params": t.params} for t in best]
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(results), path)

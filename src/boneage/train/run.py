"""One job of `python -m boneage.train`, its config composed: check, seed, build, fit, test.

This module only instantiates and wires; what each part does lives in its own module, and the
run's record (its start and however it ends) in `boneage.runs.lifecycle`. `run` returns the
value of `optimized_metric` to Hydra sweepers (none for a pruned trial). The command
(`boneage.train.command`) imports it once the config is composed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from boneage.callbacks.trial_pruning import TrialPruning
from boneage.config.build import build_data_and_module, build_trainer
from boneage.config.checks import check_checkpoint, check_config, check_free_space, warn_of_settings_longer_than_the_run
from boneage.runs.hparams import log_final_metrics, log_run_hparams
from boneage.runs.lifecycle import ZeroRankRecord, recorded_run
from boneage.runs.objectives import objective_values
from boneage.runs.summary import format_summary
from boneage.runs.sweep_resume import continue_sweep_job, requeued_here
from boneage.runs.trackers import trackers_ended
from boneage.runtime.ddp import ddp_failures_explained, distributed_job_scope, route_ranks_to_job_directory
from boneage.runtime.lifetime import PROMPT_STOP
from boneage.runtime.speed import measure_inference
from boneage.search.trial import StudyTrial


@dataclass
class TrainedJob:
    """What a job leaves: the best checkpoint's val (and test) metrics, and where it is."""

    metrics: dict[str, float]
    best_checkpoint: str | None
    run_dir: str
    speed: dict[str, float] | None = None
    pruned: bool = False  # a search's pruner stopped it: it has no final metrics


def train(cfg: DictConfig) -> TrainedJob:
    """Fit, then evaluate the best checkpoint on val and test; the run record tracks it all."""
    if (kept := _finished_before(cfg)) is not None:
        return kept
    with recorded_run(cfg) as record:
        check_config(cfg)
        warn_of_settings_longer_than_the_run(cfg)
        pl.seed_everything(cfg.seed, workers=True)
        datamodule, module = build_data_and_module(cfg)
        if cfg.get("ckpt_path"):
            check_checkpoint(cfg.ckpt_path, module, cfg.model.name)
        pruning = search_trial_pruning(cfg, record)
        trainer = build_trainer(cfg, callbacks=[pruning] if pruning else [])
        timeout_min = OmegaConf.select(cfg, "trainer.strategy.timeout_min")
        with ddp_failures_explained(trainer, timeout_min), trackers_ended(trainer.loggers):
            log_run_hparams(cfg, trainer, module)
            if cfg.train:
                check_free_space(cfg.paths.output_dir, module)
                trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
            best = _best_checkpoint(trainer, cfg)
            if pruning and pruning.pruned_at:
                return _pruned(cfg, record, pruning, best)
            evaluated = {"datamodule": datamodule, "ckpt_path": best, "verbose": False, "weights_only": True}
            metrics = trainer.validate(module, **evaluated)[0]
            if cfg.test:
                metrics |= trainer.test(module, **evaluated)[0]
            log_final_metrics(trainer, module, metrics)
            speed = None
            if trainer.is_global_zero and not trainer.fast_dev_run:  # a smoke run's speed says nothing
                speed = measure_inference(module, datamodule.val_dataloader(), trainer.strategy.root_device)
        record.ended("finished", metrics=metrics, best_checkpoint=best, speed=speed)
    tables = datamodule.task.summary(datamodule.summary()["trivial_predictor"])
    _say(format_summary(metrics, tables, best, cfg.paths.output_dir))
    return TrainedJob(metrics, best, cfg.paths.output_dir, speed)


def search_trial_pruning(cfg: DictConfig, record: ZeroRankRecord) -> TrialPruning | None:
    """In a search's trial (`search.trial` set by the sweeper): the callback that reports each
    epoch to the study, which rank zero opens; the run record names the study and trial."""
    search = cfg.get("search")
    if search is None or search.get("trial") is None:
        return None
    trial = None
    if rank_zero_only.rank == 0:
        trial = StudyTrial(search)
        trial.note(run_dir=str(cfg.paths.output_dir))
        objectives = cfg.optimized_metric if OmegaConf.is_list(cfg.optimized_metric) else [cfg.optimized_metric]
        directions = [direction.name.lower() for direction in trial.study.directions]
        record.update(search={"study": search.study_name, "storage": search.storage, "trial": trial.number,
                              "objectives": list(objectives), "directions": directions})  # fmt: skip
    return TrialPruning(trial, cfg.task.monitor, cfg.task.mode)


def _pruned(cfg: DictConfig, record: ZeroRankRecord, pruning: TrialPruning, best: str | None) -> TrainedJob:
    """A trial the pruner stopped: recorded as pruned (its checkpoints and history stay), not tested."""
    epoch, value = pruning.pruned_at["epoch"], pruning.pruned_at["value"]
    record.ended("pruned", pruned=pruning.pruned_at, best_checkpoint=best)
    if pruning.trial is not None:
        pruning.trial.pruned()
    _say(
        f"pruned at epoch {epoch} (best {cfg.task.monitor} so far {value:.4f}): the study's pruner stopped this trial\n"
        f"run directory:   {cfg.paths.output_dir}"
    )
    return TrainedJob({}, best, cfg.paths.output_dir, pruned=True)


def _best_checkpoint(trainer: pl.Trainer, cfg: DictConfig) -> str | None:
    """The checkpoint evaluated: the best of this fit, or the one it resumed (train=false: the one given)."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    return best or cfg.get("ckpt_path") or None


def _finished_before(cfg: DictConfig) -> TrainedJob | None:
    """A sweep job taken up again (resumed, requeued) that had finished: its recorded metrics."""
    if not (cfg.get("sweep_resume") or requeued_here(cfg.paths.output_dir)):
        return None
    metrics = continue_sweep_job(cfg, rank_zero_only.rank == 0)
    return None if metrics is None else TrainedJob(metrics, None, cfg.paths.output_dir)


@rank_zero_only
def _say(text: str) -> None:
    print(text, flush=True)


def run(cfg: DictConfig) -> float | None:
    """The job: its ranks in its folder, a prompt stop on a signal, and its value for a sweeper."""
    PROMPT_STOP.install()
    route_ranks_to_job_directory()
    with distributed_job_scope():
        job = train(cfg)
    return None if job.pruned else objective_values(cfg.get("optimized_metric"), job.metrics, job.speed)

"""One job of `python -m boneage.train`, its config composed: train, test, record the run.

This module only instantiates and wires; what each part does lives in its own module.
`run` returns the value of `optimized_metric` (val MAE of the best checkpoint) to Hydra
sweepers. The command (`boneage.train.command`) imports it once the config is composed.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from boneage.config.build import build, build_data_and_module
from boneage.config.checks import (
    check_checkpoint,
    check_config,
    check_free_space,
    warn_of_settings_longer_than_the_run,
)
from boneage.config.errors import ConfigError, DiskFullError, TrainingError
from boneage.runs.hparams import log_final_metrics, log_run_hparams
from boneage.runs.records import RunRecord, environment, now
from boneage.runs.summary import format_summary
from boneage.runs.sweep_resume import continue_sweep_job, requeued_here
from boneage.runs.techniques import active_techniques
from boneage.runs.trackers import end_tracker_runs
from boneage.runtime.ddp import (
    ddp_failures_explained,
    distributed_job_scope,
    route_ranks_to_job_directory,
)
from boneage.runtime.lifetime import PROMPT_STOP
from boneage.runtime.slurm import cluster_plugins, slurm_job_id
from boneage.runtime.speed import measure_inference

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("metrics", "columns", "trivial", "note", "best_checkpoint", "run_dir")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then evaluate the best checkpoint on val and test; the run record tracks it all."""
    taken_up = cfg.get("sweep_resume") or requeued_here(cfg.paths.output_dir)  # a job continues where it stopped
    if taken_up and (kept := continue_sweep_job(cfg, _is_global_zero())) is not None:
        return kept
    record = RunRecord(cfg.paths.output_dir)
    _refuse_to_overwrite(record, cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    _record(
        record,
        status="running",
        started_at=now(),
        command=_command_line(),
        rerun_command=f"python -m boneage.train --config-dir {cfg.paths.output_dir}/.hydra --config-name config",
        tags=list(cfg.get("tags") or []),
        config=config,
        techniques=active_techniques(config),
        environment=environment(),
        process={"pid": os.getpid(), "host": socket.gethostname(), "slurm_job_id": slurm_job_id()},
        resumed_from=cfg.get("ckpt_path"),
    )
    _reserve_space(record)
    started = time.monotonic()
    try:
        with PROMPT_STOP.guarding(cfg.stop_grace_s, functools.partial(_record_stuck_stop, record, cfg.stop_grace_s)):
            outcome = _fit_and_evaluate(cfg)
    except BaseException as error:
        stated = _record_failure(record, error)
        if stated is error:
            raise
        raise stated from error
    _finish(
        record,
        status="finished",
        error=None,
        ended_at=now(),
        duration_s=round(time.monotonic() - started, 1),
        metrics=outcome["metrics"],
        best_checkpoint=outcome["best_checkpoint"],
        speed=outcome["speed"],
    )
    _print(format_summary(**{key: outcome[key] for key in SUMMARY_KEYS}))
    return outcome["metrics"]


def _fit_and_evaluate(cfg: DictConfig) -> dict[str, Any]:
    check_config(cfg)
    warn_of_settings_longer_than_the_run(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module = build_data_and_module(cfg)
    if cfg.get("ckpt_path"):
        check_checkpoint(cfg.ckpt_path, module, cfg.model.name)
    callbacks = [build(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [build(c) for c in (cfg.get("logger") or {}).values()]
    plugins = [*build(cfg.trainer.get("plugins") or []), *cluster_plugins()]
    trainer: pl.Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins)
    try:
        with ddp_failures_explained(trainer, OmegaConf.select(cfg, "trainer.strategy.timeout_min")):
            return _fit_and_test(cfg, trainer, datamodule, module)
    finally:
        end_tracker_runs(loggers)


def _fit_and_test(
    cfg: DictConfig, trainer: pl.Trainer, datamodule: pl.LightningDataModule, module: pl.LightningModule
) -> dict[str, Any]:
    log_run_hparams(cfg, trainer, module)
    if cfg.train:
        check_free_space(cfg.paths.output_dir, module)
        with _explained_out_of_memory(cfg):
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    checkpoint = trainer.checkpoint_callback
    best = (checkpoint.best_model_path if checkpoint else "") or cfg.get("ckpt_path") or None
    evaluate = {"datamodule": datamodule, "ckpt_path": best, "verbose": False, "weights_only": True}
    metrics = trainer.validate(module, **evaluate)[0]
    if cfg.test:
        metrics |= trainer.test(module, **evaluate)[0]
    log_final_metrics(trainer, module, metrics)
    data = datamodule.summary()
    speed = None
    if trainer.is_global_zero and not trainer.fast_dev_run:  # a smoke run's speed says nothing
        speed = measure_inference(module, datamodule.val_dataloader(), trainer.strategy.root_device)
    task = datamodule.task
    return {
        "metrics": metrics,
        "columns": task.summary_columns(),
        "trivial": task.trivial_columns(data["trivial_predictor"]),
        "note": "\n".join([task.summary_note(data["age_unit"]), *task.coverage_notes(data["trivial_predictor"])]),
        "best_checkpoint": best,
        "run_dir": cfg.paths.output_dir,
        "speed": speed,
    }


@rank_zero_only  # the other DDP ranks join the run rank 0 has just recorded
def _refuse_to_overwrite(record: RunRecord, cfg: DictConfig) -> None:
    """A run directory holds one run; only resuming that run may write into it again."""
    existing = record.read()
    resuming_here = str(cfg.get("ckpt_path") or "").startswith(str(cfg.paths.output_dir))
    if existing and not resuming_here:
        raise ConfigError(
            f"{cfg.paths.output_dir} already holds a run ({existing.get('status')}); it is left as it is. "
            f"Choose another hydra.run.dir, or continue that run: python -m boneage.resume {cfg.paths.output_dir}"
        )


def _record_failure(record: RunRecord, error: BaseException) -> BaseException:
    """Record how the run ended and return the exception that tells the user (often `error` itself)."""
    stalled = record.read_if_readable() if _is_global_zero() else {}
    if stalled.get("status") == "stalled":  # the stall watchdog interrupted the run and recorded why
        _finish(record)
        _listen_to_ctrl_c_again()
        return TrainingError(stalled["error"])
    # Lightning turns Ctrl-C and SIGTERM into SystemExit once it has shut down cleanly.
    status = "interrupted" if isinstance(error, KeyboardInterrupt | SystemExit) else "failed"
    stated = disk_full_explained(error, record.path.parent)
    _finish(record, status=status, error=f"{type(stated).__name__}: {stated}", ended_at=now())
    if isinstance(error, SIGTERMException):  # a bare SystemExit: the shell would see success
        return SystemExit(128 + signal.SIGTERM)
    return stated


def _record_stuck_stop(record: RunRecord, grace_s: float, signal_name: str) -> None:
    _finish(
        record,
        status="interrupted",
        error=f"{signal_name}: the run was still stuck {grace_s:g} s later (in a collective or a loader) and was "
        f"ended. Its last checkpoint is intact: python -m boneage.resume {record.path.parent}",
        ended_at=now(),
    )


def _listen_to_ctrl_c_again() -> None:
    """Lightning ignores Ctrl-C after it handled one; the next job of a sweep must hear it again."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _is_global_zero() -> bool:
    return rank_zero_only.rank == 0


@contextmanager
def _explained_out_of_memory(cfg: DictConfig) -> Iterator[None]:
    """GPU out of memory: say which smaller batch keeps the same effective batch size."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as error:
        batch, accumulate = cfg.data.batch_size, cfg.trainer.accumulate_grad_batches
        raise TrainingError(
            f"GPU out of memory with data.batch_size={batch}. Halve it and double the accumulation to keep "
            f"the effective batch: data.batch_size={max(1, batch // 2)} "
            f"trainer.accumulate_grad_batches={accumulate * 2} (or use trainer.precision=16-mixed)."
        ) from error


def _command_line() -> str:
    """The command that started this run, as it can be pasted into a shell."""
    return shlex.join(["python", "-m", "boneage.train", *sys.argv[1:]])


@rank_zero_only
def _record(record: RunRecord, **sections: Any) -> None:
    record.update(**sections)


@rank_zero_only
def _finish(record: RunRecord, **sections: Any) -> None:
    record.finish(**sections)


@rank_zero_only
def _reserve_space(record: RunRecord) -> None:
    record.reserve_space()


def disk_full_explained(error: BaseException, run_dir: Path) -> BaseException:
    """A full disk, wherever it struck (checkpoint, log, plot), as one clear DiskFullError."""
    if isinstance(error, DiskFullError) or not (isinstance(error, OSError) and error.errno == errno.ENOSPC):
        return error
    return DiskFullError(
        f"disk full: no space left on the device while writing {error.filename or run_dir}; the checkpoints "
        f"saved before are intact. Free space and resume: python -m boneage.resume {run_dir}"
    )


@rank_zero_only
def _print(text: str) -> None:
    print(text, flush=True)


def run(cfg: DictConfig) -> float | None:
    """The job: its ranks in its folder, a prompt stop on a signal, and its value for a sweeper."""
    PROMPT_STOP.install()
    route_ranks_to_job_directory()
    with distributed_job_scope():
        metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric"))

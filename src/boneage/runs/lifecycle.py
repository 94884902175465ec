"""A run's life in its record: started, then finished, failed, interrupted or stalled, whatever
ended it. `recorded_run` wraps a training job (as lightning-hydra-template's `task_wrapper`
does) so that the job itself only trains: the record's start and end, the disk reserve for its
last words, the prompt stop on a signal, and the errors a user reads instead of a library's.
Every record write happens on the global rank zero only; the other DDP ranks join its run.
"""

from __future__ import annotations

import errno
import functools
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

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from boneage.config.errors import ConfigError, DiskFullError, TrainingError
from boneage.runs.records import RunRecord, environment, now
from boneage.runs.techniques import active_techniques
from boneage.runtime.lifetime import PROMPT_STOP
from boneage.runtime.slurm import slurm_job_id


class ZeroRankRecord:
    """The run's record as rank zero writes it (a no-op on the other ranks)."""

    def __init__(self, run_dir: str) -> None:
        self.record = RunRecord(run_dir)
        self.started = time.monotonic()

    @rank_zero_only
    def update(self, **sections: Any) -> None:
        self.record.update(**sections)

    @rank_zero_only
    def end(self, **sections: Any) -> None:
        self.record.finish(**sections)

    @rank_zero_only
    def reserve_space(self) -> None:
        self.record.reserve_space()

    def ended(self, status: str, **sections: Any) -> None:
        """The run ended of itself, `finished` (with its metrics, best checkpoint and speed) or
        `pruned` by its search."""
        duration_s = round(time.monotonic() - self.started, 1)
        self.end(status=status, error=None, ended_at=now(), duration_s=duration_s, **sections)


@contextmanager
def recorded_run(cfg: DictConfig) -> Iterator[ZeroRankRecord]:
    """The record of the run of `cfg`, from its start to however it ends; a failure is recorded
    and raised as the error that tells the user (a full disk, a signal, GPU memory)."""
    record = ZeroRankRecord(cfg.paths.output_dir)
    _refuse_to_overwrite(record.record, cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    record.update(
        status="running",
        started_at=now(),
        command=shlex.join(["python", "-m", "boneage.train", *sys.argv[1:]]),
        rerun_command=f"python -m boneage.train --config-dir {cfg.paths.output_dir}/.hydra --config-name config",
        tags=list(cfg.get("tags") or []),
        config=config,
        techniques=active_techniques(config),
        environment=environment(),
        process={"pid": os.getpid(), "host": socket.gethostname(), "slurm_job_id": slurm_job_id()},
        resumed_from=cfg.get("ckpt_path"),
    )
    record.reserve_space()
    try:
        stuck = functools.partial(_record_stuck_stop, record, cfg.stop_grace_s)
        with PROMPT_STOP.guarding(cfg.stop_grace_s, stuck), _explained_out_of_memory(cfg):
            yield record
    except BaseException as error:
        stated = _record_failure(record, error)
        if stated is error:
            raise
        raise stated from error


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


def _record_failure(record: ZeroRankRecord, error: BaseException) -> BaseException:
    """Record how the run ended and return the exception that tells the user (often `error` itself)."""
    stalled = record.record.read_if_readable() if rank_zero_only.rank == 0 else {}
    if stalled.get("status") == "stalled":  # the stall watchdog interrupted the run and recorded why
        record.end()
        _listen_to_ctrl_c_again()
        return TrainingError(stalled["error"])
    # Lightning turns Ctrl-C and SIGTERM into SystemExit once it has shut down cleanly.
    status = "interrupted" if isinstance(error, KeyboardInterrupt | SystemExit) else "failed"
    stated = disk_full_explained(error, record.record.path.parent)
    record.end(status=status, error=f"{type(stated).__name__}: {stated}", ended_at=now())
    if isinstance(error, SIGTERMException):  # a bare SystemExit: the shell would see success
        return SystemExit(128 + signal.SIGTERM)
    return stated


def _record_stuck_stop(record: ZeroRankRecord, grace_s: float, signal_name: str) -> None:
    record.end(
        status="interrupted",
        error=f"{signal_name}: the run was still stuck {grace_s:g} s later (in a collective or a loader) and was "
        f"ended. Its last checkpoint is intact: python -m boneage.resume {record.record.path.parent}",
        ended_at=now(),
    )


def _listen_to_ctrl_c_again() -> None:
    """Lightning ignores Ctrl-C after it handled one; the next job of a sweep must hear it again."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


def disk_full_explained(error: BaseException, run_dir: Path) -> BaseException:
    """A full disk, wherever it struck (checkpoint, log, plot), as one clear DiskFullError."""
    if isinstance(error, DiskFullError) or not (isinstance(error, OSError) and error.errno == errno.ENOSPC):
        return error
    return DiskFullError(
        f"disk full: no space left on the device while writing {error.filename or run_dir}; the checkpoints "
        f"saved before are intact. Free space and resume: python -m boneage.resume {run_dir}"
    )

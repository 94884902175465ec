"""DDP under Hydra: every rank of a job runs in that job's directory, in a sweep too.

Lightning starts ranks 1..N-1 by re-running the launch command. Its Hydra variant replays
`sys.argv` and pins `hydra.run.dir`; in a multirun, argv still holds `-m` and the sweep
lists, so each extra rank would start the whole sweep again in a new folder. The command
built here replays only the job's own overrides (one value per key, no `-m`) and pins the
job's own output directory, so the ranks of a single run and of a sweep job alike join
the job they belong to.

A rank that stops answering must not hang the others forever: collectives time out after
`trainer.strategy.timeout_min` (`ddp_strategy`), and the ranks rank 0 started end with it.
A rank that fails must not take a sweep with it: Lightning's watcher of the ranks SIGKILLs
the launching process, which in a sweep is the whole sweep; `watch_ranks` ends the other
ranks instead, and rank 0 fails at its next collective, so the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl
import torch.distributed
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd
from pytorch_lightning.strategies import DDPStrategy

from boneage.config.errors import TrainingError
from boneage.runtime.lifetime import exit_with
from boneage.runtime.lightning_private import start_ranks_with, watch_ranks_with

log = logging.getLogger(__name__)

RANK_ZERO_PID = "BONEAGE_RANK0_PID"  # set by rank 0 for the ranks it starts
LOST = ("timed out", "connection closed", "connection reset", "aborted")  # a collective that lost a rank


def job_rank_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command and working directory that start one more rank of the current Hydra job."""
    hydra_config = HydraConfig.get()
    # Named, not taken from __main__: under a parallel launcher __main__ is the worker's.
    command = [sys.executable, "-m", "boneage.train", f"--config-name={hydra_config.job.config_name}"]
    for source in hydra_config.runtime.config_sources:
        if source.provider == "command-line" and source.schema == "file":
            command.append(f"--config-dir={source.path}")
    command += list(hydra_config.overrides.task)
    command += [
        f"hydra.run.dir='{hydra_config.runtime.output_dir}'",
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",  # only rank 0 writes the .hydra/ config files
    ]
    return command, get_original_cwd()


def ddp_strategy(timeout_min: float = 30, **kwargs: Any) -> DDPStrategy:
    """Lightning's DDP whose collectives give up after `timeout_min` minutes with an error.

    NCCL's default on an error is to end the process (TORCH_NCCL_ASYNC_ERROR_HANDLING=3),
    which in a sweep ends every job after it; 2 aborts the communicator and raises instead.
    """
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2")
    return DDPStrategy(timeout=timedelta(minutes=timeout_min), **kwargs)


def route_ranks_to_job_directory() -> None:
    """Make Lightning's subprocess launcher use `job_rank_command` for the ranks it starts and
    `watch_ranks` to watch them, and make a rank so started end when the rank 0 that started
    it ends (its pid travels in the environment: it may be gone before this rank looks)."""
    start_ranks_with(job_rank_command)
    watch_ranks_with(watch_ranks)
    if int(os.environ.get("LOCAL_RANK", 0)) > 0:
        exit_with(int(os.environ.get(RANK_ZERO_PID, os.getppid())))
    else:
        os.environ[RANK_ZERO_PID] = str(os.getpid())


def watch_ranks(ranks: list[subprocess.Popen]) -> None:
    """Watch the ranks this process started: when one ends with an error, end the others."""
    threading.Thread(target=_watch, args=(ranks,), daemon=True, name="rank-watch").start()


def _watch(ranks: list[subprocess.Popen]) -> None:
    while not all(rank.poll() == 0 for rank in ranks):
        failed = [(number, rank) for number, rank in enumerate(ranks, 1) if rank.poll() not in (None, 0)]
        if failed:
            number, rank = failed[0]
            log.error("rank %d ended with exit code %s: ending the other ranks of this job", number, rank.returncode)
            for other in ranks:
                if other.poll() is None:
                    other.kill()
            return
        time.sleep(2)


@contextmanager
def distributed_job_scope() -> Iterator[None]:
    """Run one job and leave no process group or launcher variables behind.

    Sweep jobs run one after another in the same process; the launcher variables of a
    finished DDP job (LOCAL_RANK, WORLD_SIZE, MASTER_PORT...) would make the next job
    believe its ranks were already started, and its process group is dead.
    """
    environment = dict(os.environ)
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environment)


@contextmanager
def ddp_failures_explained(trainer: pl.Trainer, timeout_min: float | None) -> Iterator[None]:
    """A failed job ends the ranks it started; a collective that timed out or lost a rank
    becomes an error naming this rank, the stage and what to look at."""
    try:
        yield
    except BaseException as error:
        launcher = trainer.strategy.launcher
        if trainer.world_size > 1 and trainer.is_global_zero and getattr(launcher, "procs", None):
            launcher.kill(signal.SIGKILL)
        text = str(error).lower()
        if not isinstance(error, RuntimeError) or trainer.world_size == 1 or not any(s in text for s in LOST):
            raise
        stage = trainer.state.fn.value if trainer.state.fn else "setup"  # fit, validate, test (the stage is reset)
        waited = f"waited more than {timeout_min} min for" if "timed out" in text else "lost"
        raise TrainingError(
            f"rank {trainer.global_rank} of {trainer.world_size} {waited} the other ranks in a collective during "
            f"{stage}: another rank stopped or ended (see its log, train_ddp_process_<k>.log, and stalled_stacks/). "
            "Raise trainer.strategy.timeout_min if a rank is just slow, e.g. building the preprocessing cache. "
            f"({error})"
        ) from error

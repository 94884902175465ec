"""DDP under Hydra: every rank of a job runs in that job's directory, in a sweep too.

Lightning starts ranks 1..N-1 by re-running the launch command. Its Hydra variant replays
`sys.argv` and pins `hydra.run.dir`; in a multirun, argv still holds `-m` and the sweep
lists, so each extra rank would start the whole sweep again in a new folder. The command
built here replays only the job's own overrides (one value per key, no `-m`) and pins the
job's own output directory, so the ranks of a single run and of a sweep job alike join
the job they belong to.

A rank that stops answering must not hang the others forever: collectives time out after
`trainer.strategy.timeout_min` (`ddp_strategy`), and the ranks rank 0 started end with it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl
import torch.distributed
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd
from pytorch_lightning.strategies import DDPStrategy

from boneage.errors import TrainingError
from boneage.lifetime import exit_with
from boneage.lightning_private import start_ranks_with


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
    """Lightning's DDP whose collectives give up after `timeout_min` minutes with an error."""
    return DDPStrategy(timeout=timedelta(minutes=timeout_min), **kwargs)


def route_ranks_to_job_directory() -> None:
    """Make Lightning's subprocess launcher use `job_rank_command` for the ranks it starts, and
    make a rank that was started so end when the rank that started it ends."""
    start_ranks_with(job_rank_command)
    if int(os.environ.get("LOCAL_RANK", 0)) > 0:
        exit_with(os.getppid())


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
def collective_timeouts_named(trainer: pl.Trainer, timeout_min: float | None) -> Iterator[None]:
    """A collective that timed out becomes an error naming this rank, the stage and the fix."""
    try:
        yield
    except RuntimeError as error:
        timed_out = isinstance(error, torch.distributed.DistError) or "timed out" in str(error).lower()
        if not timed_out or trainer.world_size == 1:
            raise
        stage = trainer.state.fn.value if trainer.state.fn else "setup"  # fit, validate, test (the stage is reset)
        raise TrainingError(
            f"rank {trainer.global_rank} of {trainer.world_size} waited more than {timeout_min} min for the other "
            f"ranks in a collective during {stage}: another rank stopped (see its log, train_ddp_process_<k>.log, "
            "or its stalled_stacks/). Raise trainer.strategy.timeout_min if a rank is just slow, e.g. building "
            f"the preprocessing cache. ({error})"
        ) from error

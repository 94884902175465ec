"""Under SLURM: one owner for the requeue signal, and what a requeued job needs to know of itself.

Preemption, a failed node and a time limit all end the same way: SLURM (or submitit, for a time
limit: `hydra.launcher.max_num_timeout`) requeues the job, which starts again with the same job
id in the same run folder. boneage's own stop (SIGTERM: record `interrupted`, keep
`interrupted.ckpt`) and its per-epoch `last.ckpt` make that restart continue where it stopped.
submitit owns the time-limit signal (USR2, `hydra.launcher.signal_delay_s` before the limit);
Lightning's own SLURM auto-requeue, which would answer a signal of its own and requeue the job a
second time, is turned off.
"""

from __future__ import annotations

import os
from typing import Any

from lightning_fabric.plugins.environments import SLURMEnvironment


def slurm_job_id() -> str | None:
    """This process's SLURM job (an array task's own id), or None outside SLURM."""
    return os.environ.get("SLURM_JOB_ID")


def slurm_restarts() -> int:
    """How often SLURM has started this job again (requeued, preempted, its node lost)."""
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    return int(restarts) if restarts.isdigit() else 0


def cluster_plugins() -> list[Any]:
    """The Trainer's cluster environment under SLURM, with Lightning's auto-requeue off."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []

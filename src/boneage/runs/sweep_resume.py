"""What one job of a resumed sweep does (`python -m boneage.resume <sweep folder>`), and a SLURM
job started again by a requeue (preemption, a time limit, a lost node), which does the same.

The sweep is launched again as it was (its overrides and launcher, from `multirun.yaml`)
into its own folder, with `sweep_resume=true`. Hydra gives every job the folder it had,
and each job then looks at what that folder holds:
- a finished run is kept: its recorded metrics are returned, nothing runs;
- a run with `checkpoints/last.ckpt` continues from it, in place;
- a run that failed for a reason that will fail again (a bad value: ConfigError,
  DataError) is listed, not retried, unless `retry_failed=true`;
- anything else (never started, failed or killed before its first checkpoint) starts
  from scratch in that folder, the leftovers of the earlier attempt removed first.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from boneage.config.errors import ConfigError
from boneage.runs.records import RECORD_NAME, RunRecord
from boneage.runtime.slurm import slurm_job_id, slurm_restarts

log = logging.getLogger(__name__)

REPEATING_FAILURES = ("ConfigError", "DataError")  # errors of the job's settings or data: a rerun fails again
KEPT = (".hydra", "train.log")  # the new attempt's own Hydra files and its (appended) log


def requeued_here(run_dir: str | Path) -> bool:
    """This is a SLURM job started again in the folder whose record its earlier start wrote."""
    job = slurm_job_id()
    if not job or slurm_restarts() == 0:
        return False
    process = RunRecord(run_dir).read_if_readable().get("process") or {}
    return str(process.get("slurm_job_id")) == job


def continue_sweep_job(cfg: DictConfig, is_rank_zero: bool) -> dict[str, Any] | None:
    """The recorded metrics of a job that finished before (nothing to run), else None after
    pointing `cfg.ckpt_path` at the job's last checkpoint or clearing its folder for a new start."""
    run_dir = Path(cfg.paths.output_dir)
    record = RunRecord(run_dir).read_if_readable()
    if record.get("status") == "finished":
        log.info("%s finished before: kept", run_dir)
        return record.get("metrics") or {}
    error = record.get("error") or ""
    if error.startswith(REPEATING_FAILURES) and not cfg.get("retry_failed"):
        raise ConfigError(f"{run_dir}: not retried, it failed with {error} (add retry_failed=true to run it again)")
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("%s continues from %s", run_dir, last)
        with open_dict(cfg):
            cfg.ckpt_path = str(last)
    elif is_rank_zero and (run_dir / RECORD_NAME).exists():
        log.info("%s stopped before its first checkpoint: starting it again", run_dir)
        _clear_earlier_attempt(run_dir)
    return None


def _clear_earlier_attempt(run_dir: Path) -> None:
    for path in run_dir.iterdir():
        if path.name in KEPT:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

"""Experiment trackers beside TensorBoard (MLflow, W&B): what a job must do when it ends."""

from __future__ import annotations

from collections.abc import Iterable

from pytorch_lightning.loggers import Logger, WandbLogger


def end_tracker_runs(loggers: Iterable[Logger]) -> None:
    """End the job's W&B run: W&B keeps one run per process, so the next job of a sequential
    sweep would otherwise log into this one. (MLflow's logger ends its run itself.)"""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()

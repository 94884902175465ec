"""Experiment trackers beside TensorBoard (MLflow, W&B): what a job must do when it ends."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from pytorch_lightning.loggers import Logger, WandbLogger


@contextmanager
def trackers_ended(loggers: Iterable[Logger]) -> Iterator[None]:
    """End the job's W&B run when the job ends, however it ends: W&B keeps one run per process, so
    the next job of a sequential sweep would otherwise log into this one. (MLflow's logger ends
    its run itself.)"""
    try:
        yield
    finally:
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()

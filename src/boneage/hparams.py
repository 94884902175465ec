"""The TensorBoard HParams tab: each run's hyperparameters beside its final metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger

COMPARED_GROUPS = ("model", "loss", "optimizer", "scheduler", "data", "trainer", "training")
FINAL_METRICS = ("val/mae", "val/rmse", "val/pearson", "test/mae", "test/rmse", "test/pearson")


def hparam_name(metric: str) -> str:
    return f"hp/{metric.replace('/', '_')}"


def log_run_hparams(cfg: DictConfig, trainer: pl.Trainer) -> None:
    """Declare the run's hyperparameters and final-metric slots (filled by log_final_metrics)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    params = {"seed": cfg.get("seed")}
    for group in COMPARED_GROUPS:
        params |= _flatten(config.get(group) or {}, prefix=group)
    placeholders = {hparam_name(metric): float("nan") for metric in FINAL_METRICS}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=placeholders)
        else:
            logger.log_hyperparams(params)


def log_final_metrics(trainer: pl.Trainer, metrics: Mapping[str, float]) -> None:
    final = {hparam_name(k): v for k, v in metrics.items() if k in FINAL_METRICS}
    for logger in trainer.loggers:
        logger.log_metrics(final, step=trainer.global_step)
        logger.save()


def _flatten(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat |= _flatten(value, name)
        else:
            flat[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat

"""The TensorBoard HParams tab: the settings that tell runs apart, beside their final metrics.

Not every key of the config: the few a user compares runs by (model, lr, weight decay,
dropout, loss, batch, image size, CLAHE, ...), plus every key the command line or the sweep
set for this run. Instantiation keys (`_target_`, `_convert_`) never show.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger

KEY_SETTINGS = (  # shown for every run, in this order
    "model.name",
    "optimizer.lr",
    "optimizer.weight_decay",
    "model.dropout",
    "data.batch_size",
    "data.image_size",
    "data.clahe",
    "trainer.max_epochs",
    "seed",
)
KEY_GROUPS = ("task", "experiment", "loss", "optimizer", "scheduler", "averaging", "data")  # shown by the option chosen


def hparam_name(metric: str) -> str:
    return f"hp/{metric.replace('/', '_')}"


def run_hparams(cfg: DictConfig, choices: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Settings by name: the groups' chosen options, the key settings, then every overridden key."""
    params: dict[str, Any] = {group: str(choices[group] or "none") for group in KEY_GROUPS if group in choices}
    overridden = [override.key_or_group for override in OverridesParser.create().parse_overrides(overrides)]
    for key in [*KEY_SETTINGS, *overridden]:
        key = key.lstrip("+~")
        if key in choices and key not in params:
            params[key] = str(choices[key])
        elif not key.startswith("hydra.") and key not in params:
            value = OmegaConf.select(cfg, key, default=None)
            if not isinstance(value, DictConfig | list) and "_target_" not in key and "_convert_" not in key:
                params[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return params


def final_metrics(module: pl.LightningModule) -> list[str]:
    """The task's val and test metrics (val/mae, test/acc, val/<head>/srcc, ...): the HParams columns."""
    return [name for key, collection in module.metrics.items() if key.startswith(("val_", "test_"))
            for name in collection]  # fmt: skip


def log_run_hparams(cfg: DictConfig, trainer: pl.Trainer, module: pl.LightningModule) -> None:
    """Declare the run's hyperparameters and final-metric slots (filled by log_final_metrics)."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    choices = dict(hydra.runtime.choices) if hydra else {}
    overrides = list(hydra.overrides.task) if hydra else []
    params = run_hparams(cfg, choices, overrides)
    placeholders = {hparam_name(metric): float("nan") for metric in final_metrics(module)}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=placeholders)
        else:
            logger.log_hyperparams(params)


def log_final_metrics(trainer: pl.Trainer, module: pl.LightningModule, metrics: Mapping[str, float]) -> None:
    names = final_metrics(module)
    final = {hparam_name(k): v for k, v in metrics.items() if k in names}
    for logger in trainer.loggers:
        logger.log_metrics(final, step=trainer.global_step)
        logger.save()

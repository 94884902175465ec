"""instantiate(), with boneage's own errors surfacing as themselves, not wrapped by Hydra; the
data and model of a run, built in the order the task needs (the heads learn their classes and
scales from the training rows before the network is shaped by them); and its Trainer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from boneage.config.errors import BoneageError
from boneage.modules.pixels import pixel_stats_of
from boneage.runtime.slurm import cluster_plugins


def build(node: DictConfig, **kwargs: Any) -> Any:
    """The object a config node describes (`_target_`), built with `kwargs` added."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, BoneageError):
            raise error.__cause__ from None
        raise


def build_data_and_module(cfg: DictConfig, **module_options: Any) -> tuple[Any, pl.LightningModule]:
    """The run's datamodule, set up (table read, split, the task fitted to the training rows),
    and its LightningModule with that task's heads."""
    task = build(cfg.task)
    datamodule = build(cfg.data, task=task)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule, build(cfg.module, task=task, **module_options)


def build_trained_module(config: DictConfig, checkpoint: dict[str, Any], **module_options: Any) -> pl.LightningModule:
    """The network of a trained run's `config`, shaped as its checkpoint's task was (the classes
    it learnt), weights not yet loaded."""
    task = build(config.task)
    hparams = checkpoint.get("hyper_parameters") or {}
    task.restore(hparams.get("task_state") or {}, config.data.source)
    return build(config.module, task=task, pixel_stats=pixel_stats_of(hparams), **module_options)


def build_trainer(cfg: DictConfig, callbacks: Sequence[pl.Callback] = (), **overrides: Any) -> pl.Trainer:
    """The run's Trainer: its config's callbacks (then `callbacks`), loggers and plugins (the
    cluster's among them), with `overrides` of trainer keys."""
    built = [*(build(node) for node in (cfg.get("callbacks") or {}).values()), *callbacks]
    loggers = [build(node) for node in (cfg.get("logger") or {}).values()]
    plugins = [*build(cfg.trainer.get("plugins") or []), *cluster_plugins()]
    return build(cfg.trainer, callbacks=built, logger=loggers or False, plugins=plugins, **overrides)

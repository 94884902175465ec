"""Checks made before any training starts: config values, the checkpoint, free disk space.

Each failure names the key or file and what to do; a run that would fail after an hour
(a negative lr, a checkpoint of another model, a disk that fills at epoch 40) fails now.
"""

from __future__ import annotations

import inspect
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from torch import nn

from boneage.config.errors import ConfigError, DiskFullError
from boneage.config.renamed import RENAMED_KEYS
from boneage.modules.backbones import check_model_name
from boneage.modules.fused import clips_under_mixed_precision

log = logging.getLogger(__name__)

CHECKPOINT_COPIES = 3  # best + last + the temporary file of an atomic save


def check_config(cfg: DictConfig) -> None:
    """Values no run can use."""
    check_model_name(cfg.model.name)
    check_source_keys(cfg)
    positive = ("a positive number", lambda v: v > 0)
    positive_int = ("a positive integer", lambda v: isinstance(v, int) and v > 0)
    rules: dict[str, tuple[Any, tuple[str, Callable[[Any], bool]]]] = {
        "optimizer.lr": (cfg.optimizer.get("lr"), positive),
        "optimizer.weight_decay": (cfg.optimizer.get("weight_decay", 0.0), ("zero or more", lambda v: v >= 0)),
        "model.dropout": (cfg.model.dropout, ("in [0, 1)", lambda v: 0 <= v < 1)),
        "data.image_size": (cfg.data.image_size, positive_int),
        "data.batch_size": (cfg.data.batch_size, positive_int),
        "trainer.max_epochs": (cfg.trainer.get("max_epochs", -1), ("-1 or positive", lambda v: v == -1 or v > 0)),
    }
    for key, (value, (expected, valid)) in rules.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not valid(value):
            raise ConfigError(f"{key} must be {expected}, not {value!r}.")
    schedule = cfg.scheduler.get("scheduler")
    if schedule is not None and "_target_" not in schedule:
        raise ConfigError(
            f"scheduler.scheduler sets {sorted(schedule)} but names no scheduler: settings meant for another "
            "scheduler (e.g. from an experiment) were merged onto this one. Pick that scheduler or drop them."
        )
    precision, clip = cfg.trainer.get("precision"), cfg.trainer.get("gradient_clip_val")
    if cfg.optimizer.get("fused") and clips_under_mixed_precision(precision, clip):
        raise ConfigError(
            f"optimizer.fused=true cannot train with trainer.gradient_clip_val={clip} at "
            f"trainer.precision={precision}: a fused optimizer unscales its gradients inside its step, after they "
            "would be clipped. Drop optimizer.fused (training.fused_optimizer fuses wherever it works), or set "
            "trainer.gradient_clip_val=null."
        )


def check_source_keys(cfg: DictConfig) -> None:
    """data.source and data.split set only keys their classes take: labels named by table columns
    (an experiment made for the user's table) cannot come from the built-in demo data, and a key
    of an earlier name (in the user's own config file) is named with its current one."""
    for path in ("data.source", "data.split"):
        node = OmegaConf.select(cfg, path)
        taken = inspect.signature(get_object(node._target_)).parameters
        unknown = sorted(key for key in node if not str(key).startswith("_") and key not in taken)
        if not unknown:
            continue
        hints = [f" {path}.{key} is now called {RENAMED_KEYS[f'{path}.{key}']}." for key in unknown
                 if f"{path}.{key}" in RENAMED_KEYS]  # fmt: skip
        if "columns" in unknown:
            hints.append(" This configuration names its labels by the columns of a table (data.source.columns, as "
                         "experiment=tongue_multitask does): add data=table data.source.path=<your table> "
                         "data.source.image_dir=<its images>.")  # fmt: skip
        name = node._target_.rsplit(".", 1)[-1]
        raise ConfigError(f"{path} ({name}) takes no key(s) {', '.join(unknown)}; it takes {', '.join(taken)}."
                          + "".join(hints))  # fmt: skip


def warn_of_settings_longer_than_the_run(cfg: DictConfig) -> None:
    """Settings that take the whole run leave it without what they were for: a plateau schedule
    that never lowers the lr, weight averaging that never starts, early stopping that never
    stops. Said at start, with the key. (The warm-up is cut to fit the run where it is not set:
    boneage.modules.schedulers; EMA's warm-up follows the step count by its formula.)"""
    epochs = cfg.trainer.get("max_epochs", -1)
    if not isinstance(epochs, int) or epochs <= 0:
        return
    schedule = cfg.scheduler.get("scheduler") or {}
    averaging = cfg.callbacks.get("averaging") or {}
    early_stopping = cfg.callbacks.get("early_stopping") or {}
    swa_start = averaging.get("swa_epoch_start")
    too_long = {
        "scheduler.scheduler.patience": (schedule.get("patience"),
                                         "the lr is never reduced (as a constant lr: what a short run needs)"),
        "callbacks.averaging.swa_epoch_start": (swa_start if swa_start and swa_start >= 1 else None,
                                                "weight averaging never starts"),
        "callbacks.early_stopping.patience": (early_stopping.get("patience"), "early stopping never stops the run"),
    }  # fmt: skip
    for key, (value, consequence) in too_long.items():
        if value is not None and value >= epochs:
            log.warning("%s=%s is not below trainer.max_epochs=%d: %s. Lower it to have it act.", key, value, epochs,
                        consequence)  # fmt: skip


def read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint at `path`, loaded safely (weights only), or a clear error saying why not."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"ckpt_path={path}: no such file.")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
        if "state_dict" not in checkpoint:
            raise KeyError("it holds no state_dict")
    except Exception as error:  # unpickling, truncation, zip errors: all mean "not usable"
        raise ConfigError(f"ckpt_path={path} is not a readable boneage checkpoint ({error}).") from error
    return checkpoint


def check_checkpoint(
    path: str, module: nn.Module, model_name: str, checkpoint: dict[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """The state dict of the checkpoint at `path` (read already: `checkpoint`), once it loads
    safely and fits `module`; otherwise a clear error says why not."""
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(path)
    state = checkpoint["state_dict"]
    trained = (checkpoint.get("hyper_parameters") or {}).get("backbone")
    expected = {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}
    found = {name: tuple(tensor.shape) for name, tensor in state.items()}
    if trained != model_name or expected != found:
        raise ConfigError(
            f"ckpt_path={path} holds a {trained or 'different'} model with other weights than this run's "
            f"model.name={model_name} (or other heads or classes). Resume a run with its own config: "
            "python -m boneage.resume <run dir>."
        )
    return state


def check_free_space(directory: str, module: nn.Module) -> None:
    """Enough room for the checkpoints (weights and optimizer moments) before training starts."""
    checkpoint_bytes = 3 * sum(p.numel() * p.element_size() for p in module.parameters())
    needed = CHECKPOINT_COPIES * checkpoint_bytes + 50 * 2**20  # + logs, events, plots
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise DiskFullError(
            f"disk full: {directory} has {free / 2**20:.0f} MiB free; this run needs about "
            f"{needed / 2**20:.0f} MiB for checkpoints. Free space, or put runs elsewhere "
            "(hydra.run.dir=..., hydra.sweep.dir=...)."
        )

"""Weight averaging (EMA, SWA) on Lightning's WeightAveraging, validated and saved averaged.

Lightning swaps the averaged weights in for validation and writes them to each checkpoint's
`state_dict` (the live weights go to `current_model_state`), so the best checkpoint, the
test and `boneage.evaluate` all use the averaged network. Two adjustments for boneage:
nothing is swapped in or saved before the first average exists (SWA starts late), and once
fit ends the averager steps aside, so that validating or testing a checkpoint uses exactly
the weights in that checkpoint. The private parts of Lightning used here live in
boneage.runtime.lightning_private.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.utilities.types import LRSchedulerConfig
from torch.optim.swa_utils import SWALR

from boneage.runtime.lightning_private import (
    averaged_model,
    copy_average_to_current,
    drop_average,
    swap_average_and_current,
)


class _AveragingDuringFit(WeightAveraging):
    def _has_average(self) -> bool:
        average = averaged_model(self)
        return average is not None and int(average.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            swap_average_and_current(self, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            swap_average_and_current(self, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            copy_average_to_current(self, pl_module)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._has_average():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if averaged_model(self) is not None:  # resuming a fit; otherwise the checkpoint's weights are the ones
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            drop_average(self)


Update = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ema_with_warmup(decay: float, warmup: float | None) -> Update:
    """The EMA update for AveragedModel: the average's weight at its n-th update is
    min(decay, (1 + n) / (warmup + n)), so that early on it follows the network instead of
    keeping its random initial weights (TensorFlow's and timm's EMA warmup); `warmup` None:
    `decay` from the first update. Computed on the device, without a host sync per step."""

    def update(average: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        weight = torch.as_tensor(decay, dtype=torch.float32, device=average.device)
        if warmup is not None:
            n = updates.to(device=average.device, dtype=torch.float32)
            weight = torch.minimum(weight, (1 + n) / (warmup + n))
        return weight * average + (1 - weight) * current

    return update


class EMA(_AveragingDuringFit):
    """Exponential moving average of the weights, updated every `update_every_n_steps`
    optimizer steps from `update_starting_at_step` on, its decay warmed up (ema_with_warmup)."""

    def __init__(
        self,
        decay: float = 0.999,
        warmup: float | None = 10,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(avg_fn=ema_with_warmup(decay, warmup), **kwargs)
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step or 0

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return (
            step_idx is not None
            and step_idx >= self.update_starting_at_step
            and step_idx % self.update_every_n_steps == 0
        )


class SWA(_AveragingDuringFit):
    """Stochastic weight averaging: from `swa_epoch_start` on (an epoch, or below 1 a share of
    max_epochs), the lr follows SWALR (annealed to `swa_lr` over `annealing_epochs`) and the
    weights are averaged after the last batch of every epoch, before its validation."""

    def __init__(
        self,
        swa_epoch_start: int | float,
        swa_lr: float,
        annealing_epochs: int = 5,
        annealing_strategy: str = "cos",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.swa_epoch_start = swa_epoch_start
        self.swa_lr = swa_lr
        self.annealing_epochs = annealing_epochs
        self.annealing_strategy = annealing_strategy

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        share = isinstance(self.swa_epoch_start, float) and self.swa_epoch_start < 1
        self._first_epoch = int(self.swa_epoch_start * trainer.max_epochs) if share else int(self.swa_epoch_start)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return False  # the epoch's last batch updates instead (below), so validation sees this epoch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.is_last_batch and trainer.current_epoch >= self._first_epoch:
            averaged_model(self).update_parameters(pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """From the start epoch on (also after a resume), SWALR replaces the configured schedule."""
        if trainer.current_epoch < self._first_epoch or self._installed(trainer):
            return
        optimizer = trainer.optimizers[0]
        optimizer = optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer
        scheduler = SWALR(
            optimizer,
            swa_lr=self.swa_lr,
            anneal_epochs=self.annealing_epochs,
            anneal_strategy=self.annealing_strategy,
        )
        trainer.lr_scheduler_configs[:] = [LRSchedulerConfig(scheduler, interval="epoch")]

    @staticmethod
    def _installed(trainer: pl.Trainer) -> bool:
        return any(isinstance(config.scheduler, SWALR) for config in trainer.lr_scheduler_configs)

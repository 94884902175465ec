"""Weight averaging (EMA, SWA) on Lightning's WeightAveraging, validated and saved averaged.

Lightning swaps the averaged weights in for validation and writes them to each checkpoint's
`state_dict` (the live weights go to `current_model_state`), so the best checkpoint, the
test and `boneage.evaluate` all use the averaged network. Two adjustments for boneage:
nothing is swapped in or saved before the first average exists (SWA starts late), and once
fit ends the averager steps aside, so that validating or testing a checkpoint uses exactly
the weights in that checkpoint.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging, WeightAveraging
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.utilities.types import LRSchedulerConfig
from torch.optim.swa_utils import SWALR


class _AveragingDuringFit(WeightAveraging):
    def _has_average(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            self._swap_models(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            self._swap_models(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            self._copy_average_to_current(pl_module)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._has_average():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._average_model is not None:  # resuming a fit; otherwise the checkpoint's weights are the ones
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._average_model = None


class EMA(_AveragingDuringFit, EMAWeightAveraging):
    """Exponential moving average of the weights, updated after every optimizer step."""


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
            self._average_model.update_parameters(pl_module)

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

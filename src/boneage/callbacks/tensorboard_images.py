"""TensorBoard's Images tab: what the network is fed, and how its test predictions fall."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from boneage.evaluation.plots import predicted_vs_true_figure


class TensorBoardImages(pl.Callback):
    """A grid of the first augmented training batch, and predicted against true values (in the
    head's unit) on the test images of a task of one value (under DDP, rank 0's share of them).
    Nothing happens without a TensorBoard logger."""

    def __init__(self, n_images: int = 16) -> None:
        self.n_images = n_images
        self._inputs_shown = False
        self._test: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._inputs_shown or not (writer := _writer(trainer)):
            return
        images = batch["image"][: self.n_images].detach().float().cpu()
        grid = make_grid(images, nrow=int(np.ceil(np.sqrt(len(images)))), normalize=True, scale_each=True)
        writer.add_image("inputs/augmented_training_batch", grid, trainer.global_step)
        self._inputs_shown = True

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test = []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if isinstance(outputs, dict) and "predicted" in outputs:
            self._test.append({key: value.detach().float().cpu() for key, value in outputs.items()})

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._test or not (writer := _writer(trainer)):
            return
        true = torch.cat([part["true"] for part in self._test]).numpy()
        predicted = torch.cat([part["predicted"] for part in self._test]).numpy()
        task = pl_module.task
        figure = predicted_vs_true_figure(true, predicted, task.unit or "", task.names[0])
        writer.add_figure("test/predicted_vs_true", figure, trainer.global_step)
        self._test = []


def _writer(trainer: pl.Trainer) -> Any:
    """The SummaryWriter of the run's TensorBoard logger on rank 0, or None."""
    if not trainer.is_global_zero:
        return None
    return next((logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)), None)

"""The LightningModule: a timm backbone and a regression head that predicts age."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.optim import Optimizer
from torchmetrics import (
    MeanAbsoluteError,
    MeanSquaredError,
    MetricCollection,
    PearsonCorrCoef,
    SpearmanCorrCoef,
)

from boneage.errors import ConfigError, TrainingError
from boneage.modules.backbones import create_backbone

STAGES = ("train", "val", "test")


def age_metrics(stage: str) -> MetricCollection:
    """MAE, RMSE, Pearson r and Spearman rho of predicted against true ages."""
    metrics = {
        "mae": MeanAbsoluteError(),
        "rmse": MeanSquaredError(squared=False),
        "pearson": PearsonCorrCoef(),
        "spearman": SpearmanCorrCoef(),
    }
    return MetricCollection(metrics, prefix=f"{stage}/")


class AgeRegressor(pl.LightningModule):
    """Backbone -> dropout -> linear head, trained on standardised ages, reporting ages.

    Standardising the target (by the training set's mean and std, kept as buffers in the
    checkpoint) makes one lr and one Huber delta work whether ages are years or months.
    """

    def __init__(
        self,
        backbone: str,
        pretrained: bool = False,
        weights: str | None = None,
        dropout: float = 0.0,
        loss: nn.Module | None = None,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["loss", "optimizer", "scheduler"], logger=False)
        self.backbone = create_backbone(backbone, pretrained, weights)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.backbone.num_features, 1))
        self.loss = loss if loss is not None else nn.L1Loss()
        self.optimizer_factory = optimizer or torch.optim.AdamW
        self.scheduler_config = scheduler or {}
        self.register_buffer("age_mean", torch.tensor(0.0))
        self.register_buffer("age_std", torch.tensor(1.0))
        self.train_metrics, self.val_metrics, self.test_metrics = (age_metrics(s) for s in STAGES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted ages, in the unit of the training table."""
        return self._standardised(images) * self.age_std + self.age_mean

    def _standardised(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)).squeeze(1).float()

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and hasattr(datamodule, "train_age_stats"):
            mean, std = datamodule.train_age_stats
            self.age_mean.fill_(mean)
            self.age_std.fill_(std)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch["image"])

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        predicted = self._standardised(batch["image"])
        ages = batch["age"].float()
        loss = self.loss(predicted, (ages - self.age_mean) / self.age_std)
        training = stage == "train"
        if training and not torch.isfinite(loss):
            self._stop_on_non_finite(loss)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(predicted.detach() * self.age_std + self.age_mean, ages)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=training,
            on_epoch=True,
            sync_dist=not training,
            batch_size=len(ages),
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss

    def _stop_on_non_finite(self, loss: torch.Tensor) -> None:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        raise TrainingError(
            f"The training loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, "
            f"lr {lr:.3g}). Lower optimizer.lr, keep trainer.gradient_clip_val set, or use "
            "trainer.precision=32-true (or bf16-mixed) if 16-bit overflowed."
        )

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.parameters())
        build = self.scheduler_config.get("scheduler")
        if build is None:
            return optimizer
        scheduler = build(optimizer, **self._schedule_length(build))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.scheduler_config.get("interval", "epoch"),
                "monitor": self.scheduler_config.get("monitor", "val/mae"),
            },
        }

    def _schedule_length(self, build: Callable[..., Any]) -> dict[str, int]:
        """The run-length arguments (`total_steps`, `max_epochs`) that `build` asks for."""
        wanted = inspect.signature(build).parameters
        if not {"total_steps", "max_epochs"} & set(wanted):
            return {}
        total_steps = self.trainer.estimated_stepping_batches
        if math.isinf(total_steps):
            raise ConfigError("This scheduler needs the run's length: set trainer.max_epochs or trainer.max_steps.")
        length = {"total_steps": int(total_steps), "max_epochs": self.trainer.max_epochs}
        return {key: value for key, value in length.items() if key in wanted}

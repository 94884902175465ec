"""The LightningModule: a timm backbone and a regression head that predicts age."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
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
from boneage.modules.backbones import create_backbone, feature_width
from boneage.modules.mixup import Mixup
from boneage.modules.param_groups import parameter_groups

STAGES = ("train", "val", "test")
INPUT_EMBEDDING = 16  # width of the embedding of the table inputs joined to the image features


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
    """Backbone (+ embedded table inputs) -> dropout -> head, trained on standardised ages.

    Standardising the target (by the training set's mean and std, kept as buffers in the
    checkpoint) makes one lr and one Huber delta work whether ages are years or months.
    Table inputs (`extra_inputs`, e.g. sex) are standardised the same way, embedded, and
    joined to the backbone's pooled features.
    """

    def __init__(
        self,
        backbone: str,
        pretrained: bool = False,
        weights: str | None = None,
        dropout: float = 0.0,
        loss: nn.Module | None = None,
        optimizer: functools.partial[Optimizer] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        backbone_kwargs: Mapping[str, Any] | None = None,
        grad_checkpointing: bool = False,
        extra_inputs: Sequence[str] = (),
        backbone_lr_scale: float = 1.0,
        layer_decay: float | None = None,
        mixup_alpha: float = 0.0,
        mixup_prob: float = 1.0,
        channels_last: bool = False,
        compile: bool = False,
        fused_optimizer: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["loss", "optimizer", "scheduler"], logger=False)
        self.backbone = create_backbone(backbone, pretrained, weights, **(backbone_kwargs or {}))
        if grad_checkpointing:
            self.backbone.set_grad_checkpointing(True)
        self.loss = loss if loss is not None else nn.L1Loss(reduction="none")
        self.input_embedding = (
            nn.Sequential(nn.Linear(len(extra_inputs), INPUT_EMBEDDING), nn.ReLU()) if extra_inputs else None
        )
        features = feature_width(self.backbone) + (INPUT_EMBEDDING if extra_inputs else 0)
        outputs = getattr(self.loss, "head_outputs", 1)  # a distribution loss asks for one logit per age bin
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, outputs))
        self.mixup = Mixup(mixup_alpha, mixup_prob)
        self.optimizer_factory = optimizer or functools.partial(torch.optim.AdamW, lr=1e-3)
        self.scheduler_config = scheduler or {}
        self.register_buffer("age_mean", torch.tensor(0.0))
        self.register_buffer("age_std", torch.tensor(1.0))
        self.register_buffer("input_mean", torch.zeros(len(extra_inputs)))
        self.register_buffer("input_std", torch.ones(len(extra_inputs)))
        self.train_metrics, self.val_metrics, self.test_metrics = (age_metrics(s) for s in STAGES)
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if compile:
            self.backbone.compile()  # in place: the state dict keeps its names

    def forward(self, images: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted ages, in the unit of the training table."""
        return self._standardised(images, inputs) * self.age_std + self.age_mean

    def spread(self, images: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The standard deviation of the predicted age distribution, in the age unit (a
        distribution loss such as mean_variance only): how unsure the model says it is."""
        variance = getattr(self.loss, "variance", None)
        if variance is None:
            raise ConfigError("intervals_scale=distribution needs a model trained with loss=mean_variance.")
        return variance(self._outputs(images, inputs)).sqrt() * self.age_std

    def _standardised(self, images: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        return self._decode(self._outputs(images, inputs))

    def _outputs(self, images: torch.Tensor, inputs: torch.Tensor | None) -> torch.Tensor:
        """The head's raw outputs: one value per image, or one logit per age bin."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.backbone(images)
        if self.input_embedding is not None:
            if inputs is None:
                raise ConfigError(f"This model takes the table column(s) {list(self.hparams.extra_inputs)} as input.")
            embedded = self.input_embedding((inputs.float() - self.input_mean) / self.input_std)
            features = torch.cat([features, embedded.to(features.dtype)], dim=1)
        return self.head(features)

    def _decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """Standardised ages from the head's outputs (a distribution loss knows how to read its bins)."""
        decode = getattr(self.loss, "decode", None)
        return decode(outputs) if decode else outputs.squeeze(1).float()

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and hasattr(datamodule, "train_age_stats"):
            mean, std = datamodule.train_age_stats
            self.age_mean.fill_(mean)
            self.age_std.fill_(std)
            if self.input_embedding is not None:
                means, stds = datamodule.train_input_stats
                self.input_mean.copy_(torch.as_tensor(means))
                self.input_std.copy_(torch.as_tensor(stds))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(self.mixup(batch), "train")[0]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        predicted = self._step(batch, "test")[1]
        return {"predicted": predicted, "age": batch["age"].float()}  # for callbacks (TensorBoard's figure)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch["image"], batch.get("inputs"))

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's loss and its predicted ages; metrics and loss are logged for `stage`."""
        ages = batch["age"].float()
        targets = (ages - self.age_mean) / self.age_std
        outputs = self._outputs(batch["image"], batch.get("inputs"))
        loss = self._mean_loss(self._per_image_loss(outputs, targets), batch.get("weight"))
        training = stage == "train"
        if training and not torch.isfinite(loss):
            self._stop_on_non_finite(loss)
        metrics = getattr(self, f"{stage}_metrics")
        predicted = self._decode(outputs).detach() * self.age_std + self.age_mean
        metrics.update(predicted, ages)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=training,
            on_epoch=True,
            sync_dist=not training,
            batch_size=len(ages),
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss, predicted

    def _per_image_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # A distribution loss reads the logits; a pointwise loss the standardised ages.
        predictions = outputs if hasattr(self.loss, "decode") else self._decode(outputs)
        losses = self.loss(predictions, targets)
        if losses.shape != targets.shape:
            raise ConfigError(
                f"{type(self.loss).__name__} returned shape {tuple(losses.shape)}, not one loss per image: "
                "set reduction: none in its loss/ config (boneage averages, weighted by data.balance)."
            )
        return losses

    @staticmethod
    def _mean_loss(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """The batch loss: a plain mean, or weighted by each image's data.balance weight."""
        if weights is None:
            return losses.mean()
        weights = weights.to(losses.dtype)
        return (losses * weights).sum() / weights.sum().clamp_min(1e-12)

    def _stop_on_non_finite(self, loss: torch.Tensor) -> None:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        raise TrainingError(
            f"The training loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, "
            f"lr {lr:.3g}). Lower optimizer.lr, keep trainer.gradient_clip_val set, or use "
            "trainer.precision=32-true (or bf16-mixed) if 16-bit overflowed."
        )

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        optimizer = self.optimizer_factory(params=self._parameter_groups(), **self._fused())
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

    def _parameter_groups(self) -> list[dict[str, Any]]:
        settings = self.optimizer_factory.keywords
        head = [*self.head.parameters(), *(self.input_embedding.parameters() if self.input_embedding else [])]
        return parameter_groups(
            self.backbone,
            head,
            lr=settings["lr"],
            weight_decay=settings.get("weight_decay", 0.0),
            backbone_lr_scale=self.hparams.backbone_lr_scale,
            layer_decay=self.hparams.layer_decay,
        )

    def _fused(self) -> dict[str, bool]:
        """fused=True where it helps and exists: CUDA, and an optimizer that takes the flag."""
        takes_flag = "fused" in inspect.signature(self.optimizer_factory.func).parameters
        wanted = self.hparams.fused_optimizer and self.device.type == "cuda" and takes_flag
        return {"fused": True} if wanted and "fused" not in self.optimizer_factory.keywords else {}

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

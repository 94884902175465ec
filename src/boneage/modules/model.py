"""The LightningModule: a timm backbone and the task's heads (an age, a score, classes...)."""

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

from boneage.config.errors import ConfigError, TrainingError
from boneage.modules.backbones import create_backbone, feature_width
from boneage.modules.fused import fused_flag
from boneage.modules.mixup import Mixup
from boneage.modules.param_groups import parameter_groups
from boneage.modules.pixels import GrayToNormalisedRGB, backbone_stats
from boneage.tasks.base import Task

STAGES = ("train", "val", "test")
INPUT_EMBEDDING = 16  # width of the embedding of the table inputs joined to the image features


class ImageModel(pl.LightningModule):
    """Gray pixels normalised to RGB (with the backbone's own statistics, `pixel_stats`) -> backbone
    (+ embedded table inputs) -> dropout -> one linear layer feeding every head.

    The task (boneage.tasks) says what the outputs mean: each head reads its share of them,
    has its own loss (weighted in the sum) and its own metrics. Regression targets are
    standardised by the training set's mean and std (buffers of the head), so one lr and one
    Huber delta work whether ages are years or months. Table inputs (`extra_inputs`, e.g. sex)
    are standardised the same way, embedded, and joined to the backbone's pooled features.
    The task's classes travel in the checkpoint's hyper-parameters (`task_state`).
    """

    def __init__(
        self,
        backbone: str,
        task: Task,
        pretrained: bool = False,
        weights: str | None = None,
        dropout: float = 0.0,
        optimizer: functools.partial[Optimizer] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        backbone_kwargs: Mapping[str, Any] | None = None,
        grad_checkpointing: bool = False,
        extra_inputs: Sequence[str] = (),
        backbone_lr_scale: float = 1.0,
        layer_decay: float | None = None,
        mixup_alpha: float = 0.0,
        mixup_prob: float = 1.0,
        cutmix_alpha: float = 0.0,
        channels_last: bool = False,
        compile: bool = False,
        fused_optimizer: bool = True,
        pixel_stats: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["task", "optimizer", "scheduler"], logger=False)
        self.task = task
        self.hparams["task_state"] = self.task.state()
        self.backbone = create_backbone(backbone, pretrained, weights, **(backbone_kwargs or {}))
        self.hparams["pixel_stats"] = backbone_stats(self.backbone, pixel_stats)  # kept in the checkpoint
        self.pixels = GrayToNormalisedRGB(**self.hparams["pixel_stats"])
        if grad_checkpointing:
            self.backbone.set_grad_checkpointing(True)
        self.input_embedding = (
            nn.Sequential(nn.Linear(len(extra_inputs), INPUT_EMBEDDING), nn.ReLU()) if extra_inputs else None
        )
        features = feature_width(self.backbone) + (INPUT_EMBEDDING if extra_inputs else 0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, self.task.outputs))
        self.mixup = Mixup(mixup_alpha, mixup_prob, cutmix_alpha, self.task)
        self.optimizer_factory = optimizer or functools.partial(torch.optim.AdamW, lr=1e-3)
        self.scheduler_config = scheduler or {}
        self.register_buffer("input_mean", torch.zeros(len(extra_inputs)))
        self.register_buffer("input_std", torch.ones(len(extra_inputs)))
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": head.metric_collection(self.task.metric_prefix(stage, name))
                for stage in STAGES
                for name, head in self.task.heads.items()
            }
        )
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if compile:
            self.backbone.compile()  # in place: the state dict keeps its names

    def forward(self, images: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The task's answer per image: the age (or score) in the table's unit, or each head's
        values and class probabilities side by side (see Task.decode)."""
        return self.task.decode(self._outputs(images, inputs))

    def spread(self, images: torch.Tensor, inputs: torch.Tensor | None = None, head: str | None = None) -> torch.Tensor:
        """The standard deviation of value head `head`'s predicted distribution (the first head's
        by default), in its unit (a distribution loss such as mean_variance only): how unsure the
        model says it is."""
        name = head or self.task.names[0]
        return self.task.heads[name].spread(self.task.split(self._outputs(images, inputs))[name])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features of (N, 1, H, W) gray images, 0-255."""
        images = self.pixels(images)
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)

    def answers_and_features(
        self, images: torch.Tensor, inputs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`'s answer and the pooled features self-validation compares, from one pass
        (what an export computes)."""
        features = self.features(images)
        return self.task.decode(self._head_outputs(features, inputs)), features

    def _outputs(self, images: torch.Tensor, inputs: torch.Tensor | None) -> torch.Tensor:
        """The raw outputs: each head's value(s) or logits, side by side."""
        return self._head_outputs(self.features(images), inputs)

    def _head_outputs(self, features: torch.Tensor, inputs: torch.Tensor | None) -> torch.Tensor:
        if self.input_embedding is not None:
            if inputs is None:
                raise ConfigError(f"This model takes the table column(s) {list(self.hparams.extra_inputs)} as input.")
            embedded = self.input_embedding((inputs.float() - self.input_mean) / self.input_std)
            features = torch.cat([features, embedded.to(features.dtype)], dim=1)
        return self.head(features)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and self.input_embedding is not None and hasattr(datamodule, "train_input_stats"):
            means, stds = datamodule.train_input_stats
            self.input_mean.copy_(torch.as_tensor(means))
            self.input_std.copy_(torch.as_tensor(stds))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(self.mixup(batch), "train")[0]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        decoded = self._step(batch, "test")[1]
        if decoded.ndim > 1:
            return {}
        (name,) = self.task.names  # one value per image: TensorBoard's predicted-vs-true figure
        return {"predicted": decoded, "true": batch[name].float()}

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch["image"], batch.get("inputs"))

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's loss (each head's mean loss, weighted) and the task's decoded answers;
        metrics and loss are logged for `stage`."""
        outputs = self._outputs(batch["image"], batch.get("inputs"))
        loss = outputs.new_zeros((), dtype=torch.float32)
        decoded = []
        for name, part in self.task.split(outputs).items():
            head = self.task.heads[name]
            losses, present = head.losses(part, batch[name])
            loss = loss + head.weight * self._mean_loss(losses, batch.get("weight"), present)
            values = head.decode(part.detach())
            head.update(self.metrics[f"{stage}_{name}"], values, batch[name])
            decoded.append(values)
        training = stage == "train"
        if training and not torch.isfinite(loss):
            self._stop_on_non_finite(loss)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=training,
            on_epoch=True,
            sync_dist=not training,
            batch_size=len(batch["image"]),
        )
        for name in self.task.names:
            self.log_dict(self.metrics[f"{stage}_{name}"], on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss, self.task.joined(decoded)

    @staticmethod
    def _mean_loss(
        losses: torch.Tensor, weights: torch.Tensor | None, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A head's batch loss: the mean over the images that have its label, weighted by each
        image's data.balance weight if there are any; 0 when no image of the batch has it."""
        keep = torch.ones_like(losses) if present is None else present.to(losses.dtype)
        if weights is not None:
            keep = keep * weights.to(losses.dtype)
        return (torch.where(keep > 0, losses, 0.0) * keep).sum() / keep.sum().clamp_min(1e-12)

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
                "monitor": self.scheduler_config.get("monitor", self.task.monitor),
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
        if self.device.type != "cuda":  # fused kernels are for GPUs; CPU runs keep their arithmetic
            return {}
        return fused_flag(self.optimizer_factory, self.hparams.fused_optimizer, self.trainer.precision,
                          self.trainer.gradient_clip_val)  # fmt: skip

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

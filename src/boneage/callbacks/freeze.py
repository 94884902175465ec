"""Two-stage fine-tuning: the backbone stays fixed for the first epochs while the head learns."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer


class FreezeBackbone(pl.Callback):
    """Keep `pl_module.backbone` unchanged for the first `epochs` epochs, then train it too.

    Gradients still flow (DDP then keeps every rank's gradient buckets alike); they are
    dropped before each optimizer step, so the optimizer skips the backbone: no update,
    no weight decay, no momentum. Its batch-norm layers stay in eval mode, so their
    running statistics do not move either.
    """

    def __init__(self, epochs: int = 0) -> None:
        self.epochs = epochs

    def frozen(self, trainer: pl.Trainer) -> bool:
        return trainer.current_epoch < self.epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.frozen(trainer):
            for module in pl_module.backbone.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        if self.frozen(trainer):
            for parameter in pl_module.backbone.parameters():
                parameter.grad = None

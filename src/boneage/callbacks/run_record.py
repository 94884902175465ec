"""Fills the run record during training: setup, data, per-epoch history, best checkpoint."""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from boneage.runs.plots import plot_training_curves
from boneage.runs.records import RunRecord, now, write_atomically

log = logging.getLogger(__name__)


class RunRecordCallback(pl.Callback):
    """Writes `run.json`, `history.csv` and `training_curves.png` into the run directory.

    The history travels inside checkpoints, so a resumed run keeps the epochs it already had.
    """

    def __init__(self, output_dir: str, plot_every_n_epochs: int = 10) -> None:
        self.record = RunRecord(output_dir)
        self.output_dir = Path(output_dir)
        self.plot_every_n_epochs = plot_every_n_epochs
        self.history: list[dict[str, float]] = []
        self._epoch_started = 0.0
        self._first_step_recorded = False

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        self.record.update(
            data=datamodule.summary() if hasattr(datamodule, "summary") else None,
            model=_model_facts(pl_module),
            training=_training_facts(trainer, datamodule),
        )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.monotonic()

    @rank_zero_only
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """The first step of this launch: start-up time is measured up to here (boneage.bench)."""
        if not self._first_step_recorded:
            self._first_step_recorded = True
            self.record.update(first_step_at=now())

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        for key, value in sorted(trainer.callback_metrics.items()):
            if not key.endswith(("_step", "_epoch")) and not key.startswith(("hp/", "lr-")):
                row[key] = _finite_or_none(float(value))
        row["epoch_time_s"] = round(time.monotonic() - self._epoch_started, 3)
        self.history.append(row)
        self.record.update(history=self.history, best=self._best_epoch(trainer))
        self._write_history_csv()
        if (trainer.current_epoch + 1) % self.plot_every_n_epochs == 0:
            self._plot(trainer)

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._plot(trainer)

    @rank_zero_only
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        try:
            self._plot(trainer)
        except Exception as error:  # a plot that fails too (a full disk) must not hide the run's own error
            log.warning("training_curves.png not updated: %s", error)

    def _best_epoch(self, trainer: pl.Trainer) -> dict[str, float] | None:
        """The epoch the checkpoint callback considers best, from the history (as it judges it)."""
        checkpoint = trainer.checkpoint_callback
        monitor = getattr(checkpoint, "monitor", None)
        scored = [row for row in self.history if row.get(monitor) is not None]
        if not scored:
            return None
        choose = max if checkpoint.mode == "max" else min
        best = choose(scored, key=lambda row: row[monitor])
        return {"epoch": best["epoch"], monitor: best[monitor]}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])

    def _write_history_csv(self) -> None:
        columns = list(dict.fromkeys(key for row in self.history for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.history)
        write_atomically(self.output_dir / "history.csv", text.getvalue())

    def _plot(self, trainer: pl.Trainer) -> None:
        if self.history:
            task = trainer.lightning_module.task
            plot_training_curves(self.history, self.output_dir / "training_curves.png", task.unit or "", task.monitor)


def _model_facts(module: pl.LightningModule) -> dict[str, Any]:
    hparams = dict(module.hparams)
    return hparams | {
        "parameters": sum(p.numel() for p in module.parameters()),
        "trainable_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "loss": ", ".join(type(head.loss).__name__ for head in module.task.heads.values()),
    }


def _training_facts(trainer: pl.Trainer, datamodule: Any) -> dict[str, Any]:
    batch_size = getattr(datamodule, "batch_size", None)
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    schedulers = trainer.lr_scheduler_configs
    return {
        "accelerator": type(trainer.accelerator).__name__,
        "strategy": type(trainer.strategy).__name__,
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "devices_per_node": trainer.num_devices,
        "precision": trainer.precision,
        "batch_size": batch_size,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "effective_batch_size": batch_size * trainer.world_size * trainer.accumulate_grad_batches
        if batch_size
        else None,
        "gradient_clip_val": trainer.gradient_clip_val,
        "max_epochs": trainer.max_epochs,
        "optimizer": type(optimizer).__name__ if optimizer else None,
        "optimizer_params": {k: v for k, v in optimizer.defaults.items() if isinstance(v, int | float | tuple)}
        if optimizer
        else None,
        "lr_scheduler": type(schedulers[0].scheduler).__name__ if schedulers else None,
        "lr_scheduler_interval": schedulers[0].interval if schedulers else None,
    }


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined metric (e.g. Pearson of a constant) is recorded as null."""
    return value if math.isfinite(value) else None

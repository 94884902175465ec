"""A search trial's epochs reported to its study, and the trial stopped when the pruner says so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

if TYPE_CHECKING:
    from boneage.search.trial import StudyTrial


class TrialPruning(pl.Callback):
    """Reports the best `monitor` so far after each validation (global rank zero, which holds
    `trial`) and, if the study's pruner prunes the trial, stops training at the end of this epoch:
    the epoch's checkpoints and history are written as in any other epoch. Every rank stops together.

    The best so far, not the epoch's own value: a trial's result is its best epoch (the checkpoint
    it keeps), and one noisy epoch at a pruner's rung would otherwise decide against a good trial."""

    def __init__(self, trial: StudyTrial | None, monitor: str, mode: str) -> None:
        self.trial = trial
        self.monitor = monitor
        self.better = min if mode == "min" else max
        self.best: float | None = None  # the best value reported so far
        self.pruned_at: dict[str, Any] | None = None  # {"epoch", "value"} once pruned

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return  # the validation of the best checkpoint after fit is not an epoch
        decision = None
        value = trainer.callback_metrics.get(self.monitor)
        if self.trial is not None and self.trial.prunable and value is not None:
            self.best = float(value) if self.best is None else self.better(self.best, float(value))
            epoch = trainer.current_epoch
            if self.trial.report(self.best, epoch):
                decision = {"epoch": epoch, "value": self.best}
        self.pruned_at = trainer.strategy.broadcast(decision, src=0)
        if self.pruned_at is not None:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}  # a requeued trial goes on from its best so far

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]

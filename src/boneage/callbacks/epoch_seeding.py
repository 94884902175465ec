"""Reseeds every epoch from (seed, epoch): an epoch redone after a resume is the same epoch."""

from __future__ import annotations

import pytorch_lightning as pl

from boneage.seeding import derived_seed, seed_generators


class SeedEveryEpoch(pl.Callback):
    """Before an epoch's data is drawn: seed the loader's shuffle and augmentations, and the
    global generators (dropout), from (seed, epoch) only.

    `on_fit_start` covers the first epoch of a run, fresh or resumed, whose loader iterator
    Lightning creates before `on_train_epoch_start`.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._seed_epoch(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._seed_epoch(trainer)

    def _seed_epoch(self, trainer: pl.Trainer) -> None:
        epoch = trainer.current_epoch
        if hasattr(trainer.datamodule, "set_epoch"):
            trainer.datamodule.set_epoch(epoch)
        seed_generators(derived_seed(self.seed, epoch, trainer.global_rank))

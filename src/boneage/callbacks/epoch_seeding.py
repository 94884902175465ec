"""Reseeds every epoch from (seed, epoch): an epoch redone after a resume is the same epoch."""

from __future__ import annotations

import pytorch_lightning as pl

from boneage.runtime.seeding import derived_seed, seed_generators


class SeedEveryEpoch(pl.Callback):
    """At the start of each training epoch, seed the global generators (dropout, mixup)
    from (seed, epoch, rank) only. The loaders' shuffle and augmentations follow from
    (seed, epoch) by themselves (datamodules/samplers.py)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed_generators(derived_seed(self.seed, trainer.current_epoch, trainer.global_rank))

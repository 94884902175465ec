"""On Ctrl-C or SIGTERM, keep the work of the epoch in progress."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl


class CheckpointOnInterrupt(pl.Callback):
    """Saves `interrupted.ckpt` when a run is stopped by Ctrl-C or SIGTERM.

    last.ckpt stays the end of the last complete epoch (the exact resume point); this one
    holds the weights as they were mid-epoch. Single-process runs only: in DDP the other
    ranks may already be gone, and saving is a collective.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt | SystemExit) and trainer.world_size == 1:
            trainer.save_checkpoint(self.dirpath / "interrupted.ckpt")

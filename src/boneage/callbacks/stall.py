"""A run that stops making progress fails, with its stacks written, instead of sleeping.

A rank waiting on a dead peer, a loader worker stuck on a lock, a network file system
that stopped answering: the process sleeps without an error, and a night of sweeps sleeps
with it. This watchdog notes every finished batch; after `minutes` without one it writes
the stack of every thread of this process, and of its loader workers, into
`<run>/stalled_stacks/`, marks the run record `stalled`, ends the loader workers, and makes
the run fail (at once where Python still runs, after `grace_s` seconds by ending the process
where it does not).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from boneage.runs.records import RunRecord, now
from boneage.runtime.stacks import remove_worker_stack_files, write_stacks


class StallWatchdog(pl.Callback):
    """Fails the run after `minutes` without a finished batch (None: never)."""

    def __init__(self, minutes: float | None, output_dir: str, grace_s: float = 10.0) -> None:
        self.seconds = None if minutes is None else minutes * 60
        self.output_dir = Path(output_dir)
        self.grace_s = grace_s
        self._last_progress = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stage = "setup"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.seconds is None:
            return
        self._progress(stage)
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, args=(trainer.global_rank,), daemon=True, name="stall")
        self._thread.start()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stop.set()
        remove_worker_stack_files(os.getpid())

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._progress("training")

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._progress("validation")

    def on_test_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._progress("test")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._progress("the end of a training epoch")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._progress("the end of a validation epoch")

    def _progress(self, stage: str) -> None:
        self._last_progress, self.stage = time.monotonic(), stage

    def _watch(self, rank: int) -> None:
        while not self._stop.wait(min(5.0, self.seconds / 4)):
            idle = time.monotonic() - self._last_progress
            if idle >= self.seconds:
                self._fail(rank, idle)
                return

    def _fail(self, rank: int, idle: float) -> None:
        folder, workers = write_stacks(self.output_dir, rank)
        error = (
            f"stalled: no batch finished for {idle / 60:.1f} min (rank {rank}, after {self.stage}); "
            f"the stacks of its processes are in {folder}. A peer rank or a loader worker is stuck: "
            "see which call they wait in."
        )
        if rank == 0:
            RunRecord(self.output_dir).update(status="stalled", error=error, ended_at=now())
        for worker in workers:  # a stuck worker would hold up the loader's shutdown for seconds each
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        _thread.interrupt_main()  # fails the run where the main thread still runs Python
        time.sleep(self.grace_s)
        os._exit(1)  # it is stuck in native code: end the process; the record says why

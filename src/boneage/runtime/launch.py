"""Parallel sweeps on one machine: each worker process of the joblib launcher owns a device slot.

A slot is a group of `gpus_per_job` GPUs (or, without GPUs, a share of the CPU cores). A
worker takes a free slot at its first job and keeps it for its lifetime: it sets
CUDA_VISIBLE_DEVICES before CUDA starts, so each job sees only its own GPUs, and k workers
per GPU share it when `jobs_per_gpu` is k. Slots are file locks in the sweep directory:
the operating system frees them when a worker exits, however it exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from boneage.runtime.lifetime import exit_with

log = logging.getLogger(__name__)

_held_slot: tuple[int, FileLock] | None = None  # this process's slot, kept for its lifetime


class DeviceSlots(Callback):
    """Hydra callback: pin this worker process to its own device slot before a job starts."""

    def __init__(self, gpus: list[int], gpus_per_job: int, jobs_per_gpu: int, n_jobs: int, lock_dir: str) -> None:
        self.gpus = list(gpus)
        self.gpus_per_job = gpus_per_job
        self.jobs_per_gpu = jobs_per_gpu
        self.n_jobs = n_jobs
        self.lock_dir = Path(lock_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # loky names its own start method in its workers; a loader worker started from here
        # inherits that name and cannot resolve it ("cannot find context for 'loky'").
        multiprocessing.set_start_method("spawn", force=True)
        exit_with(os.getppid())  # a killed sweep takes its workers' jobs with it, instead of leaving them running
        slot = self._claim_slot()
        if self.gpus:
            group = slot % max(1, len(self.gpus) // self.gpus_per_job)
            devices = self.gpus[group * self.gpus_per_job : (group + 1) * self.gpus_per_job]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
            log.info("Job %s: slot %d, CUDA_VISIBLE_DEVICES=%s", config.hydra.job.num, slot, devices)
        else:
            import torch  # here, in the worker: the sweep's launching process runs no job and needs no torch

            threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, (os.cpu_count() or 1) // self.n_jobs)
            torch.set_num_threads(threads)  # the count the user set, as a job of the sequential launcher runs
            log.info("Job %s: slot %d, %d CPU threads", config.hydra.job.num, slot, threads)

    def _claim_slot(self) -> int:
        global _held_slot
        if _held_slot is not None:
            return _held_slot[0]
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        while True:
            for slot in range(self.n_jobs):
                lock = FileLock(self.lock_dir / f"slot{slot}.lock")
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                _held_slot = (slot, lock)
                return slot
            time.sleep(0.5)  # more workers than slots: wait for one to exit

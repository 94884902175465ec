"""A parallel-launcher worker claiming its device slot, for test_sweeps to run in spawned processes.

A module of its own: a spawned process imports the module of its target, and the test module's
imports (pandas, TensorBoard, the report) take seconds of each.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from boneage.runtime.launch import DeviceSlots


def claim_a_slot(lock_dir: str, barrier, results) -> None:
    """Claim a slot of 2 GPUs out of 4 as a worker's first job does, report it, and hold it until the
    other worker has claimed one too."""
    DeviceSlots([0, 1, 2, 3], gpus_per_job=2, jobs_per_gpu=1, n_jobs=2, lock_dir=lock_dir).on_job_start(
        OmegaConf.create({"hydra": {"job": {"num": 0}}})
    )
    results.put(os.environ["CUDA_VISIBLE_DEVICES"])
    barrier.wait()

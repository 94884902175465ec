"""Test-only augmentations: one that never returns (a loader stuck on a dead network share), one
that fails on one DDP rank, and one that is slow."""

from __future__ import annotations

import os
import time

import albumentations as A


class BlockForever(A.ImageOnlyTransform):
    """Blocks every image of rank `rank` (None: of every rank) once the file `once` exists
    (None: from the start), as a read that never returns."""

    def __init__(self, rank: int | None = None, once: str | None = None, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.rank = rank
        self.once = once

    def apply(self, img, **params):
        ranked = self.rank is None or int(os.environ.get("LOCAL_RANK", 0)) == self.rank
        if ranked and (self.once is None or os.path.exists(self.once)):
            while True:
                time.sleep(60)
        return img


class CrashOnRank(A.ImageOnlyTransform):
    """Fails every image of rank `rank`: that rank's process ends with an error."""

    def __init__(self, rank: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.rank = rank

    def apply(self, img, **params):
        if int(os.environ.get("LOCAL_RANK", 0)) == self.rank:
            raise RuntimeError(f"rank {self.rank} cannot read its images (a test's crash)")
        return img


class Pause(A.ImageOnlyTransform):
    """Takes `seconds` per image, as a slow network share does: an epoch long enough to stop mid-run.
    `first_start_only`: only in a SLURM job's first start (SLURM_RESTART_COUNT unset or 0), so that
    a requeued start finishes quickly."""

    def __init__(self, seconds: float = 0.02, first_start_only: bool = False, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.seconds = seconds
        self.first_start_only = first_start_only

    def apply(self, img, **params):
        if not self.first_start_only or int(os.environ.get("SLURM_RESTART_COUNT", 0)) == 0:
            time.sleep(self.seconds)
        return img

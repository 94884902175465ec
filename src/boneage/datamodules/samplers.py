"""Loaders whose batches are a function of (seed, epoch, rank) alone, and that know DDP.

Two things made a resumed run differ from the uninterrupted one once loader workers were
on. A sampler reseeded from an epoch hook shuffles by whatever state its generator has
when workers start prefetching, which can be before the hook. And Lightning creates the
training iterator early (`estimated_stepping_batches`, asked for by the lr schedule, sets
up the loader before a checkpoint is restored) and, when resuming, iterates that one:
its workers have already prefetched epoch 0. So: `EpochSampler` computes each epoch from
`derived_seed(seed, epoch)` when iterated and yields `(epoch, index)`, seeding each
sample's augmentation by its own epoch however far ahead workers run; and `EpochLoader`
starts its iterator, and so its workers' prefetching, at the first batch asked for,
after Lightning has called the sampler's `set_epoch`.

Sharding across DDP ranks is done here (`Trainer(use_distributed_sampler=False)`):
training pads each epoch to a multiple of the world size, as every rank must run the
same number of steps; evaluation does not pad, so every image is scored exactly once
and DDP metrics equal single-device metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from boneage.datamodules.handover import ImageSlots
from boneage.runtime.seeding import derived_seed


class EpochSampler(Sampler[tuple[int, int]]):
    """Training order: a permutation of the rows (or, with `weights`, draws with
    replacement in proportion to them), new each epoch, the same for the same epoch."""

    def __init__(
        self, num_rows: int, seed: int, weights: np.ndarray | None = None, rank: int = 0, world_size: int = 1
    ) -> None:
        self.num_rows = num_rows
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_rows / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        if self.weights is None:
            order = torch.randperm(self.num_rows, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.num_rows, replacement=True, generator=generator)
        padded = order.repeat(math.ceil(len(self) * self.world_size / self.num_rows))[: len(self) * self.world_size]
        for index in padded[self.rank :: self.world_size].tolist():
            yield self.epoch, index


class ShardSampler(Sampler[int]):
    """Evaluation order: the rows in order, rank r taking rows r, r + world_size, ...; no row
    is repeated to even the shards out."""

    def __init__(self, num_rows: int, rank: int = 0, world_size: int = 1) -> None:
        self.rows = range(rank, num_rows, world_size)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows)


class EpochLoader(DataLoader):
    """A DataLoader whose iteration (and its workers' prefetching) starts at the first batch
    asked for, not when the iterator is created; its workers hand images over through reused
    shared memory (see handover.py), so it collates its batches itself."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._slots: ImageSlots | None = None

    def __iter__(self) -> Iterator:
        return _StartedOnFirstBatch(self._start)

    def _start(self) -> tuple[Iterator, ImageSlots | None]:
        if self.num_workers == 0:
            return super().__iter__(), None
        if self._slots is None or not self.persistent_workers:  # one table per set of workers
            self._slots = self.collate_fn = ImageSlots(self.num_workers, self.prefetch_factor + 1, self.pin_memory)
        self._slots.next_iteration()
        return super().__iter__(), self._slots


class _StartedOnFirstBatch:
    def __init__(self, start: Callable[[], tuple[Iterator, ImageSlots | None]]) -> None:
        self._start = start
        self._iterator: Iterator | None = None
        self._slots: ImageSlots | None = None

    def __iter__(self) -> _StartedOnFirstBatch:
        return self

    def __next__(self):
        if self._iterator is None:
            self._iterator, self._slots = self._start()
        batch = next(self._iterator)
        return self._slots.receive(batch) if self._slots else batch

"""Loader workers hand images over through reused shared-memory slots (datamodules/handover.py):
the batches must be exactly those collated in the training process, and a slot is written again
only once its batch has been copied out or its iteration is over."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing
from hydra.utils import instantiate
from torch.utils.data import default_collate

from boneage.datamodules import handover
from boneage.datamodules.handover import ImageSlots, SlotRef
from tests.helpers import TINY


def samples(first: int, count: int = 3) -> list[dict[str, torch.Tensor]]:
    return [
        {"image": torch.full((1, 4, 4), first + i, dtype=torch.uint8), "age": torch.tensor(first + i + 0.5)}
        for i in range(count)
    ]


def test_a_slot_is_written_again_only_after_its_batch_is_copied_out_or_its_iteration_is_over(monkeypatch):
    trainer_side = ImageSlots(num_workers=1, slots_per_worker=2)
    trainer_side.next_iteration()
    worker_side = pickle.loads(ForkingPickler.dumps(trainer_side))  # as a worker gets it: the same shared table
    monkeypatch.setattr(handover, "get_worker_info", lambda: SimpleNamespace(id=0))

    first, second = worker_side(samples(10)), worker_side(samples(20))
    assert [first["image"].slot, second["image"].slot] == [0, 1]
    assert isinstance(first["image"].buffer, torch.Tensor)  # sent once, with the first batch
    full = worker_side(samples(30))
    assert isinstance(full["image"], torch.Tensor)  # both slots taken: the batch travels as a DataLoader's does
    assert torch.equal(trainer_side.receive(full)["image"], default_collate(samples(30))["image"])

    received = trainer_side.receive(first)
    assert torch.equal(received["image"], default_collate(samples(10))["image"])
    assert torch.equal(received["age"], default_collate(samples(10))["age"])
    again = worker_side(samples(40, count=2))  # a shorter batch into the freed slot
    assert isinstance(again["image"], SlotRef) and again["image"].slot == 0 and again["image"].buffer is None
    assert torch.equal(received["image"], default_collate(samples(10))["image"])  # a copy: not overwritten
    assert torch.equal(trainer_side.receive(again)["image"], default_collate(samples(40, count=2))["image"])

    trainer_side.next_iteration()  # the second batch was dropped unseen (an iteration cut short)
    assert [worker_side(samples(50))["image"].slot, worker_side(samples(60))["image"].slot] == [0, 1]


def test_outside_a_worker_batches_are_collated_as_usual():
    slots = ImageSlots(num_workers=1, slots_per_worker=2)
    batch = slots(samples(0))
    assert all(torch.equal(batch[key], default_collate(samples(0))[key]) for key in ("image", "age"))
    assert slots.receive(batch) is batch


def loaders(compose_train, workers: int, persistent: bool = True):
    cfg = compose_train(
        [*TINY, f"data.num_workers={workers}", f"data.persistent_workers={persistent}", "data.prefetch_factor=2"]
    )
    datamodule = instantiate(cfg.data, task=instantiate(cfg.task))
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule.train_dataloader(), datamodule.val_dataloader()


def epoch(loader, number: int, batches: int | None = None) -> list[dict[str, torch.Tensor]]:
    loader.sampler.set_epoch(number)
    return [batch for _, batch in zip(range(batches or len(loader)), loader, strict=False)]


def assert_same_batches(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for batch, reference in zip(got, expected, strict=True):
        assert batch.keys() == reference.keys()
        for key in batch:
            assert batch[key].dtype == reference[key].dtype and torch.equal(batch[key], reference[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("persistent", [True, False])
def test_batches_from_workers_equal_those_collated_in_process_epoch_after_epoch(compose_train, persistent):
    (train, val), (train_in_process, val_in_process) = loaders(compose_train, 2, persistent), loaders(compose_train, 0)
    for number in range(3):
        epoch(train, number, batches=1)  # cut short: what its workers prefetched is dropped unseen
        assert_same_batches(epoch(train, number), epoch(train_in_process, number))
        assert_same_batches(list(val), list(val_in_process))
    before = train.collate_fn  # without persistent workers, each iteration has its own
    counted_before = before.slotted_batches
    assert_same_batches(epoch(train, 3), epoch(train_in_process, 3))
    slots = train.collate_fn
    assert slots.slotted_batches - (counted_before if slots is before else 0) == len(train)  # all through slots
    if persistent:  # the same few buffers served every epoch
        assert slots.buffers_received <= 2 * (2 + 1)

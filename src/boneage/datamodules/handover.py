"""How loader workers hand batches to the training process: images through reused shared memory.

A DataLoader worker puts each batch in new shared memory, which the kernel maps and zeroes page
by page, and passes each tensor of it as a file descriptor of its own: at 256 px that cost over
a quarter of one worker's time (`make bench`). Here each worker keeps a few image buffers (slots) in
shared memory and reuses them: a batch's images are written into a free slot and only the slot's
number travels (with the buffer itself the first time the training process meets it). The
training process copies the images out, which frees the slot. The rest of a batch (targets,
inputs, weights: bytes) travels pickled, as numpy arrays.

Which slots are free lives in a small table shared with the workers: for each slot the
iteration of the loader that filled it (0 when free). A worker writes only into a slot that is
free or was filled in an earlier iteration: a batch the DataLoader drops unseen when an
iteration is cut short (the sanity check, `limit_*_batches`) frees its slot that way. With no
slot free, a batch travels as a DataLoader's own does. The copy out is numpy's, on one thread:
PyTorch's would wake its intra-op threads, which then spin on the cores the workers need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info


@dataclass
class SlotRef:
    """A batch's images: the first `count` images in `slot` of `worker`, as written into the
    slot's buffer `version`; `buffer` is sent until the training process holds that version."""

    worker: int
    slot: int
    version: int
    count: int
    buffer: torch.Tensor | None


class ImageSlots:
    """The collate_fn of one set of loader workers, and the training process's side of it
    (`receive`). Samples are dicts of tensors with the images under "image"."""

    def __init__(self, num_workers: int, slots_per_worker: int, pin_memory: bool = False) -> None:
        # per worker and slot: [iteration that filled it (0: free), buffer version the training process holds]
        self.table = torch.zeros(num_workers, slots_per_worker, 2, dtype=torch.int64).share_memory_()
        self.iteration = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.pin_memory = pin_memory
        self._buffers: dict[int, tuple[int, torch.Tensor]] = {}  # a worker's own: slot -> (version, buffer)
        self._received: dict[tuple[int, int], tuple[int, torch.Tensor]] = {}  # the training process's
        self.buffers_received = 0  # slot buffers the training process has mapped
        self.slotted_batches = 0  # batches whose images came through a slot

    def __getstate__(self) -> dict[str, Any]:
        return {"table": self.table, "iteration": self.iteration, "pin_memory": self.pin_memory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _buffers={}, _received={}, buffers_received=0, slotted_batches=0)

    def next_iteration(self) -> None:
        """Called before each iteration starts: what earlier ones left in slots is now free."""
        self.iteration += 1

    def _entry(self, worker: int, slot: int) -> np.ndarray:
        """[iteration that filled the slot, buffer version received], shared and writable."""
        return self.table[worker, slot].numpy()

    # in a worker

    def __call__(self, samples: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        worker = get_worker_info()
        images = [sample["image"] for sample in samples]
        slot = None if worker is None else self._free_slot(worker.id)
        if slot is None:
            return default_collate(samples)
        version, buffer = self._buffer(slot, len(images), images[0])
        torch.stack(images, out=buffer[: len(images)])
        entry = self._entry(worker.id, slot)
        entry[0] = self.iteration.item()
        ref = SlotRef(worker.id, slot, version, len(images), None if entry[1] == version else buffer)
        rest = {key: np.stack([np.asarray(sample[key]) for sample in samples]) for key in samples[0] if key != "image"}
        return {"image": ref, **rest}

    def _free_slot(self, worker: int) -> int | None:
        filled = self.table[worker, :, 0].numpy()
        current = self.iteration.item()
        return next((slot for slot, iteration in enumerate(filled) if iteration < current), None)

    def _buffer(self, slot: int, count: int, image: torch.Tensor) -> tuple[int, torch.Tensor]:
        """The slot's buffer, replaced by a larger or different one when these images do not fit."""
        version, buffer = self._buffers.get(slot, (0, None))
        if buffer is None or buffer.shape[1:] != image.shape or buffer.dtype != image.dtype or len(buffer) < count:
            version, buffer = version + 1, torch.empty((count, *image.shape), dtype=image.dtype).share_memory_()
            self._buffers[slot] = version, buffer
        return version, buffer

    # in the training process

    def receive(self, batch: Any) -> Any:
        """The batch as the default collate_fn makes it: the images copied out of their slot
        (which frees it), the rest as tensors. A batch that came without a slot is returned as it is."""
        ref = batch["image"]
        if not isinstance(ref, SlotRef):
            return batch
        key = ref.worker, ref.slot
        if ref.buffer is not None:
            self._received[key] = ref.version, ref.buffer
            self._entry(*key)[1] = ref.version
            self.buffers_received += 1
        version, buffer = self._received[key]
        if version != ref.version:
            raise RuntimeError(f"loader slot {key} holds version {version}, the batch is in version {ref.version}")
        images = self._tensor(buffer[: ref.count].numpy())
        self._entry(*key)[0] = 0
        self.slotted_batches += 1
        return {"image": images} | {name: self._tensor(values) for name, values in batch.items() if name != "image"}

    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        """A copy of `values` (copied by numpy: see the module's docstring), pinned when asked."""
        tensor = torch.empty(values.shape, dtype=torch.from_numpy(values).dtype, pin_memory=self.pin_memory)
        tensor.numpy()[...] = values
        return tensor

"""A torch Dataset over the rows of a label table."""

from __future__ import annotations

from collections.abc import Mapping

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from boneage.datamodules.cache import CachedImages
from boneage.datamodules.images import read_grayscale
from boneage.runtime.seeding import derived_seed


class ImageDataset(Dataset):
    """Yields {"image": (1, H, W) uint8 tensor}, each target by its head's name
    (`targets`: an age or score as a float, a class as its index, -1 or NaN where missing),
    plus "inputs" (the encoded table inputs) and "weight" (the loss weight) when given.

    A sample is asked for by its row index, or by `(epoch, index)` as `EpochSampler`
    yields it: with `augmentation_seed`, its random augmentation is then seeded by (seed,
    epoch, index), the same in every run, every resume and whatever the loader workers.
    With `cache`, images come preprocessed from it and `pipeline` holds only what follows.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        pipeline: A.Compose,
        targets: Mapping[str, np.ndarray] | None = None,
        augmentation_seed: int | None = None,
        inputs: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        cache: CachedImages | None = None,
    ) -> None:
        self.images = table["image"].tolist()
        # copied: pandas hands out read-only arrays, which torch warns of on every run
        self.targets = {name: torch.tensor(values) for name, values in (targets or {}).items()}
        self.pipeline = pipeline
        self.augmentation_seed = augmentation_seed
        self.inputs = None if inputs is None or inputs.shape[1] == 0 else torch.as_tensor(inputs)
        self.weights = None if weights is None else torch.as_tensor(weights)
        self.cache = cache

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if self.augmentation_seed is not None:
            self.pipeline.set_random_seed(derived_seed(self.augmentation_seed, epoch, index))
        path = self.images[index]
        image = self.pipeline(image=self.cache[path] if self.cache else read_grayscale(path))["image"]
        sample = {"image": image} | {name: values[index] for name, values in self.targets.items()}
        if self.inputs is not None:
            sample["inputs"] = self.inputs[index]
        if self.weights is not None:
            sample["weight"] = self.weights[index]
        return sample

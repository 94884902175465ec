"""A torch Dataset over the rows of a label table."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from boneage.datamodules.images import read_grayscale


class AgeImageDataset(Dataset):
    """Yields {"image": CHW float tensor, "age": float tensor, "index": row number}."""

    def __init__(self, table: pd.DataFrame, pipeline: A.Compose) -> None:
        self.images = table["image"].tolist()
        self.ages = table["age"].to_numpy(np.float32)
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image = self.pipeline(image=read_grayscale(self.images[index]))["image"]
        return {"image": image, "age": torch.tensor(self.ages[index]), "index": index}

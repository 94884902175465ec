"""Albumentations pipelines: deterministic preprocessing, train-time augmentation, tensors.

Images leave the pipeline as they are cached, uint8 with one gray channel: the model
expands and normalises them on its device (boneage.modules.pixels), which keeps what loader
workers pass through shared memory 12 times smaller than float32 RGB.
"""

from __future__ import annotations

from collections.abc import Iterable

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2


def preprocessing(
    image_size: int, clahe: bool = False, clahe_clip_limit: float = 2.0, clahe_tile_grid: int = 8
) -> list[A.BasicTransform]:
    """Deterministic steps: optional CLAHE at full resolution, then fit into a square.

    The longest side is resized to `image_size` and the rest padded with black, so hands
    keep their proportions whatever the detector's aspect ratio.
    """
    steps: list[A.BasicTransform] = []
    if clahe:
        grid = (clahe_tile_grid, clahe_tile_grid)
        steps.append(A.CLAHE(clip_limit=(clahe_clip_limit, clahe_clip_limit), tile_grid_size=grid, p=1.0))
    steps += [
        A.LongestMaxSize(max_size=image_size, interpolation=cv2.INTER_AREA),
        A.PadIfNeeded(image_size, image_size, border_mode=cv2.BORDER_CONSTANT, fill=0),
    ]
    return steps


def to_tensor() -> list[A.BasicTransform]:
    """The gray uint8 image as a (1, H, W) uint8 tensor."""
    return [ToTensorV2()]


def build_pipeline(preprocess: list[A.BasicTransform], augment: Iterable[A.BasicTransform] = ()) -> A.Compose:
    """The whole per-image pipeline; `augment` runs only for training images."""
    return A.Compose([*preprocess, *augment, *to_tensor()])

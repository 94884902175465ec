"""Albumentations pipelines: deterministic preprocessing, train-time augmentation, tensors.

Grayscale radiographs are replicated to three channels and normalised with the backbone's
ImageNet statistics: that is what a pretrained 3-channel stem expects of a gray image.
"""

from __future__ import annotations

from collections.abc import Iterable

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    """Gray to 3 channels, ImageNet normalisation, CHW float tensor."""
    return [A.ToRGB(num_output_channels=3), A.Normalize(IMAGENET_MEAN, IMAGENET_STD), ToTensorV2()]


def build_pipeline(preprocess: list[A.BasicTransform], augment: Iterable[A.BasicTransform] = ()) -> A.Compose:
    """The whole per-image pipeline; `augment` runs only for training images."""
    return A.Compose([*preprocess, *augment, *to_tensor()])

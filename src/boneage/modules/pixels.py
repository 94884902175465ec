"""The network's first step: compact gray pixels to the normalised 3-channel input of its stem.

Loader workers hand over each image as it is cached, uint8 and one channel (1 byte a pixel
rather than 12 for float32 x 3 channels), so one worker feeds a GPU that many would
otherwise be needed for. The model itself replicates the gray channel and applies the
ImageNet statistics a pretrained stem expects, on its own device, in training, evaluation,
prediction and in the exported file alike. The arithmetic is Albumentations' `Normalize`
(x - mean x 255) x 1 / (std x 255) in float32, so a pixel comes out bit for bit as it did
when the loader normalised it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_PIXEL = 255.0
INPUT_FORMAT = "uint8 gray (N, 1, H, W)"  # what a network takes as its image, as export sidecars record it


class GrayToNormalisedRGB(nn.Module):
    """(N, 1, H, W) gray pixels, 0-255 (uint8, or float where Mixup blended two) -> (N, 3, H, W)
    float32 normalised with the ImageNet statistics."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        shift = np.asarray(mean, np.float32) * MAX_PIXEL
        scale = np.reciprocal(np.asarray(std, np.float32) * MAX_PIXEL)
        # not in the state dict: constants, and checkpoints of earlier versions load unchanged
        self.register_buffer("shift", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.shift) * self.scale

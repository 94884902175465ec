"""The network's first step: compact gray pixels to the normalised 3-channel input of its stem.

Loader workers hand over each image as it is cached, uint8 and one channel (1 byte a pixel
rather than 12 for float32 x 3 channels), so one worker feeds a GPU that many would
otherwise be needed for. The model itself replicates the gray channel and applies the mean and
standard deviation its backbone's pretrained weights were trained with (timm's
`pretrained_cfg`: ImageNet's for most networks, 0.5 for EfficientNet-B1's and ViT's default
weights), on its own device, in training, evaluation, prediction and in the exported file alike.
The statistics travel in the checkpoint and the export's sidecar; a checkpoint of an earlier
version, which holds none, was trained with ImageNet's. The arithmetic is Albumentations'
`Normalize` (x - mean x 255) x 1 / (std x 255) in float32, so a pixel comes out bit for bit as
it did when the loader normalised it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from boneage.config.errors import ConfigError

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
MAX_PIXEL = 255.0
INPUT_FORMAT = "uint8 gray (N, 1, H, W)"  # what a network takes as its image, as export sidecars record it


def backbone_stats(backbone: nn.Module, declared: Mapping[str, Any] | None = None) -> dict[str, list[float]]:
    """The mean and std the backbone's inputs are normalised with: `declared` (model.pixel_stats),
    or those of the weights timm's `pretrained_cfg` names for it."""
    if declared:
        stats = {key: [float(v) for v in declared.get(key) or ()] for key in ("mean", "std")}
        if any(len(values) != 3 for values in stats.values()) or min(stats["std"]) <= 0:
            raise ConfigError(
                f"model.pixel_stats={dict(declared)} must give a mean and a positive std per RGB channel, "
                "e.g. {mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}; or null for the backbone's own."
            )
        return stats
    pretrained = getattr(backbone, "pretrained_cfg", None) or {}
    return {key: [float(v) for v in pretrained.get(key, IMAGENET[key])] for key in ("mean", "std")}


def pixel_stats_of(hparams: Mapping[str, Any]) -> dict[str, list[float]]:
    """The statistics a checkpoint's network was trained with (ImageNet's before they were recorded)."""
    return dict(hparams.get("pixel_stats") or IMAGENET)


class GrayToNormalisedRGB(nn.Module):
    """(N, 1, H, W) gray pixels, 0-255 (uint8, or float where Mixup blended two) -> (N, 3, H, W)
    float32 normalised with `mean` and `std` (per channel, on the 0-1 scale)."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        shift = np.asarray(mean, np.float32) * MAX_PIXEL
        scale = np.reciprocal(np.asarray(std, np.float32) * MAX_PIXEL)
        # not in the state dict: constants recorded in the hyper-parameters (checkpoints of earlier versions load)
        self.register_buffer("shift", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.shift) * self.scale

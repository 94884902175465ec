"""Grad-CAM heat maps (the grad-cam package): where in the radiograph the network looked for
its answer. The target layer is the backbone's last feature stage (timm's `feature_info`), so
one rule serves CNNs (ResNet, EfficientNet, ConvNeXt) and, with their token or channels-last
maps reshaped to images, ViT and Swin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import albumentations as A
import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from boneage.datamodules.images import read_grayscale
from boneage.datamodules.inputs import encode_inputs
from boneage.evaluation.inference import TrainedRun
from boneage.runs.plots import save_figure


class _ImagesOnly(nn.Module):
    """Grad-CAM calls the network with images alone: table inputs (sex) are fixed per batch."""

    def __init__(self, module: nn.Module, inputs: torch.Tensor | None) -> None:
        super().__init__()
        self.module, self.inputs = module, inputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        answers = self.module(images, self.inputs)
        return answers[:, None] if answers.ndim == 1 else answers  # (N, columns): an age is column 0


def heat_maps(run: TrainedRun, rows: pd.DataFrame) -> list[np.ndarray]:
    """One RGB uint8 overlay per image of `rows`: the heat map on the image as the network saw it."""
    grays = [A.Compose(run.preprocess)(image=read_grayscale(path))["image"] for path in rows["image"]]
    images = torch.stack([run.pipeline(image=gray)["image"] for gray in grays])
    inputs = torch.as_tensor(encode_inputs(rows, run.inputs, "the explained images")) if run.inputs else None
    backbone = run.module.backbone
    layer = backbone.get_submodule(backbone.feature_info[-1]["module"])
    network = _ImagesOnly(run.module, inputs)
    with torch.no_grad():
        explained = run.task.explained_columns(network(images))
    with GradCAM(model=network, target_layers=[layer], reshape_transform=_as_image(backbone)) as cam:
        masks = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(column)) for column in explained])
    return [
        show_cam_on_image(np.repeat(gray[..., None], 3, axis=2).astype(np.float32) / 255, mask, use_rgb=True)
        for gray, mask in zip(grays, masks, strict=True)
    ]


def _as_image(backbone: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Transformer activations as (N, C, H, W): ViT tokens without the class token(s) on their
    grid, Swin's channels-last maps permuted; CNN maps pass as they are."""
    prefix = getattr(backbone, "num_prefix_tokens", 0)
    channels_last = getattr(backbone, "output_fmt", "NCHW") == "NHWC"

    def reshape(activations: torch.Tensor) -> torch.Tensor:
        if activations.ndim == 3:
            tokens = activations[:, prefix:]
            side = round(tokens.shape[1] ** 0.5)
            return tokens.reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2)
        return activations.permute(0, 3, 1, 2) if channels_last else activations

    return reshape


def heat_map_grid(
    run: TrainedRun, table: pd.DataFrame, true: str, predicted: str, strata: pd.Series, path: Path
) -> Path:
    """A PNG grid: the 3 best and 3 worst predictions of the value in column `predicted` (against
    column `true`), then one image per stratum of the true values (`strata`, per row of `table`:
    an age bin, a score quantile)."""
    rows = table[table[true].notna()]
    by_error = rows.assign(absolute=(rows[predicted] - rows[true]).abs()).sort_values("absolute")
    chosen = pd.concat([by_error.head(3), by_error.tail(3), rows.groupby(strata[rows.index]).head(1)])
    chosen = chosen.drop_duplicates("image")
    overlays = heat_maps(run, chosen)
    columns = 6
    figure, axes = plt.subplots(
        -(-len(chosen) // columns), columns, figsize=(2.4 * columns, 2.6 * -(-len(chosen) // columns))
    )
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, overlay, (_, row) in zip(np.ravel(axes), overlays, chosen.iterrows(), strict=False):
        axis.imshow(overlay)
        axis.set_title(f"true {row[true]:.1f}, predicted {row[predicted]:.1f}", fontsize=8)
    return save_figure(figure, path)


def write_heat_maps(run: TrainedRun, rows: pd.DataFrame, folder: Path) -> None:
    """One overlay PNG per image of `rows`, named after it (predict explain=true)."""
    folder.mkdir(parents=True, exist_ok=True)
    for overlay, image in zip(heat_maps(run, rows), rows["image"], strict=True):
        cv2.imwrite(str(folder / f"{Path(image).stem}.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))

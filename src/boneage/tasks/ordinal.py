"""Ordinal classes (a grade, a developmental stage): classes in a declared order, where a
neighbouring class is a smaller error than a distant one.

This file and conf/task/ordinal.yaml are the whole of the task: the commands take any task made
of heads (training, evaluation, predict, export, serve), so adding one needs nothing else.
README's "Adding a task" walks through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from boneage.config.errors import ConfigError
from boneage.tasks.base import Task
from boneage.tasks.classification import ClassificationHead
from boneage.tasks.losses import ClassificationLoss


class OrdinalHead(ClassificationHead):
    """A class head whose loss adds `distance_weight` x the expected distance, in steps of the
    order, between the predicted distribution and the true class; evaluated also by the mean
    absolute error of the predicted class, in steps."""

    def __init__(self, classes: list[Any], loss: ClassificationLoss | None = None, distance_weight: float = 1.0,
                 **kwargs: Any) -> None:  # fmt: skip
        if not classes:
            raise ConfigError("An ordinal task needs its classes in their order: task.classes=[first, ..., last].")
        super().__init__(loss, classes=classes, **kwargs)
        self.distance_weight = distance_weight

    def losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses, present = super().losses(outputs, targets)
        steps = torch.arange(len(self.classes), device=outputs.device, dtype=torch.float32)
        true_step = self.soft_targets(targets) @ steps  # a mixed target sits between its classes
        distance = (outputs.float().softmax(dim=1) * (true_step[:, None] - steps).abs()).sum(dim=1)
        return losses + self.distance_weight * distance, present

    def evaluation(
        self, true: pd.Series, decoded: np.ndarray, train: pd.Series, rows: pd.DataFrame, settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        figures = super().evaluation(true, decoded, train, rows, settings)
        present = true.notna().to_numpy()
        steps = np.abs(decoded[present].argmax(axis=1) - self.targets(true[present]))
        return figures | {"mae_steps": float(steps.mean())}


class OrdinalTask(Task):
    """Predicts the column named `target` in data.source.columns, one of `classes` (in order)."""

    def __init__(
        self,
        classes: list[Any],
        loss: ClassificationLoss | None = None,
        target: str = "label",
        distance_weight: float = 1.0,
        monitor: str = "val/acc",
        mode: str = "max",
    ) -> None:
        super().__init__({target: OrdinalHead(classes, loss, distance_weight)}, monitor, mode)

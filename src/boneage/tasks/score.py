"""A continuous score (image quality, a grade on a scale): one regression head, judged by SRCC.

Image-quality work compares models by rank and linear correlation with the mean opinion
score (SRCC, PLCC, KRCC); the checkpoint, early stopping and sweeps follow val SRCC.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from boneage.tasks.base import Task
from boneage.tasks.regression import RegressionHead


class ScoreTask(Task):
    """Predicts the column named `target` in data.source.columns (default `score`)."""

    def __init__(
        self, loss: nn.Module | None = None, target: str = "score", monitor: str = "val/srcc", mode: str = "max",
        unit: str | None = None, range: Sequence[float | None] | None = None,
    ) -> None:  # fmt: skip
        super().__init__({target: RegressionHead(loss, name=target, unit=unit, range=range)}, monitor, mode)

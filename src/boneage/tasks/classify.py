"""Classification: one categorical column, its classes kept as the user wrote them."""

from __future__ import annotations

from typing import Any

from boneage.tasks.base import Task
from boneage.tasks.classification import ClassificationHead
from boneage.tasks.losses import ClassificationLoss


class ClassifyTask(Task):
    """Predicts the column named `target` in data.source.columns (default `label`); `classes`
    declares them (a row with another value is a bad row) or, when null, the training rows do."""

    def __init__(
        self,
        loss: ClassificationLoss | None = None,
        target: str = "label",
        classes: list[Any] | None = None,
        top_k: int = 5,
        monitor: str = "val/acc",
        mode: str = "max",
    ) -> None:
        super().__init__({target: ClassificationHead(loss, classes=classes, top_k=top_k)}, monitor, mode)

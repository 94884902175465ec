"""What a model predicts: a task is a set of heads on one backbone, and how runs are judged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from boneage.config.errors import ConfigError
from boneage.tasks.classification import ClassificationHead
from boneage.tasks.regression import RegressionHead

Head = RegressionHead | ClassificationHead
MODES = ("min", "max")


class Task(nn.Module):
    """Heads by name (each the role of a column in data.source.columns), and the metric that
    picks the best checkpoint, stops early, steps the plateau schedule and ranks runs
    (`monitor`, better when `mode`). A task with one head logs `<stage>/<metric>`; with several,
    `<stage>/<head>/<metric>`. `stratify` names the head the split is stratified by.

    `family` picks what the commands do with the task's answers, from their registries
    (evaluate's figures, predict's columns, serve's answer): "heads" gives each head its own
    figures, its class probabilities tempered and a prediction set or interval per head, and
    suits any task made of these heads; "age" is bone age's clinical evaluation.
    """

    family = "heads"

    def __init__(self, heads: Mapping[str, Head], monitor: str, mode: str, stratify: str | None = None) -> None:
        super().__init__()
        if not heads:
            raise ConfigError("A task needs at least one head.")
        if mode not in MODES:
            raise ConfigError(f"task.mode must be one of {MODES}, not {mode!r}.")
        for name, head in heads.items():
            head.name = name
        self.heads = nn.ModuleDict(heads)
        self.monitor = monitor
        self.mode = mode
        stratify = stratify or next(iter(heads))
        if stratify not in heads:
            raise ConfigError(f"task.stratify={stratify!r} is not one of the heads {list(heads)}.")
        self.stratify = stratify

    def unit(self, age_unit: str) -> str | None:
        """The unit of the answers, where a task of one head has one (an age: the table's `age_unit`)."""
        return next(iter(self.heads.values())).unit(age_unit) if len(self.heads) == 1 else None

    @property
    def names(self) -> list[str]:
        return list(self.heads)

    @property
    def outputs(self) -> int:
        return sum(head.outputs for head in self.heads.values())

    def metric_prefix(self, stage: str, name: str) -> str:
        return f"{stage}/" if len(self.heads) == 1 else f"{stage}/{name}/"

    def fit(self, train: pd.DataFrame) -> None:
        """Learn each head's scale or classes from the training rows."""
        for name, head in self.heads.items():
            head.fit(train[name])

    def state(self) -> dict[str, Any]:
        """What the checkpoint must carry beyond tensors (the classes)."""
        return {name: head.state() for name, head in self.heads.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        for name, head in self.heads.items():
            head.restore(state.get(name, {}))

    def split(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's outputs, head by head."""
        return dict(zip(self.heads, outputs.split([h.outputs for h in self.heads.values()], dim=1), strict=True))

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """Every head's answer side by side (values, class probabilities): what TTA views and
        ensemble members average."""
        return self.joined([self.heads[name].decode(part) for name, part in self.split(outputs).items()])

    @staticmethod
    def joined(decoded: list[torch.Tensor]) -> torch.Tensor:
        """The heads' decoded answers side by side; a task of one value per image answers a vector."""
        answers = torch.cat(decoded, dim=1)
        return answers[:, 0] if answers.shape[1] == 1 else answers

    def explained_columns(self, decoded: torch.Tensor) -> torch.Tensor:
        """Per image, the column of `decode`'s answer a heat map explains: the first head's value,
        or the class it predicts."""
        head = next(iter(self.heads.values()))
        return head.explained(decoded.reshape(len(decoded), -1)[:, : len(head.columns())])

    def per_head(self, decoded: np.ndarray) -> dict[str, np.ndarray]:
        """`decode`'s columns (as an array) back to each head's own: (images, columns)."""
        decoded = decoded.reshape(len(decoded), -1)
        widths = [len(head.columns()) for head in self.heads.values()]
        return dict(zip(self.heads, np.split(decoded, np.cumsum(widths)[:-1], axis=1), strict=True))

    def summary_columns(self) -> list[tuple[str, str]]:
        """(title, metric) of the end-of-run summary: every head's metrics."""
        return [(key.removeprefix("val/"), key.removeprefix("val/")) for key in self.metric_names("val")]

    def metric_names(self, stage: str) -> list[str]:
        return [f"{self.metric_prefix(stage, name)}{metric}" for name, head in self.heads.items()
                for metric in head.metric_names]  # fmt: skip

    def trivial_columns(self, trivial: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[tuple[str, dict]]:
        """(title, value per stage) of the trivial predictor's figures (the numbers among them)."""
        columns = []
        for name, by_stage in trivial.items():
            first = next(iter(by_stage.values()), {})
            for figure, value in first.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    title = figure.replace("_", " ") if len(self.heads) == 1 else f"{name} {figure.replace('_', ' ')}"
                    columns.append((title, {stage: figures[figure] for stage, figures in by_stage.items()}))
        return columns

    def summary_note(self, unit: str) -> str:
        return "(the trivial predictor answers the training set's mean value, or its most common class)"

    def coverage_notes(self, trivial: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
        """A line for each set that lacks some of a head's classes: its class-averaged figures are
        means over the classes it holds, and the missing ones are named."""
        notes = []
        for name, by_stage in trivial.items():
            for stage, figures in by_stage.items():
                if missing := figures.get("classes_missing"):
                    held = figures["classes_present"]
                    notes.append(
                        f"{stage} has no image of {name} class(es) {', '.join(map(repr, missing))}: its balanced_acc "
                        f"and macro_f1 are means over the {held} of {held + len(missing)} classes it holds"
                    )
        return notes

    def prediction_columns(self, decoded: np.ndarray) -> pd.DataFrame:
        parts = [self.heads[name].prediction_columns(values) for name, values in self.per_head(decoded).items()]
        return pd.concat(parts, axis=1)

"""What a model predicts: a task is a set of heads on one backbone, and how runs are judged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from boneage.config.errors import ConfigError
from boneage.tasks.protocol import Head

MODES = ("min", "max")


class SummaryTable(NamedTuple):
    """One head's part of the end-of-run summary: its metrics (`<stage>/<prefix><metric>`) beside
    its trivial predictor's, and the lines that say what they are."""

    title: str  # the head's name, or "" for a task of one head
    prefix: str  # "" or "<head>/": how its metrics are logged
    columns: list[tuple[str, str]]
    trivial: list[tuple[str, dict]]
    notes: list[str]


class Task(nn.Module):
    """Heads by name (each the role of a column in data.source.columns; see tasks/protocol.py),
    and the metric that picks the best checkpoint, stops early, steps the plateau schedule and
    ranks runs (`monitor`, better when `mode`). A task with one head logs `<stage>/<metric>` and
    answers with that head's columns and figures as they are; with several,
    `<stage>/<head>/<metric>`, and each head's answers and figures under its name. `stratify`
    names the head the split is stratified by.
    """

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

    @property
    def unit(self) -> str | None:
        """The unit of the answers, where a task of one head has one (an age: its table's)."""
        return next(iter(self.heads.values())).unit if len(self.heads) == 1 else None

    @property
    def names(self) -> list[str]:
        return list(self.heads)

    @property
    def outputs(self) -> int:
        return sum(head.outputs for head in self.heads.values())

    def metric_prefix(self, stage: str, name: str) -> str:
        return f"{stage}/" if len(self.heads) == 1 else f"{stage}/{name}/"

    def column_prefix(self, name: str) -> str:
        """What a head's columns of predict and evaluate start with: nothing when it is alone."""
        return "" if len(self.heads) == 1 else f"{name}_"

    def fit(self, train: pd.DataFrame, source: Any = None) -> None:
        """Learn each head's scale, classes or unit from the training rows and their source."""
        for name, head in self.heads.items():
            head.fit(train[name], source)

    def state(self) -> dict[str, Any]:
        """What the checkpoint must carry beyond tensors (the classes, the units)."""
        return {name: head.state() for name, head in self.heads.items()}

    def restore(self, state: Mapping[str, Any], source: Any = None) -> None:
        for name, head in self.heads.items():
            head.restore(state.get(name, {}), source)

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

    def metric_names(self, stage: str) -> list[str]:
        return [f"{self.metric_prefix(stage, name)}{metric}" for name, head in self.heads.items()
                for metric in head.metric_names]  # fmt: skip

    def summary(self, trivial: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[SummaryTable]:
        """The end-of-run summary, one table per head; `trivial`: the trivial predictor's
        figures per head and stage (the data module's summary)."""
        tables = []
        for name, head in self.heads.items():
            by_stage = trivial.get(name, {})
            title = "" if len(self.heads) == 1 else name
            prefix = self.metric_prefix("", name).removeprefix("/")
            tables.append(SummaryTable(title, prefix, head.summary_columns(), head.trivial_columns(by_stage),
                                       head.summary_notes(by_stage)))  # fmt: skip
        return tables

    def prediction_columns(self, decoded: np.ndarray) -> pd.DataFrame:
        parts = [self.heads[name].prediction_columns(values) for name, values in self.per_head(decoded).items()]
        return pd.concat(parts, axis=1)

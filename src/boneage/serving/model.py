"""The model behind the server: one run or an ensemble, what it needs, who it is, and its
answers head by head (evaluation/answers.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from boneage.evaluation.answers import Answers


@dataclass
class ServedModel:
    """Members predicting together (weighted mean, with the TTA the server was started with) as
    `answers` makes them trustworthy, with each head's interval or set at `level`."""

    answers: Answers
    level: float | None = None
    batch_sizes: list[int] = field(default_factory=list)  # every batch the network ran, for /model

    @property
    def members(self) -> Sequence[Any]:
        return self.answers.members

    @property
    def unit(self) -> str | None:
        """The unit of a one-head task's answers (an age: its table's)."""
        return self.answers.task.unit

    @property
    def inputs(self) -> list[str]:
        """Table inputs beside the image that some member needs (e.g. sex)."""
        return self.answers.inputs

    def identity(self) -> dict[str, Any]:
        """Which runs and checkpoints answer, and a hash of each run's config (a changed file shows)."""
        members = [member.identity() for member in self.members]
        return {
            "runs": [member["run"] for member in members],
            "checkpoints": [member["checkpoint"] for member in members],
            "config_hash": [member["config_hash"] for member in members],
            "tta": self.answers.tta,
            "weights": self.answers.weights,
        }

    def description(self) -> dict[str, Any]:
        """GET /model: the identity, the unit, the heads, the inputs and each run's recorded metrics."""
        metrics = {member.name: member.metrics for member in self.members}
        served = len(self.batch_sizes)
        heads = {name: head.description() | {"unit": head.unit} for name, head in self.answers.task.heads.items()}
        return self.identity() | {
            "unit": self.unit,
            "heads": heads,
            "inputs": self.inputs,
            "self_validation": None if self.answers.gate is None else self.answers.gate.description(),
            "metrics": metrics,
            "batches": {"run": served, "largest": max(self.batch_sizes, default=0)},
        }

    def predict(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """Each image's answer with the self-validation's verdict (a refused image's answer
        withheld). `rows`: column image, plus the inputs."""
        self.batch_sizes.append(len(rows))
        return self.answers.replies(rows.reset_index(drop=True), self.level)

"""The model behind the server: one run or an ensemble, what it needs, and who it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from boneage.evaluation.ensemble import predict_members
from boneage.evaluation.inference import TrainedRun


@dataclass
class ServedModel:
    """Members predicting together (weighted mean), with the TTA the server was started with."""

    members: Sequence[TrainedRun]
    tta: Sequence[str] | str = "none"
    weights: Sequence[float] | None = None
    batch_sizes: list[int] = field(default_factory=list)  # every batch the network ran, for /model

    @property
    def unit(self) -> str:
        return self.members[0].unit

    @property
    def inputs(self) -> list[str]:
        """Table inputs beside the image that some member needs (e.g. sex)."""
        return sorted({name for member in self.members for name in member.inputs})

    def identity(self) -> dict[str, Any]:
        """Which runs and checkpoints answer, and a hash of each run's config (a changed file shows)."""
        members = [member.identity() for member in self.members]
        return {
            "runs": [member["run"] for member in members],
            "checkpoints": [member["checkpoint"] for member in members],
            "config_hash": [member["config_hash"] for member in members],
            "tta": self.tta,
            "weights": self.weights,
        }

    def description(self) -> dict[str, Any]:
        """GET /model: the identity, the unit, the inputs and each run's recorded metrics."""
        metrics = {member.name: member.metrics for member in self.members}
        served = len(self.batch_sizes)
        return self.identity() | {
            "unit": self.unit,
            "inputs": self.inputs,
            "metrics": metrics,
            "batches": {"run": served, "largest": max(self.batch_sizes, default=0)},
        }

    def predict(self, rows: pd.DataFrame) -> list[float]:
        """Ages for the images of `rows` (column image: a readable file; plus the inputs)."""
        self.batch_sizes.append(len(rows))
        ages, _ = predict_members(self.members, rows.reset_index(drop=True), self.tta, self.weights)
        return [float(age) for age in ages]

"""The model behind the server: one run or an ensemble, what it needs, and who it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from boneage.evaluation.ensemble import predict_members
from boneage.evaluation.inference import TrainedRun
from boneage.evaluation.ood import FeatureDistance
from boneage.evaluation.trust import Trust, spreads_of


@dataclass
class ServedModel:
    """Members predicting together (weighted mean), with the TTA the server was started with, and
    the calibration and interval table fitted on their validation subjects (`trust`)."""

    members: Sequence[TrainedRun]
    tta: Sequence[str] | str = "none"
    weights: Sequence[float] | None = None
    trust: Trust = field(default_factory=Trust.unfitted)
    interval_level: float | None = None  # the interval given with each prediction (needs a fitted `trust`)
    ood: FeatureDistance | None = None  # out-of-distribution flags (from the first member's features)
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

    def predict(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """Each image's age (calibrated where the server was started with calibrate=linear) and,
        with an interval level, its conformal interval. `rows`: column image, plus the inputs."""
        self.batch_sizes.append(len(rows))
        rows = rows.reset_index(drop=True)
        predicted = predict_members(self.members, rows, self.tta, self.weights)
        ages = self.trust.calibrated(predicted.combined)
        answers = [{"predicted_age": float(age)} for age in ages]
        if self.interval_level:
            spreads = spreads_of(self.members, rows, predicted, self.trust.scale)
            lower, upper = self.trust.bounds(ages, rows, self.interval_level, spreads)
            for answer, low, high in zip(answers, lower, upper, strict=True):
                answer["interval"] = {"level": self.interval_level, "lower": float(low), "upper": float(high)}
        if self.ood is not None:
            scores, flags = self.ood.flags(self.members[0].features(rows))
            for answer, score, flag in zip(answers, scores, flags, strict=True):
                answer["out_of_distribution"] = {
                    "flag": bool(flag),
                    "score": float(score),
                    "threshold": self.ood.threshold,
                }
        return answers

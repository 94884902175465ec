"""The model behind the server: one run or an ensemble, what it needs, who it is, and how its
task answers (bone age with its interval; any other task head by head)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from boneage.evaluation.ensemble import MemberPredictions, predict_members
from boneage.evaluation.heads_trust import HeadsTrust
from boneage.evaluation.inference import TrainedRun
from boneage.evaluation.ood import FeatureDistance
from boneage.evaluation.trust import Trust, spreads_of


class Answers(Protocol):
    """A task family's answer for each image of `rows`, from the members' predictions of them."""

    def __call__(self, members: Sequence[Any], rows: pd.DataFrame, predicted: MemberPredictions) -> list[dict]: ...


@dataclass
class AgeAnswers:
    """Each image's age (calibrated where the server was started with calibrate=linear) and, at
    `level`, its conformal interval."""

    trust: Trust
    level: float | None = None

    def __call__(self, members: Sequence[Any], rows: pd.DataFrame, predicted: MemberPredictions) -> list[dict]:
        ages = self.trust.calibrated(predicted.combined)
        answers = [{"predicted_age": float(age)} for age in ages]
        if self.level:
            spreads = spreads_of(members, rows, predicted, self.trust.scale)
            lower, upper = self.trust.bounds(ages, rows, self.level, spreads)
            for answer, low, high in zip(answers, lower, upper, strict=True):
                answer["interval"] = {"level": self.level, "lower": float(low), "upper": float(high)}
        return answers


@dataclass
class HeadAnswers:
    """Each image's answer per head (`heads`): its value, or its class with every class's
    probability (tempered with calibrate=temperature), and at `level` its conformal interval or
    prediction set."""

    trust: HeadsTrust
    level: float | None = None

    def __call__(self, members: Sequence[Any], rows: pd.DataFrame, predicted: MemberPredictions) -> list[dict]:
        return [{"heads": heads} for heads in self.trust.answers(members[0].task, predicted.combined, self.level)]


@dataclass
class ServedModel:
    """Members predicting together (weighted mean), with the TTA the server was started with, and
    their task's `answers` (fitted on their validation subjects)."""

    members: Sequence[TrainedRun]
    answers: Answers
    tta: Sequence[str] | str = "none"
    weights: Sequence[float] | None = None
    ood: FeatureDistance | None = None  # out-of-distribution flags (from the first member's features)
    batch_sizes: list[int] = field(default_factory=list)  # every batch the network ran, for /model

    @property
    def unit(self) -> str | None:
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
        """GET /model: the identity, the unit, the heads, the inputs and each run's recorded metrics."""
        metrics = {member.name: member.metrics for member in self.members}
        served = len(self.batch_sizes)
        heads = {name: head.description() for name, head in self.members[0].task.heads.items()}
        return self.identity() | {
            "unit": self.unit,
            "heads": heads,
            "inputs": self.inputs,
            "metrics": metrics,
            "batches": {"run": served, "largest": max(self.batch_sizes, default=0)},
        }

    def predict(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """Each image's answer and, with flags, whether it is unlike the validation images.
        `rows`: column image, plus the inputs."""
        self.batch_sizes.append(len(rows))
        rows = rows.reset_index(drop=True)
        answers = self.answers(self.members, rows, predict_members(self.members, rows, self.tta, self.weights))
        if self.ood is not None:
            scores, flags = self.ood.flags(self.members[0].features(rows))
            for answer, score, flag in zip(answers, scores, flags, strict=True):
                answer["out_of_distribution"] = {
                    "flag": bool(flag),
                    "score": float(score),
                    "threshold": self.ood.threshold,
                }
        return answers

"""How far each head's answer can be trusted, for every task but bone age (whose clinical
calibration and intervals are evaluation/trust.py): a class head's probabilities tempered
(calibrate=temperature) and its conformal prediction set, a value head's conformal interval.

All of it is fitted on the run's validation images and kept as plain numbers, so that an export
carries it, and predict, export and serve answer alike from the same table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from crepes import ConformalRegressor

from boneage.config.errors import ConfigError
from boneage.evaluation.ensemble import predict_members, shared_rows
from boneage.evaluation.exported import ExportedMember
from boneage.evaluation.prediction_sets import PredictionSets, nonconformity
from boneage.evaluation.temperature import Temperatures, fit_temperature
from boneage.tasks.base import Task

CLASS_CALIBRATIONS = ("none", "temperature")


@dataclass
class HeadsTrust:
    """Per head, what its validation images gave."""

    temperatures: dict[str, float] = field(default_factory=dict)  # class heads (calibrate=temperature)
    set_scores: dict[str, list[float]] = field(default_factory=dict)  # class heads: 1 - p(true class)
    residuals: dict[str, list[float]] = field(default_factory=dict)  # value heads: true - predicted value

    @classmethod
    def fit(
        cls, task: Task, members: Sequence[Any], tta: Any, weights: Any, intervals: bool, calibrate: str = "none"
    ) -> HeadsTrust:
        """Fitted on the members' shared validation images, predicted as they will be (same TTA and
        weights); an export brings the one it was written with. Without intervals or a temperature
        to fit, nothing is predicted."""
        if calibrate not in CLASS_CALIBRATIONS:
            raise ConfigError(
                f"calibrate={calibrate!r} does not apply to a {type(task).__name__} run: its class heads take "
                f"{' or '.join(CLASS_CALIBRATIONS)} (linear calibration is for age runs)."
            )
        if all(isinstance(member, ExportedMember) for member in members):
            return cls(**members[0].trust)
        trust = cls()
        if not intervals and calibrate == "none":
            return trust
        rows = shared_rows(members, "val")
        per_head = task.per_head(predict_members(members, rows, tta, weights).combined)
        for name, head in task.heads.items():
            truth = head.read(rows[name])
            if not head.answers_classes:
                present = truth.notna().to_numpy()
                if intervals and present.any():
                    trust.residuals[name] = (truth.to_numpy(float)[present] - per_head[name][present, 0]).tolist()
                continue
            index = head.targets(truth)
            labelled = index >= 0
            if not labelled.any():
                continue
            if calibrate == "temperature":
                trust.temperatures[name] = fit_temperature(per_head[name][labelled], index[labelled])
            if intervals:
                tempered = trust.tempered({name: per_head[name][labelled]})[name]
                trust.set_scores[name] = nonconformity(tempered, index[labelled]).tolist()
        return trust

    @property
    def temperature_scaling(self) -> Temperatures | None:
        return Temperatures(self.temperatures) if self.temperatures else None

    @cached_property
    def sets(self) -> dict[str, PredictionSets]:
        """Each class head's prediction sets, fitted once from its scores (not for every batch)."""
        return {name: PredictionSets(scores) for name, scores in self.set_scores.items()}

    @cached_property
    def regressors(self) -> dict[str, ConformalRegressor]:
        """Each value head's conformal regressor, fitted once from its residuals."""
        return {name: ConformalRegressor().fit(np.asarray(values)) for name, values in self.residuals.items()}

    def tempered(self, per_head: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return Temperatures(self.temperatures).apply(per_head)

    def applied(self, task: Task, decoded: np.ndarray) -> np.ndarray:
        """`decoded` (every head's columns) with each class head's probabilities tempered."""
        return np.concatenate(list(self.tempered(task.per_head(decoded)).values()), axis=1)

    def bounds(self, name: str, values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The `level` conformal interval around each of a value head's predictions."""
        interval = self.regressors[name].predict_int(values, confidence=level)
        return interval[:, 0], interval[:, 1]

    def columns(self, task: Task, decoded: np.ndarray, levels: Sequence[float]) -> pd.DataFrame:
        """predict's columns: each head's answer (tempered), then its set or interval at each level."""
        decoded = self.applied(task, decoded)
        table = task.prediction_columns(decoded)
        per_head, sets = task.per_head(decoded), self.sets
        for level in levels:
            percent = round(100 * level)
            for name, fitted in sets.items():
                table[f"{name}_set_{percent}"] = fitted.named(
                    fitted.sets(per_head[name], level), task.heads[name].classes
                )
            for name in self.residuals:
                table[f"{name}_lower_{percent}"], table[f"{name}_upper_{percent}"] = self.bounds(
                    name, per_head[name][:, 0], level
                )
        return table

    def answers(self, task: Task, decoded: np.ndarray, level: float | None) -> list[dict[str, Any]]:
        """serve's answer for each image: per head its value, or its class with every class's
        probability, and (at `level`) its interval or prediction set."""
        per_head = task.per_head(self.applied(task, decoded))
        answers: list[dict[str, Any]] = [{} for _ in range(len(decoded))]
        for name, head in task.heads.items():
            values = per_head[name]
            if head.answers_classes:
                chosen = self.sets[name].sets(values, level) if level and name in self.set_scores else None
                for row, answer in enumerate(answers):
                    answer[name] = head.answer(values[row])
                    if chosen is not None:
                        members = [head.classes[i] for i in np.flatnonzero(chosen[row])]
                        answer[name]["set"] = {"level": level, "classes": members}
                continue
            bounds = self.bounds(name, values[:, 0], level) if level and name in self.residuals else None
            for row, answer in enumerate(answers):
                answer[name] = head.answer(values[row])
                if bounds is not None:
                    answer[name]["interval"] = {"level": level, "lower": float(bounds[0][row]),
                                                "upper": float(bounds[1][row])}  # fmt: skip
        return answers

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def by_head(self, task: Task) -> dict[str, dict[str, Any]]:
        """What the sidecar says of each head's calibration and conformal table (the tables: `as_dict`)."""
        described = {}
        for name in task.names:
            temperature = self.temperatures.get(name)
            table = self.set_scores.get(name) or self.residuals.get(name)
            described[name] = {
                "calibration": {"kind": "temperature", "temperature": temperature} if temperature else None,
                "conformal": {"kind": "set" if name in self.set_scores else "interval", "calibrated_on": len(table)}
                if table
                else None,
            }
        return described


AGE_ONLY_KEYS = ("intervals_by", "intervals_scale")  # Mondrian groups and spreads: bone age's intervals


def heads_trust_for(members: Sequence[Any], settings: Any, tta: Any, weights: Any, intervals: bool) -> HeadsTrust:
    """HeadsTrust.fit for the members' task with a command's own keys (calibrate); the keys of bone
    age's intervals are refused by name rather than ignored."""
    for key in AGE_ONLY_KEYS:
        if settings.get(key) is not None:
            raise ConfigError(
                f"{key}={settings.get(key)} shapes bone age's intervals; a {type(members[0].task).__name__} run's "
                f"intervals and prediction sets take neither: leave {key} null."
            )
    return HeadsTrust.fit(members[0].task, members, tta, weights, intervals, settings.calibrate)

"""How far each head's answers can be trusted, fitted on the run's validation subjects (never its
test subjects) and kept as plain numbers, so that an export carries them and predict, evaluate,
export and serve answer alike from the same tables.

A value head (a regression head: an age, a score):
- calibration (`calibrate=linear`, for heads that take it: the age head): the fix for regression
  to the mean (the youngest predicted too old, the oldest too young). The line of predicted on
  true value is fitted and inverted, corrected = (predicted - intercept) / slope (as in brain-age
  work, de Lange & Cole 2020): it undoes the compression at both ends, where regressing true on
  predicted would only lower the overall error.
- intervals: split-conformal (crepes' ConformalRegressor, a well-kept implementation of the
  method) on the calibrated predictions' residuals; with `intervals_by` they are Mondrian, one
  residual table per group the head defines (the age head: sex, or predicted-age bin), so each
  group gets its own coverage. With `intervals_scale` they are normalised by the model's own
  spread (ensemble disagreement, TTA spread, or a mean-variance model's predicted deviation):
  narrow where it agrees with itself, wide where it does not, with the same coverage guarantee.
  Answers and bounds stay within the head's declared range (an age is never negative).

A class head: its probabilities tempered (`calibrate=temperature`) and its conformal prediction
set (evaluation/prediction_sets.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from crepes import ConformalRegressor

from boneage.config.errors import ConfigError
from boneage.evaluation.ensemble import MemberPredictions, predict_members, shared_rows
from boneage.evaluation.exported import ExportedMember
from boneage.evaluation.inference import TrainedRun
from boneage.evaluation.prediction_sets import PredictionSets, nonconformity
from boneage.evaluation.site import SiteCorrection
from boneage.evaluation.temperature import fit_temperature, tempered
from boneage.tasks.base import Task
from boneage.tasks.protocol import Head

CALIBRATIONS = ("linear", "temperature")  # beside none; each head takes those in its `calibrations`
SCALES = (None, "ensemble", "tta", "distribution")


@dataclass
class ValueTrust:
    """A value head's calibration line and residual table."""

    kind: ClassVar[str] = "value"
    slope: float = 1.0
    intercept: float = 0.0
    residuals: list[float] = field(default_factory=list)  # true - calibrated prediction, on the calibration images
    groups: list[str] | None = None  # their Mondrian group, or None
    by: str | None = None
    bin_width: float = 1.0  # of the predicted-value bins the head may group by
    scale: str | None = None  # what normalises the residuals (SCALES), or None
    floor: float = 0.0  # added to every spread: images whose views or members agree exactly still get a width
    spreads: list[float] | None = None  # the calibration images' spreads

    def calibrated(self, predicted: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(predicted, float) + self.intercept

    def applied(self, head: Head, values: np.ndarray) -> np.ndarray:
        """The head's values calibrated, within its range."""
        return head.clipped(self.calibrated(values))

    @property
    def has_table(self) -> bool:
        """Whether there is a residual table to answer intervals with."""
        return bool(self.residuals)

    @cached_property
    def regressor(self) -> ConformalRegressor:
        """The conformal regressor of the residual table, fitted once (not for every batch)."""
        groups = None if self.groups is None else np.asarray(self.groups)
        return ConformalRegressor().fit(np.asarray(self.residuals), sigmas=self._sigmas(self.spreads), bins=groups)

    def bounds(
        self, head: Head, predicted: np.ndarray, rows: pd.DataFrame, level: float, spreads: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `level` interval around each calibrated prediction (`spreads`: the images' own, with a scale)."""
        if self.scale and spreads is None:
            raise ConfigError(f"these intervals are scaled by the {self.scale} spread: give the images' spreads.")
        groups = head.group_of(rows, predicted, self.by, self.bin_width) if self.by else None
        low, high = head.range
        interval = self.regressor.predict_int(
            np.asarray(predicted, float), sigmas=self._sigmas(spreads), bins=groups, confidence=level,
            y_min=-np.inf if low is None else low, y_max=np.inf if high is None else high,
        )  # fmt: skip
        return interval[:, 0], interval[:, 1]

    def _sigmas(self, spreads: Sequence[float] | None) -> np.ndarray | None:
        return None if not self.scale else np.asarray(spreads, float) + self.floor

    def describe(self) -> dict[str, Any]:
        """What the sidecar says of it."""
        linear = (self.slope, self.intercept) != (1.0, 0.0)
        return {
            "calibration": {"kind": "linear", "slope": self.slope, "intercept": self.intercept} if linear else None,
            "conformal": {"kind": "interval", "calibrated_on": len(self.residuals), "grouped_by": self.by,
                          "scaled_by": self.scale} if self.residuals else None,
        }  # fmt: skip


@dataclass
class ClassTrust:
    """A class head's temperature and the nonconformity scores of its prediction sets."""

    kind: ClassVar[str] = "class"
    by: ClassVar[None] = None  # prediction sets are not grouped
    temperature: float | None = None
    set_scores: list[float] = field(default_factory=list)  # 1 - p(true class)

    def tempered(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities if self.temperature is None else tempered(probabilities, self.temperature)

    def applied(self, head: Head, probabilities: np.ndarray) -> np.ndarray:
        """The head's probabilities, tempered."""
        return self.tempered(probabilities)

    @property
    def has_table(self) -> bool:
        """Whether there are set scores to answer prediction sets with."""
        return bool(self.set_scores)

    @cached_property
    def sets(self) -> PredictionSets:
        """The prediction sets, fitted once from the scores (not for every batch)."""
        return PredictionSets(self.set_scores)

    def describe(self) -> dict[str, Any]:
        return {
            "calibration": {"kind": "temperature", "temperature": self.temperature} if self.temperature else None,
            "conformal": {"kind": "set", "calibrated_on": len(self.set_scores)} if self.set_scores else None,
        }


HeadTrust = ValueTrust | ClassTrust


@dataclass
class TaskTrust:
    """Each head's trust, by name."""

    heads: dict[str, HeadTrust]
    site: SiteCorrection | None = None  # an export fitted to a site: its age head's per-sex correction

    @classmethod
    def unfitted(cls, task: Task) -> TaskTrust:
        """No correction and no tables: the answers pass as the network gives them (no intervals)."""
        return cls({name: ClassTrust() if head.answers_classes else ValueTrust() for name, head in task.heads.items()})

    def applied(self, task: Task, decoded: np.ndarray, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Each head's answers for `rows`: values calibrated and within the head's range,
        probabilities tempered; fitted to a site, the age corrected by each row's sex."""
        per_head = task.per_head(decoded)
        answers = {name: self.heads[name].applied(task.heads[name], values) for name, values in per_head.items()}
        if self.site is not None:
            answers[self.site.head] = self.site.applied(task.heads[self.site.head], answers[self.site.head], rows)
        return answers

    def has_table(self, name: str) -> bool:
        """Whether the head has an interval or set table to answer with."""
        return self.heads[name].has_table

    def as_dict(self) -> dict[str, Any]:
        stored = {"heads": {name: {"kind": trust.kind, **asdict(trust)} for name, trust in self.heads.items()}}
        return stored | ({"site": self.site.as_dict()} if self.site else {})

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any], task: Task) -> TaskTrust:
        """An export's tables; those of an earlier version too (one age table, or per-kind tables)."""
        if "heads" in stored:
            kinds = {ValueTrust.kind: ValueTrust, ClassTrust.kind: ClassTrust}
            site = SiteCorrection.from_dict(stored["site"]) if "site" in stored else None
            return cls({name: kinds[table["kind"]](**{k: v for k, v in table.items() if k != "kind"})
                        for name, table in stored["heads"].items()}, site)  # fmt: skip
        if "slope" in stored:  # an age export of an earlier version: one Trust for its one head
            names = [f.name for f in fields(ValueTrust)]
            return cls({task.names[0]: ValueTrust(**{k: v for k, v in stored.items() if k in names})})
        trust = cls.unfitted(task)  # the per-kind tables of an earlier version's export
        for name, table in trust.heads.items():
            if isinstance(table, ClassTrust):
                table.temperature = stored.get("temperatures", {}).get(name)
                table.set_scores = stored.get("set_scores", {}).get(name, [])
            else:
                table.residuals = stored.get("residuals", {}).get(name, [])
        return trust

    def by_head(self) -> dict[str, dict[str, Any]]:
        """What the sidecar says of each head's calibration and conformal table."""
        return {name: trust.describe() for name, trust in self.heads.items()}


def trust_for(
    members: Sequence[Any], settings: Any, tta: Sequence[str] | str, weights: Sequence[float] | None, intervals: bool
) -> TaskTrust:
    """Each head's trust for a command's keys (calibrate, intervals_by, intervals_scale,
    age_bin_width), fitted on the members' shared validation subjects, predicted as they will be
    (same TTA and weights); an export brings the one it was written with. Without intervals or a
    calibration to fit, nothing is predicted."""
    task = members[0].task
    calibrate = checked_calibrations(task, settings.get("calibrate", "none"))
    by, scale = settings.get("intervals_by"), settings.get("intervals_scale")
    check_interval_settings(task, by, scale)
    if all(isinstance(member, ExportedMember) for member in members):
        return TaskTrust.from_dict(members[0].trust, task)
    if not intervals and not calibrate:
        return TaskTrust.unfitted(task)
    rows = shared_rows(members, "val")
    predicted = predict_members(members, rows, tta, weights)
    spreads = spreads_of(members, rows, predicted, scale)
    trust = {}
    for name, values in task.per_head(predicted.combined).items():
        head = task.heads[name]
        truth = head.read(rows[name])
        if head.answers_classes:
            trust[name] = fit_class_trust(head, truth, values, "temperature" in calibrate)
            continue
        present = truth.notna().to_numpy()
        trust[name] = fit_value_trust(
            truth[present], values[present, 0], rows[present],
            "linear" if "linear" in calibrate and "linear" in head.calibrations else "none",
            by if by in head.interval_groups else None, settings.get("age_bin_width", 1.0), scale,
            None if spreads is None else spreads[name][present], head,
        )  # fmt: skip
    return TaskTrust(trust)


def checked_calibrations(task: Task, calibrate: str | Sequence[str]) -> list[str]:
    """`calibrate` (none, a method, or a list of them) as the methods asked for, each taken by
    some head of `task`."""
    methods = [calibrate] if isinstance(calibrate, str) else list(calibrate)
    methods = [method for method in methods if method != "none"]
    taken = {name: head.calibrations for name, head in task.heads.items()}
    for method in methods:
        if method not in CALIBRATIONS:
            raise ConfigError(
                f"calibrate={method!r} is not one of none, {', '.join(CALIBRATIONS)} (or a list of them)."
            )
        if not any(method in methods_taken for methods_taken in taken.values()):
            offered = "; ".join(f"{name}: {' or '.join(('none', *m))}" for name, m in taken.items())
            raise ConfigError(
                f"calibrate={method!r}: no head of this {type(task).__name__} run takes it ({offered}). Linear "
                "calibration is for age heads, temperature scaling for class heads."
            )
    return methods


def check_interval_settings(task: Task, by: str | None, scale: str | None) -> None:
    """`intervals_by` must be a grouping some head's intervals take; `intervals_scale` needs value heads."""
    if scale not in SCALES:
        raise ConfigError(f"intervals_scale={scale!r} is not one of {list(SCALES)}.")
    groupings = sorted({group for head in task.heads.values() for group in head.interval_groups})
    if by is not None and by not in groupings:
        taken = f"its heads group by {' or '.join(groupings)}" if groupings else "none of its heads groups them"
        raise ConfigError(
            f"intervals_by={by!r} does not apply to this {type(task).__name__} run's intervals ({taken}): leave "
            "intervals_by null, or group an age head's intervals by sex or age_bin."
        )
    if scale is not None and all(head.answers_classes for head in task.heads.values()):
        raise ConfigError(
            f"intervals_scale={scale} scales the intervals of value heads; this {type(task).__name__} run's heads "
            "answer classes, whose prediction sets take no scale: leave intervals_scale null."
        )


def fit_value_trust(
    true: Sequence[float], predicted: Sequence[float], rows: pd.DataFrame, calibrate: str, by: str | None,
    bin_width: float, scale: str | None = None, spreads: Sequence[float] | None = None, head: Head | None = None,
) -> ValueTrust:  # fmt: skip
    """Calibration and residual table from the validation images' true and predicted values (and,
    with a `scale`, their spreads); `head` groups them `by` (the age head: sex, age bin)."""
    true, predicted = np.asarray(true, float), np.asarray(predicted, float)
    slope, intercept = _inverted_line(true, predicted) if calibrate == "linear" else (1.0, 0.0)
    trust = ValueTrust(slope, intercept, by=by, bin_width=bin_width)
    calibrated = trust.calibrated(predicted)
    trust.residuals = (true - calibrated).tolist()
    if by is not None:
        trust.groups = head.group_of(rows, calibrated, by, bin_width).tolist()
    if scale:
        trust.scale, trust.spreads = scale, np.asarray(spreads, float).tolist()
        trust.floor = 0.1 * float(np.median(trust.spreads)) + 1e-6
    return trust


def fit_class_trust(head: Head, truth: pd.Series, probabilities: np.ndarray, temperature: bool) -> ClassTrust:
    """The temperature (where asked) and the set scores, from the labelled validation images."""
    index = head.targets(truth)
    labelled = index >= 0
    trust = ClassTrust()
    if labelled.any():
        if temperature:
            trust.temperature = fit_temperature(probabilities[labelled], index[labelled])
        trust.set_scores = nonconformity(trust.tempered(probabilities[labelled]), index[labelled]).tolist()
    return trust


def _inverted_line(true: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of corrected = (predicted - b) / a, where predicted = a x true + b."""
    a, b = np.polyfit(true, predicted, 1)
    if a < 0.1:
        raise ConfigError(
            f"calibrate=linear: on the validation subjects the predictions hardly follow the true age (slope {a:.3f}); "
            "inverting that line would multiply the noise. Train the model further, or use calibrate=none."
        )
    return float(1 / a), float(-b / a)


def spreads_of(
    members: Sequence[Any], rows: pd.DataFrame, predicted: MemberPredictions, scale: str | None
) -> dict[str, np.ndarray] | None:
    """Each value head's spread by `scale` for each image of `rows`, from the `predicted` answers
    already made of them: the members' disagreement, its TTA views' disagreement (averaged over
    members), or (one more pass) the mean-variance model's own deviation (averaged over members)."""
    if scale is None:
        return None
    task = members[0].task
    names = [name for name, head in task.heads.items() if not head.answers_classes]
    if scale == "ensemble":
        if len(members) < 2:
            raise ConfigError("intervals_scale=ensemble needs an ensemble (ensemble=[...]) of two or more runs.")
        values = [task.per_head(answers) for answers in predicted.per_member.values()]
        return {name: np.std([value[name][:, 0] for value in values], axis=0) for name in names}
    if scale == "tta":
        views = list(predicted.views.values())
        if len(views[0]) < 2:
            raise ConfigError("intervals_scale=tta needs test-time views: tta=zoom, shift or a list.")
        per_view = [[task.per_head(view) for view in member] for member in views]
        return {name: np.mean([np.std([view[name][:, 0] for view in member], axis=0) for member in per_view], axis=0)
                for name in names}  # fmt: skip
    if not all(isinstance(member, TrainedRun) for member in members):
        raise ConfigError("intervals_scale=distribution needs the trained runs: an export answers the values only.")
    return {name: np.mean([member.spread(rows, name) for member in members], axis=0) for name in names}

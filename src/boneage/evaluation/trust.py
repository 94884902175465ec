"""What a clinician needs beside the predicted age: a bias correction and an interval with a
coverage guarantee, both fitted on the run's validation subjects (never its test subjects).

- Calibration (`calibrate=linear`): the fix for regression to the mean (the youngest predicted
  too old, the oldest too young). The line of predicted on true age is fitted and inverted,
  corrected = (predicted - intercept) / slope (as in brain-age work, de Lange & Cole 2020):
  it undoes the compression at both ends, where regressing true on predicted age would only
  lower the overall error.
- Intervals: split-conformal (crepes' ConformalRegressor, a well-kept implementation of the
  method) on the calibrated predictions' residuals; with `intervals_by` they are Mondrian,
  one residual table per sex or per predicted-age bin, so each group gets its own coverage.
  With `intervals_scale` they are normalised by the model's own spread (ensemble disagreement,
  TTA spread, or a mean-variance model's predicted deviation): narrow where it agrees with
  itself, wide where it does not, with the same coverage guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from crepes import ConformalRegressor

from boneage.config.errors import ConfigError
from boneage.evaluation.ensemble import MemberPredictions, predict_members, shared_rows
from boneage.evaluation.exported import ExportedMember
from boneage.evaluation.inference import TrainedRun

CALIBRATIONS = ("none", "linear")
GROUPINGS = (None, "sex", "age_bin")
SCALES = (None, "ensemble", "tta", "distribution")


@dataclass
class Trust:
    """The fitted correction and residual table, as plain numbers (stored with exports)."""

    slope: float
    intercept: float
    residuals: list[float]  # true - calibrated prediction, on the calibration images
    groups: list[str] | None  # their Mondrian group, or None
    by: str | None
    bin_width: float
    scale: str | None = None  # what normalises the residuals (SCALES), or None
    floor: float = 0.0  # added to every spread: images whose views or members agree exactly still get a width
    spreads: list[float] | None = None  # the calibration images' spreads

    @classmethod
    def unfitted(cls, bin_width: float = 1.0) -> Trust:
        """No correction and no residual table: the ages pass unchanged (no intervals)."""
        return cls(1.0, 0.0, [], None, None, bin_width)

    def calibrated(self, predicted: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(predicted, float) + self.intercept

    def bounds(
        self, predicted: np.ndarray, rows: pd.DataFrame, level: float, spreads: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `level` interval around each calibrated prediction (`spreads`: the images' own, with a scale)."""
        if self.scale and spreads is None:
            raise ConfigError(f"these intervals are scaled by the {self.scale} spread: give the images' spreads.")
        regressor = ConformalRegressor()
        calibration_groups = None if self.groups is None else np.asarray(self.groups)
        regressor.fit(np.asarray(self.residuals), sigmas=self._sigmas(self.spreads), bins=calibration_groups)
        groups = group_of(rows, predicted, self.by, self.bin_width)
        interval = regressor.predict_int(  # an age is never negative: the lower bound stops at 0
            np.asarray(predicted, float), sigmas=self._sigmas(spreads), bins=groups, confidence=level, y_min=0.0
        )
        return interval[:, 0], interval[:, 1]

    def _sigmas(self, spreads: Sequence[float] | None) -> np.ndarray | None:
        return None if not self.scale else np.asarray(spreads, float) + self.floor

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def by_head(self, task: Any) -> dict[str, dict[str, Any]]:
        """What the sidecar says of the age head's calibration and intervals (the tables: `as_dict`)."""
        (name,) = task.names
        linear = (self.slope, self.intercept) != (1.0, 0.0)
        return {name: {
            "calibration": {"kind": "linear", "slope": self.slope, "intercept": self.intercept} if linear else None,
            "conformal": {"kind": "interval", "calibrated_on": len(self.residuals), "grouped_by": self.by,
                          "scaled_by": self.scale} if self.residuals else None,
        }}  # fmt: skip


def fit_trust(
    true: Sequence[float],
    predicted: Sequence[float],
    rows: pd.DataFrame,
    calibrate: str,
    by: str | None,
    bin_width: float,
    scale: str | None = None,
    spreads: Sequence[float] | None = None,
) -> Trust:
    """Calibration and residual table from the validation subjects' true and predicted ages
    (and, with a `scale`, their spreads)."""
    if calibrate not in CALIBRATIONS:
        class_heads = " (temperature scaling is for class heads)" if calibrate == "temperature" else ""
        raise ConfigError(f"calibrate={calibrate!r} is not one of {list(CALIBRATIONS)} for an age run{class_heads}.")
    if by not in GROUPINGS:
        raise ConfigError(f"intervals_by={by!r} is not one of {list(GROUPINGS)}.")
    if scale not in SCALES:
        raise ConfigError(f"intervals_scale={scale!r} is not one of {list(SCALES)}.")
    true, predicted = np.asarray(true, float), np.asarray(predicted, float)
    slope, intercept = _inverted_line(true, predicted) if calibrate == "linear" else (1.0, 0.0)
    trust = Trust(slope, intercept, [], None, by, bin_width)
    calibrated = trust.calibrated(predicted)
    trust.residuals = (true - calibrated).tolist()
    groups = group_of(rows, calibrated, by, bin_width)
    trust.groups = None if groups is None else groups.tolist()
    if scale:
        trust.scale, trust.spreads = scale, np.asarray(spreads, float).tolist()
        trust.floor = 0.1 * float(np.median(trust.spreads)) + 1e-6
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


def trust_of(
    members: Sequence[Any], tta: Sequence[str] | str, weights: Sequence[float] | None, calibrate: str,
    by: str | None, bin_width: float, scale: str | None = None, intervals: bool = True,
) -> Trust:  # fmt: skip
    """Fitted on the members' shared validation subjects, predicted as they will be (same TTA and
    weights); an export brings the one it was written with. Without intervals or a calibration
    to fit, nothing is predicted: the ages pass unchanged."""
    if all(isinstance(member, ExportedMember) for member in members):
        return Trust(**members[0].trust)
    if not intervals and calibrate == "none":
        return Trust.unfitted(bin_width)
    rows = shared_rows(members, "val")
    predictions = predict_members(members, rows, tta, weights)
    spreads = spreads_of(members, rows, predictions, scale)
    return fit_trust(rows["age"], predictions.combined, rows, calibrate, by, bin_width, scale, spreads)


def trust_for(
    members: Sequence[Any], settings: Any, tta: Sequence[str] | str, weights: Sequence[float] | None,
    intervals: bool = True,
) -> Trust:  # fmt: skip
    """trust_of with a command's own keys (calibrate, intervals_by, age_bin_width, intervals_scale)."""
    return trust_of(
        members, tta, weights, settings.calibrate, settings.intervals_by, settings.age_bin_width,
        settings.intervals_scale, intervals,
    )  # fmt: skip


def spreads_of(
    members: Sequence[Any], rows: pd.DataFrame, predictions: MemberPredictions, scale: str | None
) -> np.ndarray | None:
    """Each image of `rows` its spread by `scale`, from the `predictions` already made of them: the
    members' disagreement, its TTA views' disagreement (averaged over members), or (one more
    pass) the mean-variance model's own deviation (averaged over members)."""
    if scale is None:
        return None
    if scale == "ensemble":
        if len(members) < 2:
            raise ConfigError("intervals_scale=ensemble needs an ensemble (ensemble=[...]) of two or more runs.")
        return np.std(list(predictions.per_member.values()), axis=0)
    if scale == "tta":
        views = list(predictions.views.values())
        if len(views[0]) < 2:
            raise ConfigError("intervals_scale=tta needs test-time views: tta=zoom, shift or a list.")
        return np.mean([view.std(axis=0) for view in views], axis=0)
    if not all(isinstance(member, TrainedRun) for member in members):
        raise ConfigError("intervals_scale=distribution needs the trained runs: an export answers the age only.")
    return np.mean([member.spread(rows) for member in members], axis=0)


def group_of(rows: pd.DataFrame, predicted: np.ndarray, by: str | None, bin_width: float) -> np.ndarray | None:
    """Each image's Mondrian group: its sex, or the bin of its predicted age (the true one is unknown)."""
    if by is None:
        return None
    if by == "sex":
        if "sex" not in rows or rows["sex"].isna().any():
            raise ConfigError("intervals_by=sex needs the sex of every image (a table with a sex column).")
        return rows["sex"].astype(str).to_numpy()
    return (np.floor(np.asarray(predicted, float) / bin_width) * bin_width).astype(str)


def interval_figures(
    true: np.ndarray, lower: np.ndarray, upper: np.ndarray, by: dict[str, pd.Series]
) -> dict[str, Any]:
    """Empirical coverage and mean width, overall and per group (age bin, sex)."""
    covered = (true >= lower) & (true <= upper)
    width = upper - lower
    figures: dict[str, Any] = {"coverage": float(covered.mean()), "mean_width": float(width.mean()), "n": len(true)}
    for name, groups in by.items():
        figures[f"per_{name}"] = {
            str(group): {
                "coverage": float(covered[index].mean()),
                "mean_width": float(width[index].mean()),
                "n": int(index.sum()),
            }
            for group in (
                groups.cat.categories
                if isinstance(groups.dtype, pd.CategoricalDtype)
                else sorted(groups.dropna().unique())
            )
            if (index := (groups == group).to_numpy()).any()
        }
    return figures

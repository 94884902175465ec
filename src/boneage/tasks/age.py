"""Bone age (the default task): one regression head on the age column, in years or months.

What is the age task's own: the unit, the age checks of a table's rows (negative, implausible),
the split stratified by age bins of a set width, and the clinical evaluation (intervals,
calibration, age bins, Bland-Altman) that `boneage.evaluate` gives an age run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from boneage.tasks.base import Task
from boneage.tasks.regression import RegressionHead

# Ages beyond these are typos (a year of birth, months entered as days...), not people.
PLAUSIBLE_MAX_AGE = {"years": 130.0, "months": 130.0 * 12}
AGE_METRICS = ("mae", "rmse", "pearson", "spearman")


class AgeHead(RegressionHead):
    """The age column: MAE, RMSE, Pearson r, Spearman rho; age bins for the split."""

    def __init__(self, loss: nn.Module | None = None, weight: float = 1.0, required: bool = True) -> None:
        super().__init__(loss, weight, AGE_METRICS, required, name="age")

    def problems(self, values: pd.Series, source: Any) -> pd.Series:
        problems = super().problems(values, source)  # "age missing or not a number"
        unit = getattr(source, "age_unit", "years")
        limit = PLAUSIBLE_MAX_AGE[unit]
        problems[values < 0] = "negative age"
        problems[values > limit] = f"implausible age (over {limit:g} {unit})"
        return problems

    def subject_strata(self, values: pd.Series, subjects: pd.Series, bin_width: float | None) -> pd.Series:
        """Each subject's age bin (by its mean age), data.split.age_bin_width wide."""
        return np.floor(values.groupby(subjects).mean() / bin_width).astype(int)

    def stratum_name(self, stratum: Any, bin_width: float | None) -> str:
        return f"[{stratum * bin_width:g}, {(stratum + 1) * bin_width:g})"

    def unit(self, age_unit: str) -> str | None:
        return age_unit

    def thin_strata_remedy(self, bin_width: float | None) -> str:
        return f"Use wider bins (data.split.age_bin_width, now {bin_width:g})"


class AgeTask(Task):
    """Predicts the age column; runs are chosen by val MAE."""

    family = "age"

    def __init__(self, loss: nn.Module | None = None, monitor: str = "val/mae", mode: str = "min") -> None:
        super().__init__({"age": AgeHead(loss)}, monitor, mode)

    def summary_columns(self) -> list[tuple[str, str]]:
        return [("MAE", "mae"), ("RMSE", "rmse"), ("Pearson r", "pearson")]

    def trivial_columns(self, trivial) -> list[tuple[str, dict]]:
        return [
            ("mean-predictor MAE", {stage: figures["mean_predictor_mae"] for stage, figures in trivial["age"].items()})
        ]

    def summary_note(self, unit: str) -> str:
        return f"(errors in {unit}; the mean predictor always answers the training set's mean age)"

"""Bone age (the default task): a regression head on the age column, in years or months.

What is the age head's own, wherever it is (alone, or one of a multi-task model's heads): its
unit (its table's), the age checks of a table's rows (negative, implausible), the split
stratified by age bins of a set width, never a negative answer, its linear calibration, its
Mondrian intervals (by sex, or by predicted-age bin) and its clinical evaluation (per age bin and
sex, per subject, Bland-Altman, bone age against chronological age).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from torch import nn

from boneage.config.errors import ConfigError, DataError
from boneage.tasks.base import Task
from boneage.tasks.clinical import (
    PER_YEAR,
    age_bins,
    calibration_figures,
    chronological_figures,
    clinical_figures,
    clinical_lines,
    compare_with_chronological,
)
from boneage.tasks.regression import RegressionHead

AGE_UNITS = ("years", "months")
# Ages beyond these are typos (a year of birth, months entered as days...), not people.
PLAUSIBLE_MAX_AGE = {"years": 130.0, "months": 130.0 * 12}
AGE_METRICS = ("mae", "rmse", "pearson", "spearman")


class AgeHead(RegressionHead):
    """The age column: MAE, RMSE, Pearson r, Spearman rho; age bins for the split; its unit is
    its table's (data.source.age_unit), learnt with the training rows and kept in the checkpoint."""

    calibrations = ("linear",)
    interval_groups = ("sex", "age_bin")
    group_columns: ClassVar[dict[str, str]] = {"sex": "sex"}

    def __init__(self, loss: nn.Module | None = None, weight: float = 1.0, required: bool = True) -> None:
        super().__init__(loss, weight, AGE_METRICS, required, name="age", unit="years", range=(0.0, None))

    def problems(self, values: pd.Series, source: Any) -> pd.Series:
        problems = super().problems(values, source)  # "age missing or not a number"
        unit = unit_of(source)
        limit = PLAUSIBLE_MAX_AGE[unit]
        problems[values < 0] = "negative age"
        problems[values > limit] = f"implausible age (over {limit:g} {unit})"
        return problems

    def fit(self, train: pd.Series, source: Any = None) -> None:
        super().fit(train, source)
        self.unit = unit_of(source)

    def state(self) -> dict[str, Any]:
        return {"unit": self.unit}

    def restore(self, state: Mapping[str, Any], source: Any = None) -> None:
        """The unit the checkpoint (or export) holds; one of an earlier version holds none, and its
        run's table (`source`) says it."""
        self.unit = state.get("unit") or unit_of(source)

    def subject_strata(self, values: pd.Series, subjects: pd.Series, width: float) -> pd.Series:
        """Each subject's age bin (by its mean age), data.split.stratum_width wide."""
        return np.floor(values.groupby(subjects).mean() / width).astype(int)

    def stratum_name(self, stratum: Any, width: float) -> str:
        return f"[{stratum * width:g}, {(stratum + 1) * width:g})"

    def thin_strata_remedy(self, width: float) -> str:
        return f"Use wider bins (data.split.stratum_width, now {width:g})"

    def summary_columns(self) -> list[tuple[str, str]]:
        return [("MAE", "mae"), ("RMSE", "rmse"), ("Pearson r", "pearson")]

    def trivial_columns(self, trivial: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict]]:
        return [("mean-predictor MAE", {stage: figures["mean_predictor_mae"] for stage, figures in trivial.items()})]

    def summary_notes(self, trivial: Mapping[str, Mapping[str, Any]]) -> list[str]:
        return [f"(errors in {self.unit}; the mean predictor always answers the training set's mean age)"]

    def answer_extras(self, written: pd.DataFrame, prefix: str, levels: Sequence[float]) -> None:
        """Bone age against the chronological age, where the input gave one (a table's column, in
        the run's unit, or a DICOM header's, in years)."""
        if "chronological_age_years" in written:
            written["chronological_age"] = written.pop("chronological_age_years") * PER_YEAR[self.unit]
        if "chronological_age" in written:
            compare_with_chronological(written, f"predicted_{self.name}", levels, prefix)

    def group_of(self, rows: pd.DataFrame, values: np.ndarray, by: str, width: float) -> np.ndarray:
        """Each image's sex, or the bin of its predicted age (the true one is unknown)."""
        if by == "sex":
            if "sex" not in rows or rows["sex"].isna().any():
                raise ConfigError("intervals_by=sex needs the sex of every image (a table with a sex column).")
            return rows["sex"].astype(str).to_numpy()
        return (np.floor(np.asarray(values, float) / width) * width).astype(str)

    def evaluation(
        self, true: pd.Series, decoded: np.ndarray, train: pd.Series, rows: pd.DataFrame, settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The clinical figures: per image and per subject with a bootstrap MAE interval, per age
        bin and per sex (images with an age only)."""
        present = true.notna().to_numpy()
        ages = pd.DataFrame({
            "true": true.to_numpy(float), "predicted": decoded[:, 0], "subject": rows["subject"].to_numpy(),
            "sex": rows["sex"].to_numpy() if "sex" in rows else None,
        })[present]  # fmt: skip
        figures = clinical_figures(ages, settings["limits"], settings["age_bin_width"], settings["bootstrap"],
                                   settings["seed"])  # fmt: skip
        return figures | {"unit": self.unit}

    def report_groups(self, true: pd.Series, rows: pd.DataFrame, settings: Mapping[str, Any]) -> dict[str, pd.Series]:
        groups = {"age_bin": age_bins(true, settings["age_bin_width"])}
        return groups | ({"sex": rows["sex"]} if "sex" in rows else {})

    def evaluation_extras(
        self, rows: pd.DataFrame, table: pd.DataFrame, prefix: str, line: Mapping[str, float],
        settings: Mapping[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        """The calibration's effect per age bin, and bone age against the chronological age
        (evaluate's chronological_age_column)."""
        figures: dict[str, Any] = {}
        if f"{prefix}predicted_uncalibrated" in table:
            truth = table[self.name]
            figures["calibration"] = calibration_figures(
                truth, table[f"{prefix}predicted_uncalibrated"], table[f"{prefix}predicted"], line,
                settings["age_bin_width"],
            )  # fmt: skip
        if column := settings.get("chronological_age_column"):
            if column not in rows:
                raise DataError(
                    f"chronological_age_column={column!r}: the evaluated rows have no such column "
                    f"(they have {', '.join(map(str, rows.columns))}); it rides along from the training table."
                )
            chronological = pd.to_numeric(rows[column], errors="coerce").to_numpy()
            table.insert(table.columns.get_loc(f"{prefix}error") + 1, f"{prefix}chronological_age", chronological)
            levels = settings["intervals"]
            compare_with_chronological(table, f"{prefix}predicted", levels, prefix, f"{prefix}chronological_age")
            figures["chronological"] = chronological_figures(table, levels, prefix)
        return figures

    def report_lines(self, figures: Mapping[str, Any], level: int) -> list[str]:
        return clinical_lines(figures, self.unit, level)

    def evaluation_line(self, figures: Mapping[str, Any]) -> str:
        image = figures["image"]
        return (f"MAE {image['mae']:.3f} {self.unit} (95% CI {image['mae_ci95'][0]:.3f}-{image['mae_ci95'][1]:.3f}), "
                f"RMSE {image['rmse']:.3f}, r {image['pearson_r']:.3f} on {image['n']} images")  # fmt: skip


def unit_of(source: Any) -> str:
    """The age unit a label source (its config, or what an export recorded) declares; years
    where it declares none."""
    unit = (source.get("age_unit") if isinstance(source, Mapping) else getattr(source, "age_unit", None)) or "years"
    if unit not in AGE_UNITS:
        raise DataError(f"data.source.age_unit must be one of {AGE_UNITS}, not {unit!r}.")
    return unit


class AgeTask(Task):
    """Predicts the age column; runs are chosen by val MAE."""

    def __init__(self, loss: nn.Module | None = None, monitor: str = "val/mae", mode: str = "min") -> None:
        super().__init__({"age": AgeHead(loss)}, monitor, mode)

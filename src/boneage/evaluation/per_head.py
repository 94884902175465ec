"""Evaluate's work for one head, whatever its kind: its columns of predictions.csv, its figures
(its own evaluation, through the head protocol, then what every head of its kind gets: an
ensemble's members, TTA against none, the calibration, the intervals or prediction sets) and
its plots. A task of one head writes them unprefixed; with several, under the head's name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from boneage.evaluation.ensemble import MemberPredictions
from boneage.evaluation.plots import confusion_matrix_figure, mae_per_bin_plot, value_plots
from boneage.evaluation.prediction_sets import PredictionSets
from boneage.evaluation.temperature import reliability_figure, temperature_figures
from boneage.evaluation.trust import ClassTrust, TaskTrust
from boneage.tasks.base import Task
from boneage.tasks.metrics import interval_figures, regression_metrics


@dataclass
class Evaluated:
    """The members' answers on the evaluated rows, before and after `trust`, and their bounds."""

    task: Task
    rows: pd.DataFrame  # the evaluated images, indexed 0..n-1
    train: pd.DataFrame  # the first member's training rows (its trivial predictor)
    predicted: MemberPredictions
    without_tta: MemberPredictions | None  # the same images without TTA, where TTA was asked
    trust: TaskTrust
    answers: dict[str, np.ndarray]  # each head's trusted answers (calibrated, clipped, tempered)
    bounds: dict[float, dict[str, Any]]  # per level, each head's interval bounds or set matrix
    settings: Mapping[str, Any]  # the evaluate command's keys (limits, age_bin_width, intervals...)

    def head(self, name: str, out: Path) -> tuple[pd.DataFrame, dict[str, Any], list[Path]]:
        """The head's columns, figures and plots (written into `out`)."""
        head = self.task.heads[name]
        truth = head.read(self.rows[name]).reset_index(drop=True)
        trained = head.read(self.train[name])  # as written: pandas reads a class column with gaps as floats
        figures = head.evaluation(truth, self.answers[name], trained, self.rows, self.settings)
        evaluate = self._classes if head.answers_classes else self._values
        table = pd.DataFrame({name: truth})
        plots = evaluate(name, truth, table, figures, out)
        return table, figures, plots

    def _values(
        self, name: str, truth: pd.Series, table: pd.DataFrame, figures: dict[str, Any], out: Path
    ) -> list[Path]:
        head, prefix, suffix = self.task.heads[name], self.task.column_prefix(name), self._suffix(name)
        values = self.answers[name][:, 0]
        present = truth.notna().to_numpy()
        table[f"{prefix}predicted"], table[f"{prefix}error"] = values, values - truth
        if len(self.predicted.per_member) > 1:
            figures["members"] = {}
            for index, (member, answers) in enumerate(self.predicted.per_member.items()):
                answered = self.task.per_head(answers)[name][:, 0]
                table[f"{prefix}predicted_member{index}"] = answered
                figures["members"][member] = regression_metrics(truth[present], answered[present])
        if self.without_tta is not None:
            without = self.trust.applied(self.task, self.without_tta.combined, self.rows)[name][:, 0]
            table[f"{prefix}predicted_without_tta"] = without
            figures["tta_against_none"] = {
                "with TTA": regression_metrics(truth[present], values[present]),
                "without": regression_metrics(truth[present], without[present]),
            }
        trust = self.trust.heads[name]
        line = {"slope": trust.slope, "intercept": trust.intercept}
        if line != {"slope": 1.0, "intercept": 0.0}:
            table[f"{prefix}predicted_uncalibrated"] = self.task.per_head(self.predicted.combined)[name][:, 0]
        if self.trust.has_table(name):
            groups = {key: group.reset_index(drop=True)[present]
                      for key, group in head.report_groups(truth, self.rows, self.settings).items()}  # fmt: skip
            figures["intervals"] = {"calibrated_on": f"{len(trust.residuals)} validation images", "by": trust.by,
                                    "scaled_by": trust.scale}  # fmt: skip
            for level, found in self.bounds.items():
                percent = round(100 * level)
                lower, upper = found[name]
                table[f"{prefix}lower_{percent}"], table[f"{prefix}upper_{percent}"] = lower, upper
                figures["intervals"][f"{percent}%"] = interval_figures(
                    truth.to_numpy(float)[present], lower[present], upper[present], groups
                )
        figures |= head.evaluation_extras(self.rows, table, prefix, line, self.settings)
        plots = value_plots(truth.to_numpy(float)[present], values[present], head.unit, name, suffix, out)
        if "mae_per_age_bin" in figures:
            plots.append(mae_per_bin_plot(figures["mae_per_age_bin"], head.unit, out / f"mae_per_age_bin{suffix}.png"))
        return plots

    def _classes(
        self, name: str, truth: pd.Series, table: pd.DataFrame, figures: dict[str, Any], out: Path
    ) -> list[Path]:
        head, prefix = self.task.heads[name], self.task.column_prefix(name)
        probabilities = self.answers[name]
        for column, values in head.prediction_columns(probabilities).items():
            table[column] = values
        index = head.targets(truth)
        labelled = index >= 0
        confusion = figures.pop("confusion")
        confusion.to_csv(out / f"confusion_{name}.csv")
        plots = [confusion_matrix_figure(confusion.to_numpy(), list(confusion.columns), out / f"confusion_{name}.png")]
        trust: ClassTrust = self.trust.heads[name]
        if trust.temperature is not None and labelled.any():
            before = self.task.per_head(self.predicted.combined)[name][labelled]
            after = probabilities[labelled]
            figures["calibration"] = temperature_figures(trust.temperature, before, after, index[labelled])
            plots.append(reliability_figure(before, after, index[labelled], figures["calibration"], name,
                                            out / f"reliability_{name}.png"))  # fmt: skip
        if self.trust.has_table(name):
            figures["prediction_sets"] = {"calibrated_on": f"{len(trust.set_scores)} validation images"}
            for level, found in self.bounds.items():
                percent = round(100 * level)
                table[f"{prefix}set_{percent}"] = PredictionSets.named(found[name], head.classes)
                figures["prediction_sets"][f"{percent}%"] = PredictionSets.figures(
                    found[name][labelled], index[labelled]
                )
        return plots

    def _suffix(self, name: str) -> str:
        """What a head's plot files end with: nothing when it is alone."""
        return "" if len(self.task.heads) == 1 else f"_{name}"


def identity_columns(rows: pd.DataFrame, names: Sequence[str] = ("image", "subject", "sex")) -> pd.DataFrame:
    """The columns that say which image a row of predictions.csv is."""
    return rows[[column for column in names if column in rows]].reset_index(drop=True)

"""Evaluation of any task's heads (scores, classes, several at once): the figures each head
kind gives, conformal prediction sets for the classes, and the page that shows them. The age
task has its own, clinical evaluation (boneage.evaluate)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from boneage.config.errors import ConfigError
from boneage.evaluation.ensemble import predict_members, shared_rows
from boneage.evaluation.plots import predicted_vs_true_figure
from boneage.evaluation.prediction_sets import PredictionSets
from boneage.evaluation.temperature import Temperatures, calibration_sentence, reliability_figure
from boneage.runs.plots import save_figure
from boneage.tasks.base import Task

IDENTITY = ("image", "subject", "sex")
CLASS_CALIBRATIONS = ("none", "temperature")


class ClassCalibration(NamedTuple):
    """What the validation images fit for the classification heads: their temperatures (with
    calibrate=temperature) and their conformal prediction sets (on the tempered probabilities)."""

    temperatures: Temperatures | None
    sets: dict[str, PredictionSets]

    def applied(self, task: Task, decoded: np.ndarray) -> np.ndarray:
        """`decoded` with each classification head's probabilities tempered."""
        if self.temperatures is None:
            return decoded
        return np.concatenate(list(self.temperatures.apply(task.per_head(decoded)).values()), axis=1)


def classification_heads(task: Task) -> dict[str, Any]:
    return {name: head for name, head in task.heads.items() if head.kind == "classification"}


def fit_class_calibration(
    task: Task, members: Sequence[Any], tta: Any, weights: Any, levels: Sequence[float], calibrate: str = "none"
) -> ClassCalibration:
    """Per classification head, a temperature (calibrate=temperature) and prediction sets, fitted
    on the members' shared validation images."""
    if calibrate not in CLASS_CALIBRATIONS:
        raise ConfigError(
            f"calibrate={calibrate!r} does not apply to a {type(task).__name__} run: its class heads take "
            f"{' or '.join(CLASS_CALIBRATIONS)} (linear calibration is for age runs)."
        )
    classifying = classification_heads(task)
    if not classifying or (not levels and calibrate == "none"):
        return ClassCalibration(None, {})
    rows = shared_rows(members, "val")
    per_head = task.per_head(predict_members(members, rows, tta, weights).combined)
    truths = {name: head.targets(head.read(rows[name])) for name, head in classifying.items()}
    temperatures = Temperatures.fit(per_head, truths) if calibrate == "temperature" else None
    if temperatures is not None:
        per_head = temperatures.apply(per_head)
    sets = {name: PredictionSets(per_head[name][truth >= 0], truth[truth >= 0])
            for name, truth in truths.items() if levels and (truth >= 0).any()}  # fmt: skip
    return ClassCalibration(temperatures, sets)


def calibration_report(
    task: Task, rows: pd.DataFrame, raw: np.ndarray, temperatures: Temperatures, out: Path
) -> tuple[dict[str, Any], list[Path]]:
    """Each tempered head's temperature and ECE before and after on `rows`, and its reliability diagram."""
    per_head, figures, plots = task.per_head(raw), {}, []
    for name, head in classification_heads(task).items():
        truth = head.targets(head.read(rows[name]))
        present = truth >= 0
        if name not in temperatures.by_head or not present.any():
            continue
        before, labelled = per_head[name][present], truth[present]
        after = temperatures.apply({name: before})[name]
        figures[name] = temperatures.figures(name, before, after, labelled)
        plots.append(reliability_figure(before, after, labelled, figures[name], name, out / f"reliability_{name}.png"))
    return figures, plots


def add_prediction_sets(
    predictions: pd.DataFrame,
    task: Task,
    decoded: np.ndarray,
    sets: Mapping[str, PredictionSets],
    levels: Sequence[float],
) -> None:
    """Columns `<head>_set_<level>`: each image's set of classes."""
    per_head = task.per_head(decoded)
    for name, fitted in sets.items():
        for level in levels:
            chosen = fitted.sets(per_head[name], level)
            predictions[f"{name}_set_{round(100 * level)}"] = fitted.named(chosen, task.heads[name].classes)


def evaluate_targets(
    task: Task, rows: pd.DataFrame, decoded: np.ndarray, train: pd.DataFrame, out: Path,
    sets: Mapping[str, PredictionSets], levels: Sequence[float],
) -> tuple[pd.DataFrame, dict[str, Any], list[Path]]:  # fmt: skip
    """The predictions table, each head's figures against its trivial predictor (and, for
    classes, the coverage and size of the prediction sets), and the plots written to `out`."""
    truth = {name: head.read(rows[name]) for name, head in task.heads.items()}
    predictions = pd.concat(
        [rows[[c for c in IDENTITY if c in rows]].reset_index(drop=True),
         pd.DataFrame({name: values.to_numpy() for name, values in truth.items()}),
         task.prediction_columns(decoded)], axis=1,
    )  # fmt: skip
    add_prediction_sets(predictions, task, decoded, sets, levels)
    per_head = task.per_head(decoded)
    metrics: dict[str, Any] = {"heads": {}}
    plots = []
    for name, head in task.heads.items():
        trained = head.read(train[name])  # as written: pandas reads a class column with gaps as floats
        figures = head.evaluation(truth[name].reset_index(drop=True), per_head[name], out, trained)
        if name in sets:
            true_index = head.targets(truth[name])
            present = true_index >= 0
            figures["prediction_sets"] = {"calibrated_on": f"{sets[name].calibrated_on} validation images"} | {
                f"{round(100 * level)}%": PredictionSets.figures(sets[name].sets(per_head[name], level)[present],
                                                                 true_index[present])
                for level in levels
            }  # fmt: skip
            plots.append(out / f"confusion_{name}.png")
        else:
            present = truth[name].notna().to_numpy()
            figure = predicted_vs_true_figure(
                truth[name].to_numpy(float)[present], per_head[name][present, 0], "", name
            )
            plots.append(save_figure(figure, out / f"predicted_vs_true_{name}.png"))
        metrics["heads"][name] = figures
    return predictions, metrics, plots


def write_targets_markdown(metrics: Mapping[str, Any], plots: Sequence[Path], path: Path) -> None:
    """report.md of a non-age task: one table of figures per head, then the plots."""
    lines = ["# Evaluation", "",
             f"Runs: {', '.join(f'`{run}`' for run in metrics['runs'])}; test-time augmentation: {metrics['tta']}; "
             f"{metrics['images']} images ({metrics['evaluated_on']})."]  # fmt: skip
    for name, figures in metrics["heads"].items():
        lines += ["", f"## {name}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {key.replace('_', ' ')} | {_fmt(value)} |" for key, value in figures.items()
                  if not isinstance(value, dict | list)]  # fmt: skip
        if missing := figures.get("classes_missing"):
            lines += ["", f"No image of class(es) {', '.join(map(repr, missing))} here: balanced acc and macro F1 "
                          f"are means over the {figures['classes_present']} classes present."]  # fmt: skip
        if per_class := figures.get("per_class"):
            lines += ["", "| class | images | recall |", "|---|---|---|"]
            lines += [f"| {label} | {v['n']} | {_fmt(v['recall'])} |" for label, v in per_class.items()]
        if calibration := figures.get("calibration"):
            lines += [
                "",
                f"Calibrated on the validation images, {calibration_sentence(calibration)} (before -> after).",
            ]
        if sets := figures.get("prediction_sets"):
            lines += [
                "",
                f"Prediction sets (conformal, calibrated on {sets['calibrated_on']}):",
                "",
                "| level | coverage | mean classes per set | single-class share |",
                "|---|---|---|---|",
            ]
            lines += [f"| {level} | {_fmt(v['coverage'])} | {_fmt(v['mean_size'])} | {_fmt(v['single_class_share'])} |"
                      for level, v in sets.items() if level.endswith("%")]  # fmt: skip
    lines += ["", "## Figures", ""] + [f"![{plot.stem}]({plot.name})" for plot in plots]
    path.write_text("\n".join(lines) + "\n")


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)

"""Evaluation of any task's heads (scores, classes, several at once): the figures each head
gives, the coverage of its prediction sets or intervals, the reliability of tempered classes,
and the page that shows them. The age task has its own, clinical evaluation (boneage.evaluate)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from boneage.evaluation.heads_trust import HeadsTrust
from boneage.evaluation.plots import confusion_matrix_figure, predicted_vs_true_figure
from boneage.evaluation.prediction_sets import PredictionSets
from boneage.evaluation.temperature import Temperatures, calibration_sentence, reliability_figure
from boneage.evaluation.trust import interval_figures
from boneage.runs.plots import save_figure
from boneage.tasks.base import Task

IDENTITY = ("image", "subject", "sex")


def calibration_report(
    task: Task, rows: pd.DataFrame, raw: np.ndarray, temperatures: Temperatures, out: Path
) -> tuple[dict[str, Any], list[Path]]:
    """Each tempered head's temperature and ECE before and after on `rows`, and its reliability diagram."""
    per_head, figures, plots = task.per_head(raw), {}, []
    for name in temperatures.by_head:
        head = task.heads[name]
        truth = head.targets(head.read(rows[name]))
        present = truth >= 0
        if not present.any():
            continue
        before, labelled = per_head[name][present], truth[present]
        after = temperatures.apply({name: before})[name]
        figures[name] = temperatures.figures(name, before, after, labelled)
        plots.append(reliability_figure(before, after, labelled, figures[name], name, out / f"reliability_{name}.png"))
    return figures, plots


def evaluate_targets(
    task: Task, rows: pd.DataFrame, raw: np.ndarray, train: pd.DataFrame, out: Path, trust: HeadsTrust,
    levels: Sequence[float],
) -> tuple[pd.DataFrame, dict[str, Any], list[Path]]:  # fmt: skip
    """The predictions table, each head's figures against its trivial predictor (and the coverage
    and size of its prediction sets or intervals), and the plots written to `out`. `raw`: the
    members' answers before `trust` tempers them."""
    truth = {name: head.read(rows[name]) for name, head in task.heads.items()}
    predictions = pd.concat(
        [rows[[c for c in IDENTITY if c in rows]].reset_index(drop=True),
         pd.DataFrame({name: values.to_numpy() for name, values in truth.items()}),
         trust.columns(task, raw, levels)], axis=1,
    )  # fmt: skip
    per_head = task.per_head(trust.applied(task, raw))
    metrics: dict[str, Any] = {"heads": {}}
    plots = []
    for name, head in task.heads.items():
        trained = head.read(train[name])  # as written: pandas reads a class column with gaps as floats
        figures = head.evaluation(truth[name].reset_index(drop=True), per_head[name], trained)
        if (confusion := figures.pop("confusion", None)) is not None:  # a class head's
            confusion.to_csv(out / f"confusion_{name}.csv")
            plots.append(confusion_matrix_figure(confusion.to_numpy(), list(confusion.columns),
                                                 out / f"confusion_{name}.png"))  # fmt: skip
        else:
            present = truth[name].notna().to_numpy()
            figure = predicted_vs_true_figure(
                truth[name].to_numpy(float)[present], per_head[name][present, 0], "", name
            )
            plots.append(save_figure(figure, out / f"predicted_vs_true_{name}.png"))
        figures |= _trust_figures(head, truth[name], per_head[name], trust, levels)
        metrics["heads"][name] = figures
    return predictions, metrics, plots


def _trust_figures(
    head: Any, truth: pd.Series, values: np.ndarray, trust: HeadsTrust, levels: Sequence[float]
) -> dict[str, Any]:
    """How often a head's prediction sets (or intervals) held the truth, and how large they were."""
    name = head.name
    if name in trust.set_scores:
        true_index = head.targets(truth)
        present = true_index >= 0
        fitted = trust.sets[name]
        return {"prediction_sets": {"calibrated_on": f"{fitted.calibrated_on} validation images"} | {
            f"{round(100 * level)}%": PredictionSets.figures(fitted.sets(values, level)[present], true_index[present])
            for level in levels
        }}  # fmt: skip
    if name in trust.residuals:
        present = truth.notna().to_numpy()
        true = truth.to_numpy(float)[present]
        return {"intervals": {"calibrated_on": f"{len(trust.residuals[name])} validation images"} | {
            f"{round(100 * level)}%": interval_figures(true, *trust.bounds(name, values[present, 0], level), {})
            for level in levels
        }}  # fmt: skip
    return {}


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
        if intervals := figures.get("intervals"):
            lines += ["", f"Intervals (conformal, calibrated on {intervals['calibrated_on']}):", "",
                      "| level | coverage | mean width |", "|---|---|---|"]  # fmt: skip
            lines += [f"| {level} | {_fmt(v['coverage'])} | {_fmt(v['mean_width'])} |"
                      for level, v in intervals.items() if level.endswith("%")]  # fmt: skip
    lines += ["", "## Figures", ""] + [f"![{plot.stem}]({plot.name})" for plot in plots]
    path.write_text("\n".join(lines) + "\n")


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)

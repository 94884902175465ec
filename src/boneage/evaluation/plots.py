"""Evaluation figures: predicted against true age (or score), Bland-Altman, MAE per age bin,
and the confusion matrix of a classification."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from boneage.runs.plots import save_figure


def predicted_vs_true_figure(
    true: np.ndarray, predicted: np.ndarray, unit: str | None, quantity: str = "age"
) -> plt.Figure:
    """Scatter of predicted against true values with the identity line (files and TensorBoard)."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter(true, predicted, s=8, alpha=0.5)
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    axis.plot([low, high], [low, high], color="black", linewidth=1, label="identity")
    suffix = f" ({unit})" if unit else ""
    axis.set(xlabel=f"true {quantity}{suffix}", ylabel=f"predicted {quantity}{suffix}", title="Predicted vs true")
    axis.legend()
    return figure


def value_plots(
    true: np.ndarray, predicted: np.ndarray, unit: str | None, quantity: str, suffix: str, out: Path
) -> list[Path]:
    """A value head's predicted-against-true scatter and Bland-Altman plot, written into `out`
    as predicted_vs_true<suffix>.png and bland_altman<suffix>.png."""
    shown = f" ({unit})" if unit else ""
    scatter = save_figure(
        predicted_vs_true_figure(true, predicted, unit, quantity), out / f"predicted_vs_true{suffix}.png"
    )
    mean, difference = (true + predicted) / 2, predicted - true
    bias, spread = difference.mean(), 1.96 * difference.std()
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.scatter(mean, difference, s=8, alpha=0.5)
    for level, style, label in (
        (bias, "-", f"bias {bias:.2f}"),
        (bias + spread, "--", "±1.96 SD"),
        (bias - spread, "--", None),
    ):
        axis.axhline(level, color="black", linestyle=style, linewidth=1, label=label)
    axis.set(xlabel=f"mean of true and predicted{shown}", ylabel=f"predicted − true{shown}", title="Bland-Altman")
    axis.legend()
    return [scatter, save_figure(figure, out / f"bland_altman{suffix}.png")]


def mae_per_bin_plot(mae_per_bin: Mapping[str, Mapping[str, float]], unit: str | None, path: Path) -> Path:
    """MAE per true-age bin, as bars."""
    shown = f" ({unit})" if unit else ""
    figure, axis = plt.subplots(figsize=(7, 4))
    labels = list(mae_per_bin)
    axis.bar(labels, [mae_per_bin[label]["mae"] for label in labels])
    axis.set(xlabel=f"true age bin{shown}", ylabel=f"MAE{shown}", title="MAE per age bin")
    axis.tick_params(axis="x", rotation=45)
    return save_figure(figure, path)


def confusion_matrix_figure(confusion: np.ndarray, labels: list[str], path: Path) -> Path:
    """The confusion matrix, each row normalised by its class's count (the recall on the
    diagonal), with the counts written in the cells while they stay legible."""
    support = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, support, out=np.zeros(confusion.shape), where=support > 0)
    side = min(4 + 0.35 * len(labels), 24)
    figure, axis = plt.subplots(figsize=(side, side))
    shown = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    axis.set_xticks(ticks, labels, rotation=90 if len(labels) > 8 else 0)
    axis.set_yticks(ticks, labels)
    axis.set(xlabel="predicted", ylabel="true", title="Confusion matrix (rows: share of the true class)")
    if len(labels) <= 20:
        for (row, column), count in np.ndenumerate(confusion):
            colour = "white" if share[row, column] > 0.5 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(shown, ax=axis, fraction=0.046)
    return save_figure(figure, path)

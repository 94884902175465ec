"""Evaluation figures: predicted against true age, Bland-Altman, MAE per age bin."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from boneage.plots import save_figure


def predicted_vs_true_figure(true: np.ndarray, predicted: np.ndarray, unit: str) -> plt.Figure:
    """Scatter of predicted against true age with the identity line (files and TensorBoard)."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter(true, predicted, s=8, alpha=0.5)
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    axis.plot([low, high], [low, high], color="black", linewidth=1, label="identity")
    axis.set(xlabel=f"true age ({unit})", ylabel=f"predicted age ({unit})", title="Predicted vs true")
    axis.legend()
    return figure


def plot_evaluation(predictions: pd.DataFrame, mae_per_bin: Mapping[str, Mapping[str, float]], unit: str, out: Path):
    """Writes the three figures into `out` and returns their paths."""
    true, predicted = predictions["age"].to_numpy(), predictions["predicted"].to_numpy()
    paths = {name: out / f"{name}.png" for name in ("predicted_vs_true", "bland_altman", "mae_per_age_bin")}

    save_figure(predicted_vs_true_figure(true, predicted, unit), paths["predicted_vs_true"])

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
    axis.set(xlabel=f"mean of true and predicted ({unit})", ylabel=f"predicted − true ({unit})", title="Bland-Altman")
    axis.legend()
    save_figure(figure, paths["bland_altman"])

    figure, axis = plt.subplots(figsize=(7, 4))
    labels = list(mae_per_bin)
    axis.bar(labels, [mae_per_bin[label]["mae"] for label in labels])
    axis.set(xlabel=f"true age bin ({unit})", ylabel=f"MAE ({unit})", title="MAE per age bin")
    axis.tick_params(axis="x", rotation=45)
    save_figure(figure, paths["mae_per_age_bin"])
    return list(paths.values())

"""The figures of a continuous prediction against the truth (an age, a score): what every
regression head reports, the coverage of its intervals, and what the age head's clinical
evaluation builds on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def regression_metrics(true: np.ndarray, predicted: np.ndarray, limits: Sequence[float] = ()) -> dict[str, float]:
    """MAE, RMSE, median absolute error, mean signed error (bias), Pearson r, Spearman rho,
    R2, and the share of predictions within each of `limits` of the truth."""
    true, predicted = np.asarray(true, float), np.asarray(predicted, float)
    error = predicted - true
    absolute = np.abs(error)
    varied = len(true) > 1 and np.ptp(true) > 0 and np.ptp(predicted) > 0
    figures = {
        "n": len(true),
        "mae": float(absolute.mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "median_ae": float(np.median(absolute)),
        "bias": float(error.mean()),
        "pearson_r": float(stats.pearsonr(true, predicted)[0]) if varied else float("nan"),
        "spearman_rho": float(stats.spearmanr(true, predicted)[0]) if varied else float("nan"),
        "r2": float(1 - (error**2).sum() / ((true - true.mean()) ** 2).sum()) if np.ptp(true) > 0 else float("nan"),
    }
    for limit in limits:
        figures[f"within_{limit:g}"] = float((absolute <= limit).mean())
    return figures


def bootstrap_mae_interval(
    true: np.ndarray, predicted: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the MAE (resampling predictions with replacement)."""
    absolute = np.abs(np.asarray(predicted, float) - np.asarray(true, float))
    rng = np.random.default_rng(seed)
    means = absolute[rng.integers(0, len(absolute), (resamples, len(absolute)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def interval_figures(
    true: np.ndarray, lower: np.ndarray, upper: np.ndarray, by: Mapping[str, pd.Series]
) -> dict[str, Any]:
    """Empirical coverage and mean width of intervals, overall and per group (age bin, sex)."""
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

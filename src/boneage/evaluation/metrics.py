"""The figures clinicians expect of an age estimate, from true and predicted ages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from boneage.tasks.metrics import regression_metrics


def bootstrap_mae_interval(
    true: np.ndarray, predicted: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the MAE (resampling predictions with replacement)."""
    absolute = np.abs(np.asarray(predicted, float) - np.asarray(true, float))
    rng = np.random.default_rng(seed)
    means = absolute[rng.integers(0, len(absolute), (resamples, len(absolute)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def grouped_mae(predictions: pd.DataFrame, by: pd.Series) -> dict[Any, dict[str, float]]:
    """MAE and count per group (age bin, sex), in the groups' natural order."""
    error = (predictions["predicted"] - predictions["age"]).abs()
    return {name: {"mae": float(group.mean()), "n": len(group)} for name, group in error.groupby(by, observed=True)}


def age_bins(ages: pd.Series, width: float) -> pd.Series:
    """Each age's bin as "[low, high)", ordered from the youngest bin (every per-age-bin table)."""
    lows = np.floor(ages / width) * width
    labels = {low: f"[{low:g}, {low + width:g})" for low in sorted(lows.unique())}
    return pd.Series(pd.Categorical(lows.map(labels), categories=list(labels.values())), index=ages.index)


def subject_level(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: the mean of its images' true and predicted ages."""
    return predictions.groupby("subject", sort=False)[["age", "predicted"]].mean().reset_index()


def evaluation_metrics(
    predictions: pd.DataFrame, limits: Sequence[float], age_bin_width: float, resamples: int, seed: int
) -> dict[str, Any]:
    """Image- and subject-level figures, per age bin and per sex, with a bootstrap MAE interval."""
    result: dict[str, Any] = {}
    for level, rows in (("image", predictions), ("subject", subject_level(predictions))):
        figures = regression_metrics(rows["age"], rows["predicted"], limits)
        figures["mae_ci95"] = bootstrap_mae_interval(rows["age"], rows["predicted"], resamples, seed)
        result[level] = figures
    result["mae_per_age_bin"] = grouped_mae(predictions, age_bins(predictions["age"], age_bin_width))
    if "sex" in predictions and predictions["sex"].notna().any():
        result["mae_per_sex"] = grouped_mae(predictions, predictions["sex"].fillna("unknown"))
    return result

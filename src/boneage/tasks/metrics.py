"""The figures of a continuous prediction against the truth (an age, a score): what every
regression head reports, and what the age task's clinical evaluation builds on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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

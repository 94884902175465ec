"""Temperature scaling of class probabilities (Guo et al., 2017): one temperature per
classification head, fitted on the run's validation images by minimising their negative
log-likelihood; T > 1 softens an overconfident head. The ranking of classes, and so accuracy,
is unchanged: only how far the probabilities can be trusted.

It works on the probabilities a run (or ensemble, with TTA) gives, as softmax(log p / T): for one
network without TTA that is exactly softmax(logits / T), and for an average of several it
tempers the combined distribution, which is the one reported.

How far to trust them is measured by the expected calibration error: over 15 confidence bins,
the gap between the mean confidence and the accuracy of the images in each, weighted by their
share (torchmetrics' ECE); the adaptive ECE does the same with bins of equal counts, which
says more when most images are confident.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from torchmetrics.functional.classification import multiclass_calibration_error

from boneage.runs.plots import save_figure

BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)  # wide enough for any head; the fit says when it hits a bound
SMALLEST_PROBABILITY = 1e-12  # log(0) would make a class impossible at any temperature


def tempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), row by row."""
    return softmax(np.log(np.clip(probabilities, SMALLEST_PROBABILITY, 1.0)) / temperature, axis=1)


def fit_temperature(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of the true classes."""
    log_p = np.log(np.clip(probabilities, SMALLEST_PROBABILITY, 1.0))
    rows = np.arange(len(truth))

    def negative_log_likelihood(temperature: float) -> float:
        return float(-log_softmax(log_p / temperature, axis=1)[rows, truth].mean())

    return float(minimize_scalar(negative_log_likelihood, bounds=TEMPERATURE_RANGE, method="bounded").x)


def calibration_errors(probabilities: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """ECE (equal-width confidence bins) and adaptive ECE (equal-count bins)."""
    ece = multiclass_calibration_error(
        torch.as_tensor(probabilities, dtype=torch.float64), torch.as_tensor(truth),
        num_classes=probabilities.shape[1], n_bins=BINS, norm="l1",
    )  # fmt: skip
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    order = np.argsort(confidence)
    gaps = [abs(confidence[b].mean() - correct[b].mean()) * len(b) for b in np.array_split(order, BINS) if len(b)]
    return {"ece": float(ece), "adaptive_ece": float(sum(gaps) / len(truth))}


def reliability_figure(
    before: np.ndarray, after: np.ndarray, truth: np.ndarray, figures: Mapping[str, float], head: str, path: Path
) -> Path:
    """Accuracy against confidence per bin, before and after the temperature (with their ECE from
    `figures`), beside the diagonal a calibrated head would follow."""
    figure, axis = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, BINS + 1)
    for probabilities, label in ((before, "before"), (after, "after")):
        confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
        which = np.clip(np.digitize(confidence, edges) - 1, 0, BINS - 1)
        filled = [b for b in range(BINS) if (which == b).any()]
        axis.plot([confidence[which == b].mean() for b in filled], [correct[which == b].mean() for b in filled],
                  marker="o", label=f"{label} (ECE {figures[f'ece_{label}']:.3f})")  # fmt: skip
    axis.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle="--", label="calibrated")
    axis.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
             title=f"Reliability: {head}")  # fmt: skip
    axis.legend()
    return save_figure(figure, path)


def temperature_figures(temperature: float, before: np.ndarray, after: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """A head's temperature and its ECE and adaptive ECE before and after it (labelled images)."""
    was, now = calibration_errors(before, truth), calibration_errors(after, truth)
    return {"temperature": temperature, **{f"{key}_before": value for key, value in was.items()},
            **{f"{key}_after": value for key, value in now.items()}}  # fmt: skip

"""Conformal prediction sets for classification: the classes that together hold the true one
at a chosen rate (e.g. 90%), calibrated on the run's validation images with crepes.

The nonconformity of an image is 1 - p(its true class) (crepes' hinge); a class enters the
set when its own nonconformity is within the validation images' quantile. Confident images
get one class, ambiguous ones several: the set's size says how sure the model is. Sets are
not smoothed (no random tie-breaking), so an image gets the same set whichever batch it is
predicted in, at the price of sets a little larger than the level needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from crepes import ConformalClassifier
from crepes.extras import hinge


def nonconformity(probabilities: np.ndarray, true: np.ndarray) -> np.ndarray:
    """1 - p(true class) of each image: what the sets are calibrated on."""
    return hinge(probabilities, np.arange(probabilities.shape[1]), true)


class PredictionSets:
    """Fitted on the validation images' nonconformity scores (kept, as plain numbers, by exports)."""

    def __init__(self, scores: Sequence[float]) -> None:
        self.classifier = ConformalClassifier().fit(np.asarray(scores, float))
        self.calibrated_on = len(scores)

    def sets(self, probabilities: np.ndarray, level: float) -> np.ndarray:
        """A boolean (images x classes) matrix: True where the class is in the image's set."""
        return self.classifier.predict_set(hinge(probabilities), confidence=level, smoothing=False).astype(bool)

    @staticmethod
    def named(sets: np.ndarray, classes: Sequence[Any]) -> list[str]:
        """Each set as its classes joined by '|' (a CSV cell)."""
        return ["|".join(str(classes[i]) for i in np.flatnonzero(row)) for row in sets]

    @staticmethod
    def figures(sets: np.ndarray, true: np.ndarray) -> dict[str, float]:
        """How often the set holds the true class, and how many classes it holds on average."""
        return {
            "coverage": float(sets[np.arange(len(true)), true].mean()),
            "mean_size": float(sets.sum(axis=1).mean()),
            "single_class_share": float((sets.sum(axis=1) == 1).mean()),
        }

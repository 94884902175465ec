"""Out-of-distribution flags: an image whose features lie far from every validation image's is
unlike what the network was trained and checked on (another body part, a photo, a scan
artefact), and its age should not be trusted.

The score is the mean distance from an image's pooled backbone features (L2-normalised) to
its k nearest validation images; the flag's threshold is the `quantile` of the same score on
the validation images themselves (each left out of its own neighbours), so about 1 - quantile
of images like the validation images are flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from boneage.config.errors import ConfigError
from boneage.evaluation.ensemble import shared_rows
from boneage.evaluation.inference import TrainedRun


@dataclass
class FeatureDistance:
    reference: np.ndarray  # the validation images' normalised features
    threshold: float
    quantile: float
    neighbours: int

    def scores(self, features: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
        search = NearestNeighbors(n_neighbors=self.neighbours + leave_one_out).fit(self.reference)
        distances, _ = search.kneighbors(_normalised(features))
        return distances[:, int(leave_one_out) :].mean(axis=1)

    def flags(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each image's score and whether it is beyond the threshold."""
        scores = self.scores(features)
        return scores, scores > self.threshold


def fit_feature_distance(features: np.ndarray, quantile: float, neighbours: int = 5) -> FeatureDistance:
    if not 0 < quantile < 1:
        raise ConfigError(f"ood_quantile={quantile} must lie between 0 and 1 (e.g. 0.99), or be null for no flags.")
    if len(features) <= neighbours:
        raise ConfigError(f"out-of-distribution flags need more than {neighbours} validation images ({len(features)}).")
    distance = FeatureDistance(_normalised(features), 0.0, quantile, neighbours)
    distance.threshold = float(np.quantile(distance.scores(features, leave_one_out=True), quantile))
    return distance


def ood_of(members: Sequence[Any], quantile: float | None) -> FeatureDistance | None:
    """Fitted on the first member's features of the shared validation subjects (None: no flags,
    or an export, which carries no feature extractor)."""
    if quantile is None or not isinstance(members[0], TrainedRun):
        return None
    return fit_feature_distance(members[0].features(shared_rows(members, "val")), quantile)


def _normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, float)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)

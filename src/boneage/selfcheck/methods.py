"""Stage 2 and 3 of self-validation: how unlike the validation images an image is, by several
measures. Each method is fitted on the validation images and scores them held out (left out of
their own neighbours, or in folds), so its threshold is measured on images it was not fitted on.
Higher scores are stranger.

- knn: mean distance from the image's L2-normalised pooled features to its k nearest
  validation images (Sun et al. 2022).
- mahalanobis: the smallest Mahalanobis distance of the normalised features to a stratum's
  mean (age bins, or classes), with one shrunk covariance (Ledoit-Wolf) shared by the strata.
- max_softmax: one minus the largest class probability (class heads; the least confident head).
- disagreement: the spread of the first value head's answers over ensemble members and TTA views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.model_selection import KFold
from sklearn.neighbors import NearestNeighbors

from boneage.config.errors import ConfigError

FOLDS = 5  # cross-fitting folds of the Mahalanobis statistics
NEIGHBOURS = 5  # the nearest validation images whose distances the knn score averages


@dataclass
class Evidence:
    """What an image shows the gate: its pooled features (the first member's), each class head's
    probabilities, and the spread of the members' and views' answers (None where there is one)."""

    features: np.ndarray
    probabilities: Mapping[str, np.ndarray]
    disagreement: np.ndarray | None


def normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


@dataclass
class NearestNeighbours:
    name: ClassVar[str] = "knn"
    reference: np.ndarray  # the validation images' normalised features
    neighbours: int

    @classmethod
    def fitted(cls, evidence: Evidence, strata: np.ndarray, neighbours: int) -> tuple[NearestNeighbours, np.ndarray]:
        """Fitted on the validation images, and their scores each left out of its own neighbours."""
        if len(evidence.features) <= neighbours:
            raise ConfigError(
                f"self-validation needs more than {neighbours} validation images ({len(evidence.features)})."
            )
        method = cls(normalised(evidence.features), neighbours)
        return method, method._distances(method.reference, leave_one_out=True)

    def scores(self, evidence: Evidence) -> np.ndarray:
        return self._distances(normalised(evidence.features))

    def _distances(self, features: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
        search = NearestNeighbors(n_neighbors=self.neighbours + leave_one_out).fit(self.reference)
        distances, _ = search.kneighbors(features)
        return distances[:, int(leave_one_out) :].mean(axis=1)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"reference": self.reference, "neighbours": np.asarray(self.neighbours)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> NearestNeighbours:
        return cls(arrays["reference"], int(arrays["neighbours"]))


@dataclass
class Mahalanobis:
    name: ClassVar[str] = "mahalanobis"
    means: np.ndarray  # (strata, features): each stratum's mean normalised features
    precision: np.ndarray  # the inverse of their shared, shrunk covariance

    @classmethod
    def fitted(cls, evidence: Evidence, strata: np.ndarray, neighbours: int) -> tuple[Mahalanobis, np.ndarray]:
        """Fitted on all validation images; their scores cross-fitted (each fold scored by the
        statistics of the others)."""
        features = normalised(evidence.features)
        held_out = np.empty(len(features))
        for fitting, scored in KFold(FOLDS, shuffle=True, random_state=0).split(features):
            held_out[scored] = cls._fit(features[fitting], strata[fitting])._distances(features[scored])
        return cls._fit(features, strata), held_out

    @classmethod
    def _fit(cls, features: np.ndarray, strata: np.ndarray) -> Mahalanobis:
        groups = [features[strata == stratum] for stratum in np.unique(strata)]
        means = np.stack([group.mean(axis=0) for group in groups])
        centred = np.concatenate([group - mean for group, mean in zip(groups, means, strict=True)])
        return cls(means, LedoitWolf().fit(centred).precision_)

    def scores(self, evidence: Evidence) -> np.ndarray:
        return self._distances(normalised(evidence.features))

    def _distances(self, features: np.ndarray) -> np.ndarray:
        """(x - m)' P (x - m) expanded, so no (images x strata x features) array is formed."""
        weighted = features @ self.precision
        squared = ((weighted * features).sum(axis=1)[:, None] - 2 * weighted @ self.means.T
                   + ((self.means @ self.precision) * self.means).sum(axis=1)[None])  # fmt: skip
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"means": self.means, "precision": self.precision}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Mahalanobis:
        return cls(arrays["means"], arrays["precision"])


@dataclass
class MaxSoftmax:
    name: ClassVar[str] = "max_softmax"

    @classmethod
    def fitted(cls, evidence: Evidence, strata: np.ndarray, neighbours: int) -> tuple[MaxSoftmax, np.ndarray]:
        return cls(), cls().scores(evidence)  # nothing is fitted: the validation scores are held out as they are

    def scores(self, evidence: Evidence) -> np.ndarray:
        return np.max([1 - probabilities.max(axis=1) for probabilities in evidence.probabilities.values()], axis=0)

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> MaxSoftmax:
        return cls()


@dataclass
class Disagreement:
    name: ClassVar[str] = "disagreement"

    @classmethod
    def fitted(cls, evidence: Evidence, strata: np.ndarray, neighbours: int) -> tuple[Disagreement, np.ndarray]:
        return cls(), cls().scores(evidence)

    def scores(self, evidence: Evidence) -> np.ndarray:
        assert evidence.disagreement is not None  # available() chose this method
        return evidence.disagreement

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Disagreement:
        return cls()


METHODS = {method.name: method for method in (NearestNeighbours, Mahalanobis, MaxSoftmax, Disagreement)}
COMBINED = "combined"  # the largest of the other methods' scores, each standardised on the validation images
FEATURE_METHODS = ("knn", "mahalanobis")


def available(evidence: Evidence) -> list[str]:
    """The methods this model's evidence allows: the feature-space ones always, max_softmax with
    class heads, disagreement with ensemble members or TTA views."""
    names = list(FEATURE_METHODS)
    if evidence.probabilities:
        names.append(MaxSoftmax.name)
    if evidence.disagreement is not None:
        names.append(Disagreement.name)
    return names


def combined_parts(names: list[str]) -> list[str]:
    """The methods the combination takes: the image's features and, where the heads have them,
    their confidence. Disagreement is left out: it changes with the TTA asked for."""
    return [name for name in names if name != Disagreement.name]

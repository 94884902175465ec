"""The gate: one self-validation method and its threshold, fitted on a model's validation images,
the same from a run and from its export (which stores what was fitted).

The threshold is the `quantile` of the method's held-out scores on the validation images, so
about 1 - quantile of images like them are refused. Every method is fitted, and its held-out
validation scores kept, so that any method and quantile can be chosen where the model is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boneage.config.errors import ConfigError
from boneage.selfcheck.methods import COMBINED, METHODS, Evidence, combined_parts

GATE_FILE = "gate.npz"  # an export's fitted statistics, beside its sidecar


@dataclass
class Verdicts:
    """Each image's score by the gate's method and whether it is refused."""

    scores: np.ndarray
    refused: np.ndarray
    method: str
    threshold: float

    def reason(self, row: int) -> str:
        return (f"not assessed: unlike the images this model was validated on ({self.method} score "
                f"{self.scores[row]:.4g} over threshold {self.threshold:.4g})")  # fmt: skip


@dataclass
class Gate:
    fitted: dict[str, Any]  # each method, fitted on the validation images
    validation: dict[str, np.ndarray]  # each method's held-out scores on the validation images
    method: str  # the one that decides
    quantile: float

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1:
            raise ConfigError(f"ood_quantile={self.quantile} must lie between 0 and 1 (e.g. 0.995), or be null.")
        if self.method not in self.names:
            raise ConfigError(f"ood_method={self.method!r}: this model offers {self.names}.")

    @property
    def names(self) -> list[str]:
        """Every method this gate can score with, the combination last."""
        return [*self.fitted, COMBINED]

    def threshold(self, method: str | None = None) -> float:
        return float(np.quantile(self.validation_scores(method or self.method), self.quantile))

    def validation_scores(self, method: str) -> np.ndarray:
        if method != COMBINED:
            return self.validation[method]
        return self._combined({name: self.validation[name] for name in combined_parts(list(self.fitted))})

    def scores(self, evidence: Evidence, method: str | None = None) -> np.ndarray:
        method = method or self.method
        if method != COMBINED:
            return self.fitted[method].scores(evidence)
        return self._combined({name: self.fitted[name].scores(evidence) for name in combined_parts(list(self.fitted))})

    def description(self) -> dict[str, Any]:
        """What GET /model says of it: the method that decides, its threshold, and the others."""
        return {"method": self.method, "quantile": self.quantile, "threshold": self.threshold(), "methods": self.names}

    def verdicts(self, evidence: Evidence) -> Verdicts:
        scores, threshold = self.scores(evidence), self.threshold()
        return Verdicts(scores, scores > threshold, self.method, threshold)

    def _combined(self, scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """The largest of the methods' scores, each standardised by its validation scores."""
        standardised = [(scores[name] - self.validation[name].mean()) / max(self.validation[name].std(), 1e-12)
                        for name in scores]  # fmt: skip
        return np.max(standardised, axis=0)

    def with_choice(self, method: str, quantile: float) -> Gate:
        return Gate(self.fitted, self.validation, method, quantile)

    def save(self, folder: Path) -> dict[str, Any]:
        """Writes the fitted statistics to `folder`/gate.npz; returns the sidecar's entry."""
        arrays = {f"{name}.{key}": value for name, fitted in self.fitted.items()
                  for key, value in fitted.arrays().items()}  # fmt: skip
        arrays |= {f"validation.{name}": scores for name, scores in self.validation.items()}
        np.savez(folder / GATE_FILE, **arrays)
        return {"file": GATE_FILE, "methods": list(self.fitted), "method": self.method, "quantile": self.quantile}

    @classmethod
    def load(cls, folder: Path, entry: Mapping[str, Any]) -> Gate:
        with np.load(folder / entry["file"]) as stored:
            arrays = {key: stored[key] for key in stored.files}
        fitted = {name: METHODS[name].from_arrays({key.split(".", 1)[1]: value for key, value in arrays.items()
                                                   if key.startswith(f"{name}.")})
                  for name in entry["methods"]}  # fmt: skip
        validation = {name: arrays[f"validation.{name}"] for name in entry["methods"]}
        return cls(fitted, validation, entry["method"], entry["quantile"])

"""A model fitted to a site: a per-sex linear correction of the age head, fitted on the site's own
labelled images.

A model trained at one site is biased at another (another population's pace of maturing,
other plates): Deeplasia's Georgian validation measured +2.85 months for girls and +5.35 for
boys before a per-sex linear correction on 121 local images. The line of true on answered age
is fitted per sex (the site's images of an unknown sex get the line of all of them), and its
effect is measured out of sample: each image's corrected age comes from the lines fitted on the
other folds, so the figures after are not the fit's own residuals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from boneage.config.errors import DataError
from boneage.datamodules.sex import read_sex
from boneage.tasks.protocol import Head

ALL = "all"  # the line of every image: for images whose sex is not known
FOLDS = 5  # the cross-fitting folds of the figures after correction
MIN_PER_SEX = 10  # fewer images of a sex than this: its images take the line of all


@dataclass
class SiteCorrection:
    """`head`'s answers mapped by each sex's line: corrected = slope * answered + intercept."""

    head: str
    lines: dict[str, tuple[float, float]]  # sex (F, M) or ALL -> (slope, intercept)
    images: int  # the site's images it was fitted on

    def corrected(self, answered: np.ndarray, sexes: pd.Series | None) -> np.ndarray:
        """The corrected ages of images whose sex is `sexes` (None: all unknown)."""
        answered = np.asarray(answered, float)
        keys = pd.Series(ALL, index=range(len(answered))) if sexes is None else sexes.reset_index(drop=True)
        keys = keys.where(keys.isin(list(self.lines)), ALL)
        slopes = keys.map(lambda sex: self.lines[sex][0]).to_numpy(float)
        intercepts = keys.map(lambda sex: self.lines[sex][1]).to_numpy(float)
        return slopes * answered + intercepts

    def applied(self, head: Head, values: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
        """The head's answers (images x columns, the value first) corrected by each row's sex
        (its column `sex`, as a table or a DICOM header gives it), within the head's range."""
        corrected = np.array(values, float)
        sexes = read_sex(rows["sex"]) if "sex" in rows else None
        corrected[:, 0] = head.clipped(self.corrected(corrected[:, 0], sexes))
        return corrected

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> SiteCorrection:
        return cls(stored["head"], {sex: tuple(line) for sex, line in stored["lines"].items()}, stored["images"])


def fit_site_correction(head: str, answered: np.ndarray, truth: np.ndarray, sexes: pd.Series) -> SiteCorrection:
    """Each sex's line of true on answered age (a sex with under MIN_PER_SEX images: the line of all)."""
    answered, truth = np.asarray(answered, float), np.asarray(truth, float)
    if len(answered) < MIN_PER_SEX:
        raise DataError(
            f"a site correction needs at least {MIN_PER_SEX} labelled images; the input has {len(answered)}."
        )
    sexes = sexes.reset_index(drop=True)
    lines = {ALL: _line(answered, truth)}
    for sex in ("F", "M"):
        chosen = (sexes == sex).to_numpy()
        if chosen.sum() >= MIN_PER_SEX:
            lines[sex] = _line(answered[chosen], truth[chosen])
    return SiteCorrection(head, lines, len(answered))


def _line(answered: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(answered, truth, 1)
    return float(slope), float(intercept)


def cross_fitted(head: str, answered: np.ndarray, truth: np.ndarray, sexes: pd.Series, seed: int) -> np.ndarray:
    """Each image's age corrected by the lines fitted on the other folds."""
    sexes = sexes.reset_index(drop=True)
    corrected = np.empty(len(answered))
    for fitting, held_out in KFold(FOLDS, shuffle=True, random_state=seed).split(answered):
        fitted = fit_site_correction(head, answered[fitting], truth[fitting], sexes.iloc[fitting])
        corrected[held_out] = fitted.corrected(answered[held_out], sexes.iloc[held_out])
    return corrected


def bias_figures(
    predicted: np.ndarray, truth: np.ndarray, sexes: pd.Series, resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Per sex (and all): images, bias (mean of predicted - true) with its bootstrap 95% interval, and MAE."""
    errors = np.asarray(predicted, float) - np.asarray(truth, float)
    sexes = sexes.reset_index(drop=True)
    random = np.random.default_rng(seed)
    figures = {}
    for group in ("F", "M", ALL):
        chosen = errors if group == ALL else errors[(sexes == group).to_numpy()]
        if len(chosen) == 0:
            continue
        means = random.choice(chosen, (resamples, len(chosen))).mean(axis=1)
        low, high = np.quantile(means, [0.025, 0.975])
        figures[group] = {"images": len(chosen), "bias": float(chosen.mean()), "bias_95": [float(low), float(high)],
                          "mae": float(np.abs(chosen).mean())}  # fmt: skip
    return figures

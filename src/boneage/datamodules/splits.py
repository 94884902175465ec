"""Subject-level train/val/test split, stratified by the target: age bins, classes, score quantiles.

Splitting images instead of subjects leaks: two radiographs of one child look alike, so a
model that saw one in training is graded on a near-copy. Every image of a subject goes to
the same set, and each stratum (an age bin, a class) contributes its share of subjects to
each set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from boneage.config.errors import ConfigError
from boneage.tasks.protocol import Head

SETS = ("train", "val", "test")
THIN_STRATA = ("refuse", "keep")

log = logging.getLogger(__name__)


@dataclass
class SubjectSplit:
    """Fractions of subjects held out for validation and test, per stratum, seeded."""

    test_fraction: float = 0.2
    val_fraction: float = 0.1
    stratum_width: float = 10.0  # a numeric head's strata: bins this wide in its unit (an age head's: its age bins)
    seed: int = 42
    min_subjects_per_bin: int = 3  # a thinner stratum (age bin, class) cannot be shared out between the sets
    thin_strata: str = "refuse"  # refuse | keep: a thinner stratum's subjects go to train (one to val if two or more)
    folds: int | None = None  # k-fold cross-validation (data.folds): test fixed, the rest rotated through k folds
    fold: int = 0  # with folds: the fold that is the validation set (data.fold; the others train)

    def __post_init__(self) -> None:
        for key in ("test_fraction", "val_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"data.split.{key} must be in [0, 1), not {value}.")
        if self.test_fraction + self.val_fraction >= 1.0:
            raise ConfigError(
                "data.split.test_fraction + data.split.val_fraction must leave subjects for "
                f"training; they sum to {self.test_fraction + self.val_fraction}."
            )
        if self.stratum_width <= 0:
            raise ConfigError(f"data.split.stratum_width must be positive, not {self.stratum_width}.")
        if self.thin_strata not in THIN_STRATA:
            raise ConfigError(f"data.split.thin_strata must be one of {list(THIN_STRATA)}, not {self.thin_strata!r}.")
        if self.folds is not None and not (self.folds >= 2 and 0 <= self.fold < self.folds):
            raise ConfigError(
                f"data.folds must be 2 or more and data.fold in [0, folds); got {self.folds}, {self.fold}."
            )

    def assign(self, table: pd.DataFrame, head: Head) -> pd.Series:
        """The set ('train', 'val' or 'test') of every row of `table`, by its subject, stratified
        by `head`'s strata (an age head's bins, a class head's classes...)."""
        strata = head.subject_strata(table[head.name], table["subject"], self.stratum_width).sort_index()
        self._check_strata_are_populated(strata, head)
        rng = np.random.default_rng(self.seed)
        subject_set = pd.Series("train", index=strata.index, dtype=object)
        dealt = 0  # subjects dealt to folds so far: strata continue the rotation, so folds stay equal in size
        for _, members in strata.groupby(strata, dropna=False):
            shuffled = rng.permutation(members.index.to_numpy())
            if len(shuffled) < self.min_subjects_per_bin:  # thin_strata=keep: learnt from, measured where it can be
                if len(shuffled) >= 2 and not self.folds and self.val_fraction > 0:
                    subject_set[shuffled[-1]] = "val"
                continue
            n_test = round(len(shuffled) * self.test_fraction)
            subject_set[shuffled[:n_test]] = "test"
            rest = shuffled[n_test:]
            if self.folds:
                in_fold = (dealt + np.arange(len(rest))) % self.folds == self.fold
                subject_set[rest[in_fold]] = "val"
                dealt += len(rest)
            else:
                subject_set[rest[: round(len(shuffled) * self.val_fraction)]] = "val"
        self._check_none_empty(subject_set)
        return table["subject"].map(subject_set).rename("set")

    def _check_strata_are_populated(self, strata: pd.Series, head: Head) -> None:
        counts = strata.value_counts(dropna=False).sort_index()
        thin = counts[counts < self.min_subjects_per_bin]
        if not len(thin):
            return
        listed = ", ".join(f"{head.stratum_name(stratum, self.stratum_width)}: {n}" for stratum, n in thin.items())
        if self.thin_strata == "keep":
            log.warning(
                "Strata with fewer than %d subjects are kept for training, with one subject in val where they have "
                "two or more, and none in test (data.split.thin_strata=keep; subjects: %s). The test's balanced "
                "accuracy and macro-F1 are means over the classes it holds, as the summary says.",
                self.min_subjects_per_bin, listed,
            )  # fmt: skip
            return
        remedy = head.thin_strata_remedy(self.stratum_width)
        raise ConfigError(
            f"Strata with fewer than {self.min_subjects_per_bin} subjects cannot be stratified into "
            f"train/val/test (subjects: {listed}). {remedy}, or lower data.split.min_subjects_per_bin, or keep them "
            "for training only (and val where they have two subjects or more): data.split.thin_strata=keep."
        )

    def _check_none_empty(self, subject_set: pd.Series) -> None:
        wanted = {"train": 1.0, "val": 1 / self.folds if self.folds else self.val_fraction, "test": self.test_fraction}
        counts = subject_set.value_counts()
        for name, fraction in wanted.items():
            if fraction > 0 and counts.get(name, 0) == 0:
                raise ConfigError(
                    f"The split leaves no subject in the {name} set ({len(subject_set)} subjects, "
                    f"data.split.{name}_fraction={fraction}, stratum_width={self.stratum_width}); "
                    "use more subjects, a larger fraction or wider strata."
                )


def split_summary(table: pd.DataFrame, target: str) -> dict[str, dict[str, float]]:
    """Images, subjects and statistics of the `target` column in each set of a table that has
    a 'set' column (mean and std of a number, the count of each class)."""
    summary = {}
    numeric = pd.api.types.is_numeric_dtype(table[target])
    for name in SETS:
        rows = table[table["set"] == name]
        sizes: dict = {"images": len(rows), "subjects": int(rows["subject"].nunique())}
        if numeric:
            sizes[f"{target}_mean"] = round(float(rows[target].mean()), 4) if len(rows) else None
            sizes[f"{target}_std"] = round(float(rows[target].std()), 4) if len(rows) > 1 else None
        else:
            sizes[f"{target}_counts"] = {str(k): int(v) for k, v in rows[target].value_counts().sort_index().items()}
        summary[name] = sizes
    return summary

"""The head protocol: what every head of a task does, from the label table to the report.

A task is a set of heads on one backbone. Every command (train, evaluate, predict, export,
serve) works head by head through the methods below and never asks which kind of task it
serves, so a head brings everything that is its own wherever it is used: an age head inside a
multi-task model gets its unit, its linear calibration, its Mondrian intervals and its clinical
report as a bone-age run does. A new head kind is written against this protocol;
`RegressionHead` and `ClassificationHead` are the two kinds, `AgeHead` and `OrdinalHead` refine
them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torchmetrics import MetricCollection

from boneage.tasks.markdown import figures_line


class Head(Protocol):
    """One target column of the table: how it is read, learnt, answered, trusted and reported.

    Beyond these, a head that answers classes has `classes` (in output order), and one that
    answers a value has `range` ((low, high), either None) and `spread(outputs)` (the standard
    deviation of a distribution loss's prediction, for intervals_scale=distribution).
    """

    name: str  # its role in data.source.columns, and the key of its figures and answers
    kind: str  # "regression" or "classification": what the sidecar and the served page call it
    answers_classes: bool  # class probabilities (temperature and prediction sets apply) or a value
    weight: float  # its share of the summed loss
    required: bool  # a row without its value is a bad row (True) or only leaves this head's loss
    calibrations: tuple[str, ...]  # the `calibrate=` methods it takes (linear, temperature)
    interval_groups: tuple[str, ...]  # the `intervals_by=` groupings of its Mondrian intervals
    group_columns: Mapping[str, str]  # the table column each of those groupings reads at answer time (sex)

    # --- the table and the split ---------------------------------------------------------------
    @property
    def outputs(self) -> int:
        """How many of the network's outputs are its own (1 for a value, one per class or bin)."""

    @property
    def unit(self) -> str | None:
        """The unit its values are answered and reported in (an age head: its table's), or None."""

    def read(self, raw: pd.Series) -> pd.Series:
        """Its column as the table holds it, in the type it learns from."""

    def problems(self, values: pd.Series, source: Any) -> pd.Series:
        """What is wrong with each row's value (None where nothing is), for the bad-rows report."""

    def fit(self, train: pd.Series, source: Any) -> None:
        """Learns what it needs from the training rows (a scale, the classes) and its `source`."""

    def state(self) -> dict[str, Any]:
        """What the checkpoint and the export must carry beyond tensors (classes, unit)."""

    def restore(self, state: Mapping[str, Any], source: Any = None) -> None:
        """Takes up `state` again; `source` answers what a checkpoint of an earlier version lacks."""

    def targets(self, values: pd.Series) -> np.ndarray:
        """The values as training targets (numbers, class indices with -1 for none)."""

    def subject_strata(self, values: pd.Series, subjects: pd.Series, width: float) -> pd.Series:
        """Each subject's stratum for the split (a value bin `width` wide, a quantile, a class)."""

    def stratum_name(self, stratum: Any, width: float) -> str:
        """A stratum as the thin-strata error names it."""

    def thin_strata_remedy(self, width: float) -> str:
        """What to change when a stratum has too few subjects to split."""

    def balance_weights(self, values: pd.Series, balance: Mapping[str, Any]) -> np.ndarray | None:
        """Per-image weights of data.balance (None: no balancing)."""

    def describe(self, values: pd.Series) -> dict[str, Any]:
        """Its column's statistics for the run record."""

    def trivial(self, train: pd.Series, evaluated: pd.Series) -> dict[str, Any]:
        """What the trivial predictor (the training mean, the majority class) scores on `evaluated`."""

    # --- the network's outputs -------------------------------------------------------------------
    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """Its outputs as answers: values in its unit, or class probabilities, one row per image."""

    def blendable(self, targets: torch.Tensor) -> torch.Tensor:
        """The targets as Mixup blends them."""

    def losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One loss per image, and which images have this target at all."""

    @property
    def metric_names(self) -> list[str]:
        """The metrics logged per epoch (`<stage>/<metric>`, or `<stage>/<head>/<metric>`)."""

    def metric_collection(self, prefix: str) -> MetricCollection:
        """Those metrics as torchmetrics objects."""

    def update(self, metrics: MetricCollection, decoded: torch.Tensor, targets: torch.Tensor) -> None:
        """Adds a batch to the epoch's metrics (images without the target left out)."""

    def explained(self, decoded: torch.Tensor) -> torch.Tensor:
        """Per image, the column of its answer a heat map explains."""

    def summary_columns(self) -> list[tuple[str, str]]:
        """(title, metric) of the end-of-run summary."""

    def trivial_columns(self, trivial: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict]]:
        """(title, value per stage) of the trivial predictor's figures in that summary."""

    def summary_notes(self, trivial: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """The lines under its summary table: what its figures are in, what the trivial predictor
        answers, and which classes a set lacks."""

    # --- answers: predict, serve, export ---------------------------------------------------------
    def columns(self) -> list[str]:
        """The names of its answer's columns (its value, or p_<class> per class)."""

    def description(self) -> dict[str, Any]:
        """What the export's sidecar and GET /model say of it."""

    def clipped(self, values: np.ndarray) -> np.ndarray:
        """Its answers within its declared range (values), or as they are (probabilities)."""

    def answer(self, values: np.ndarray) -> dict[str, Any]:
        """serve's answer for one image (its row of `decode`)."""

    def prediction_columns(self, decoded: np.ndarray) -> pd.DataFrame:
        """predict's columns for its answers."""

    def answer_extras(self, written: pd.DataFrame, prefix: str, levels: Sequence[float]) -> None:
        """Columns of predict beyond the answer and its interval (an age beside the chronological age)."""

    # --- trust and evaluation --------------------------------------------------------------------
    def group_of(self, rows: pd.DataFrame, values: np.ndarray, by: str, width: float) -> np.ndarray:
        """Each image's Mondrian group `by` (one of `interval_groups`; value bins `width` wide), from
        what is known at answer time (a table column, the predicted value: never the truth)."""

    def evaluation(
        self, true: pd.Series, decoded: np.ndarray, train: pd.Series, rows: pd.DataFrame, settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Its figures on the evaluated images (`rows`, with the evaluate command's `settings`)."""

    def report_groups(self, true: pd.Series, rows: pd.DataFrame, settings: Mapping[str, Any]) -> dict[str, pd.Series]:
        """The groups its interval coverage is also reported by (age bin, sex), by the truth."""

    def evaluation_extras(
        self, rows: pd.DataFrame, table: pd.DataFrame, prefix: str, line: Mapping[str, float],
        settings: Mapping[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        """Figures its evaluation adds once its answers and intervals are in `table` (columns
        `<prefix>predicted`, `<prefix>predicted_uncalibrated` where `line` calibrated them,
        `<prefix>lower_<level>`...): the calibration per age bin, the age against the chronological age."""

    def report_lines(self, figures: Mapping[str, Any], level: int) -> list[str]:
        """report.md's Markdown for its figures; `level`: the heading level of its sections."""

    def evaluation_line(self, figures: Mapping[str, Any]) -> str:
        """Its figures in one line, as evaluate prints them."""


class WithoutExtras:
    """The hooks a head kind may leave as they are: nothing added to predict's columns, to
    evaluate's figures or to the coverage groups, and its figures printed in one line. The age
    head fills them; the two kinds inherit these."""

    def answer_extras(self, written: pd.DataFrame, prefix: str, levels: Sequence[float]) -> None:
        """Nothing beyond the answer and its interval or set."""

    def report_groups(self, true: pd.Series, rows: pd.DataFrame, settings: Mapping[str, Any]) -> dict[str, pd.Series]:
        return {}

    def evaluation_extras(
        self, rows: pd.DataFrame, table: pd.DataFrame, prefix: str, line: Mapping[str, float],
        settings: Mapping[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        return {}

    def evaluation_line(self, figures: Mapping[str, Any]) -> str:
        return figures_line(figures)

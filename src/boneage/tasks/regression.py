"""A regression head: one continuous target (an age, a quality score), standardised for training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau
from torch import nn
from torchmetrics import (
    KendallRankCorrCoef,
    MeanAbsoluteError,
    MeanSquaredError,
    MetricCollection,
    PearsonCorrCoef,
    SpearmanCorrCoef,
)

from boneage.config.errors import ConfigError, DataError
from boneage.tasks.balance import balance_weights
from boneage.tasks.losses import ClassificationLoss
from boneage.tasks.markdown import comparison_lines, figure_table, interval_lines
from boneage.tasks.metrics import regression_metrics
from boneage.tasks.protocol import WithoutExtras

# The names a task's metrics may have, and what computes each (torchmetrics, per epoch).
METRICS = {
    "mae": MeanAbsoluteError,
    "rmse": lambda: MeanSquaredError(squared=False),
    "pearson": PearsonCorrCoef,
    "spearman": SpearmanCorrCoef,
    "plcc": PearsonCorrCoef,  # the image-quality names of the same correlations
    "srcc": SpearmanCorrCoef,
    "krcc": KendallRankCorrCoef,
}


class RegressionHead(WithoutExtras, nn.Module):
    """One value per image, trained on the target standardised by the training set's mean and
    standard deviation (kept as buffers): one lr and one Huber delta then fit any unit.

    `required`: a row without the value is a bad row; otherwise (multi-task) it only leaves
    this head's loss. `quantiles`: the split is stratified by this many quantile bins. `unit`
    names what its values are in (shown beside every answer); `range` ([low, high], either may be
    null) is what its values can be: answers and intervals are clipped to it (a score of 0-100).
    """

    kind = "regression"  # what the sidecar and the serve page call it
    answers_classes = False
    calibrations: tuple[str, ...] = ()  # an age head adds linear calibration
    interval_groups: tuple[str, ...] = ()  # an age head adds Mondrian groups (sex, age bin)
    group_columns: ClassVar[dict[str, str]] = {}  # the table column each of its interval groups reads at answer time

    def __init__(
        self,
        loss: nn.Module | None = None,
        weight: float = 1.0,
        metrics: Sequence[str] = ("mae", "rmse", "plcc", "srcc", "krcc"),
        required: bool = True,
        quantiles: int = 5,
        name: str = "score",
        unit: str | None = None,
        range: Sequence[float | None] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(loss, ClassificationLoss):
            raise ConfigError(
                f"A regression head's loss must be a regression loss (loss=mae, mse, huber, smooth_l1 or "
                f"mean_variance), not {type(loss).__name__}."
            )
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ConfigError(f"Unknown regression metric(s) {sorted(unknown)}; known: {sorted(METRICS)}.")
        self.name = name
        self.loss = loss if loss is not None else nn.L1Loss(reduction="none")
        self.weight = weight
        self.metric_names = list(metrics)
        self.required = required
        self.quantiles = quantiles
        self.outputs = getattr(self.loss, "head_outputs", 1)  # a distribution loss asks for one logit per bin
        self.unit = unit
        low, high = range if range is not None else (None, None)
        if low is not None and high is not None and not low < high:
            raise ConfigError(f"The {name} head's range must be [low, high] with low < high, not {list(range)}.")
        self.range = (low, high)
        self.register_buffer("mean", torch.tensor(0.0))
        self.register_buffer("std", torch.tensor(1.0))

    # --- the table -------------------------------------------------------------------------
    def read(self, raw: pd.Series) -> pd.Series:
        return pd.to_numeric(raw, errors="coerce").astype(float)

    def problems(self, values: pd.Series, source: Any) -> pd.Series:
        """What is wrong with each row's value (None where nothing is)."""
        problems = pd.Series(None, index=values.index, dtype=object)
        if self.required:
            problems[values.isna()] = f"{self.name} missing or not a number"
        return problems

    def fit(self, train: pd.Series, source: Any = None) -> None:
        """The training values' scale; a column with one value cannot be learnt from."""
        present = train.dropna()
        if present.nunique() < 2:
            raise DataError(
                f"The {self.name} column has {present.nunique()} distinct value(s) among the {len(present)} "
                "training images: there is nothing to learn. Check data.source.columns."
            )
        self.mean.fill_(float(present.mean()))
        self.std.fill_(float(present.std()) or 1.0)

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: Mapping[str, Any], source: Any = None) -> None:
        """Nothing beyond the buffers, which the checkpoint's state dict restores."""

    def targets(self, values: pd.Series) -> np.ndarray:
        return values.to_numpy(np.float32)

    def subject_strata(self, values: pd.Series, subjects: pd.Series, width: float) -> pd.Series:
        """Each subject's stratum: quantile bins of its mean value."""
        means = values.groupby(subjects).mean()
        return pd.qcut(means, q=min(self.quantiles, means.nunique()), labels=False, duplicates="drop")

    def stratum_name(self, stratum: Any, width: float) -> str:
        return f"{self.name} quantile {int(stratum) + 1}"

    def thin_strata_remedy(self, width: float) -> str:
        """What to change when a stratum has too few subjects to split."""
        return (
            f"Add subjects, or stratify by fewer quantile bins (the {self.name} head's quantiles, now {self.quantiles})"
        )

    def balance_weights(self, values: pd.Series, balance: Mapping[str, Any]) -> np.ndarray | None:
        """data.balance: weights from how common each image's value is (bins of bin_width)."""
        return balance_weights(
            values.to_numpy(float), balance.get("method"), bin_width=balance.get("bin_width", 1.0),
            power=balance.get("power", 1.0), kernel_sigma=balance.get("kernel_sigma", 2.0),
        )  # fmt: skip

    def describe(self, values: pd.Series) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in values.describe().items() if k != "count"}

    def trivial(self, train: pd.Series, evaluated: pd.Series) -> dict[str, float]:
        """What always answering the training mean scores."""
        return {"mean_predictor_mae": round(float((evaluated - train.mean()).abs().mean()), 4)}

    # --- the network's outputs -------------------------------------------------------------
    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """Values in the table's unit, one column."""
        return (self._standardised(outputs) * self.std + self.mean)[:, None]

    def _standardised(self, outputs: torch.Tensor) -> torch.Tensor:
        decode = getattr(self.loss, "decode", None)  # a distribution loss knows how to read its bins
        return decode(outputs) if decode else outputs.squeeze(1).float()

    def blendable(self, targets: torch.Tensor) -> torch.Tensor:
        """The targets as mixup blends them: values, as they are."""
        return targets

    def spread(self, outputs: torch.Tensor) -> torch.Tensor:
        """The standard deviation of the predicted distribution (loss=mean_variance only)."""
        variance = getattr(self.loss, "variance", None)
        if variance is None:
            raise ConfigError("intervals_scale=distribution needs a model trained with loss=mean_variance.")
        return variance(outputs).sqrt() * self.std

    def losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One loss per image, and which images have this target at all."""
        present = torch.isfinite(targets)
        standardised = (torch.where(present, targets, self.mean) - self.mean) / self.std
        predictions = outputs if hasattr(self.loss, "decode") else self._standardised(outputs)
        losses = self.loss(predictions, standardised)
        if losses.shape != standardised.shape:
            raise ConfigError(
                f"{type(self.loss).__name__} returned shape {tuple(losses.shape)}, not one loss per image: "
                "set reduction: none in its loss/ config (boneage averages, weighted by data.balance)."
            )
        return losses, present

    def metric_collection(self, prefix: str) -> MetricCollection:
        return MetricCollection({name: METRICS[name]() for name in self.metric_names}, prefix=prefix)

    def update(self, metrics: MetricCollection, decoded: torch.Tensor, targets: torch.Tensor) -> None:
        present = torch.isfinite(targets)
        if present.any():
            metrics.update(decoded[present, 0], targets[present].float())

    def explained(self, decoded: torch.Tensor) -> torch.Tensor:
        """The column a heat map explains: the value's own."""
        return torch.zeros(len(decoded), dtype=torch.long)

    def summary_columns(self) -> list[tuple[str, str]]:
        return [(name, name) for name in self.metric_names]

    def trivial_columns(self, trivial: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict]]:
        """(title, value per stage) of the trivial predictor's figures (the numbers among them)."""
        first = next(iter(trivial.values()), {})
        return [
            (figure.replace("_", " "), {stage: figures[figure] for stage, figures in trivial.items()})
            for figure, value in first.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]

    def summary_notes(self, trivial: Mapping[str, Mapping[str, Any]]) -> list[str]:
        unit = f"values in {self.unit}; " if self.unit else ""
        return [f"({unit}the mean predictor always answers the training set's mean {self.name})"]

    # --- answers ---------------------------------------------------------------------------
    def columns(self) -> list[str]:
        return [self.name]

    def description(self) -> dict[str, Any]:
        """What an export's sidecar and GET /model say of the head: its kind, output column and range."""
        return {"kind": self.kind, "columns": self.columns(), "range": list(self.range)}

    def clipped(self, values: np.ndarray) -> np.ndarray:
        """Values within the declared range."""
        low, high = self.range
        if low is None and high is None:
            return values
        return np.clip(values, -np.inf if low is None else low, np.inf if high is None else high)

    def answer(self, values: np.ndarray) -> dict[str, Any]:
        """serve's answer for one image: the value, named as predict's column is."""
        return {f"predicted_{self.name}": float(values[0])}

    def prediction_columns(self, decoded: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({f"predicted_{self.name}": decoded[:, 0]})

    # --- trust and evaluation --------------------------------------------------------------
    def group_of(self, rows: pd.DataFrame, values: np.ndarray, by: str, width: float) -> np.ndarray:
        raise ConfigError(f"The {self.name} head's intervals take no groups (intervals_by={by}).")

    def evaluation(
        self, true: pd.Series, decoded: np.ndarray, train: pd.Series, rows: pd.DataFrame, settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        """MAE, RMSE, bias, R2 and the three correlations image quality is judged by."""
        present = true.notna().to_numpy()
        truth, predicted = true.to_numpy(float)[present], decoded[present, 0]
        figures = regression_metrics(truth, predicted)
        figures["plcc"], figures["srcc"] = figures.pop("pearson_r"), figures.pop("spearman_rho")
        figures["krcc"] = _kendall(truth, predicted)
        return figures | self.trivial(train, true) | ({"unit": self.unit} if self.unit else {})

    def report_lines(self, figures: Mapping[str, Any], level: int) -> list[str]:
        """Its figures as a table, then its intervals and an ensemble's members."""
        lines = figure_table(figures)
        if "members" in figures:
            compared = {"ensemble": figures | {"pearson_r": figures["plcc"]}, **figures["members"]}
            lines += comparison_lines("Ensemble against its members (same images)", "model", compared, level)
        return lines + interval_lines(figures.get("intervals", {}), self.unit, level)


def _kendall(true: np.ndarray, predicted: np.ndarray) -> float:
    return float(kendalltau(true, predicted)[0]) if len(true) > 1 else float("nan")

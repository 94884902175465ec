"""A regression head: one continuous target (an age, a quality score), standardised for training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
from boneage.tasks.metrics import regression_metrics

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


class RegressionHead(nn.Module):
    """One value per image, trained on the target standardised by the training set's mean and
    standard deviation (kept as buffers): one lr and one Huber delta then fit any unit.

    `required`: a row without the value is a bad row; otherwise (multi-task) it only leaves
    this head's loss. `quantiles`: the split is stratified by this many quantile bins.
    """

    kind = "regression"  # what the sidecar and the serve page call it
    answers_classes = False

    def __init__(
        self,
        loss: nn.Module | None = None,
        weight: float = 1.0,
        metrics: Sequence[str] = ("mae", "rmse", "plcc", "srcc", "krcc"),
        required: bool = True,
        quantiles: int = 5,
        name: str = "score",
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

    def fit(self, train: pd.Series) -> None:
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

    def restore(self, state: dict[str, Any]) -> None:
        """Nothing beyond the buffers, which the checkpoint's state dict restores."""

    def targets(self, values: pd.Series) -> np.ndarray:
        return values.to_numpy(np.float32)

    def subject_strata(self, values: pd.Series, subjects: pd.Series, bin_width: float | None) -> pd.Series:
        """Each subject's stratum: quantile bins of its mean value."""
        means = values.groupby(subjects).mean()
        return pd.qcut(means, q=min(self.quantiles, means.nunique()), labels=False, duplicates="drop")

    def stratum_name(self, stratum: Any, bin_width: float | None) -> str:
        return f"{self.name} quantile {int(stratum) + 1}"

    def thin_strata_remedy(self, bin_width: float | None) -> str:
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

    # --- evaluation ------------------------------------------------------------------------
    def columns(self) -> list[str]:
        return [self.name]

    def unit(self, age_unit: str) -> str | None:
        """The unit of its values, where boneage knows one (an age head: the table's `age_unit`)."""
        return None

    def description(self) -> dict[str, Any]:
        """What an export's sidecar says of the head: its kind and output column."""
        return {"kind": self.kind, "columns": self.columns()}

    def answer(self, values: np.ndarray) -> dict[str, Any]:
        """serve's answer for one image: the value."""
        return {"kind": self.kind, "value": float(values[0])}

    def prediction_columns(self, decoded: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({f"predicted_{self.name}": decoded[:, 0]})

    def evaluation(self, true: pd.Series, decoded: np.ndarray, train: pd.Series) -> dict[str, Any]:
        """MAE, RMSE, bias, R2 and the three correlations image quality is judged by."""
        present = true.notna().to_numpy()
        truth, predicted = true.to_numpy(float)[present], decoded[present, 0]
        figures = regression_metrics(truth, predicted)
        figures["plcc"], figures["srcc"] = figures.pop("pearson_r"), figures.pop("spearman_rho")
        figures["krcc"] = _kendall(truth, predicted)
        return figures | self.trivial(train, true)


def _kendall(true: np.ndarray, predicted: np.ndarray) -> float:
    return float(kendalltau(true, predicted)[0]) if len(true) > 1 else float("nan")

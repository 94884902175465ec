"""A classification head: one categorical column, its classes as the user wrote them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from boneage.config.errors import ConfigError, DataError
from boneage.tasks.balance import balance_weights
from boneage.tasks.losses import ClassificationLoss
from boneage.tasks.markdown import figure_table, fmt, heading
from boneage.tasks.protocol import WithoutExtras

TOP_K_FROM = 6  # top-k accuracy is reported once there are more classes than this minus one


def as_written(value: Any) -> Any:
    """A cell as the user meant it: integers stay integers (pandas reads 3 as 3.0 beside a gap)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value.strip() if isinstance(value, str) else value


class ClassificationHead(WithoutExtras, nn.Module):
    """One logit per class; probabilities by softmax. `classes` are declared in the config or
    read from the training rows (sorted), and kept in the checkpoint. The loss's class counts
    (for class weights and logit adjustment) come from the training rows too.
    """

    kind = "classification"  # what the sidecar and the serve page call it
    answers_classes = True  # class probabilities: temperature scaling and prediction sets apply
    calibrations = ("temperature",)
    interval_groups: tuple[str, ...] = ()
    group_columns: ClassVar[dict[str, str]] = {}
    unit = None  # classes have none

    def __init__(
        self,
        loss: ClassificationLoss | None = None,
        weight: float = 1.0,
        classes: list[Any] | None = None,
        top_k: int = 5,
        required: bool = True,
        name: str = "label",
    ) -> None:
        super().__init__()
        if loss is not None and not isinstance(loss, ClassificationLoss):
            raise ConfigError(
                f"A classification head's loss must be a classification loss (loss=cross_entropy, class_weighted, "
                f"focal or logit_adjusted), not {type(loss).__name__}."
            )
        self.name = name
        self.loss = loss if loss is not None else ClassificationLoss()
        self.weight = weight
        self.declared = [as_written(value) for value in classes] if classes else None
        self.classes: list[Any] = list(self.declared or [])
        self.top_k = top_k
        self.required = required
        if self.declared:
            self.loss.fit_counts(torch.ones(len(self.classes)))  # even counts until the training rows are seen

    @property
    def outputs(self) -> int:
        return len(self.classes)

    # --- the table -------------------------------------------------------------------------
    def read(self, raw: pd.Series) -> pd.Series:
        return raw.map(as_written, na_action="ignore").astype(object).where(raw.notna(), None)

    def problems(self, values: pd.Series, source: Any) -> pd.Series:
        problems = pd.Series(None, index=values.index, dtype=object)
        missing = values.isna()
        if self.required:
            problems[missing] = f"{self.name} missing (an empty cell or NaN)"
        if self.declared:
            outside = ~missing & ~values.isin(self.declared)
            problems[outside] = values[outside].map(
                lambda value: f"{self.name} {value!r} is not one of the declared classes {self.declared}"
            )
        return problems

    def fit(self, train: pd.Series, source: Any = None) -> None:
        """The classes (unless declared) and each one's training count."""
        present = train.dropna()
        found = sorted(present.unique().tolist(), key=lambda value: (isinstance(value, str), value))
        self.classes = list(self.declared or found)
        if len(self.classes) < 2:
            raise DataError(
                f"The {self.name} column holds {len(self.classes)} class(es) ({self.classes}) among the "
                f"{len(present)} training images: a classifier needs two or more. Check data.source.columns."
            )
        counts = present.map({value: index for index, value in enumerate(self.classes)}).value_counts()
        self.loss.fit_counts(torch.tensor([counts.get(index, 0) for index in range(len(self.classes))]))

    def check_sets(self, values: pd.Series, sets: pd.Series) -> None:
        """Every class of val and test must be learnt in train."""
        trained = set(values[sets == "train"].dropna())
        unseen = values[(sets != "train") & values.notna() & ~values.isin(trained)]
        if len(unseen):
            counts = ", ".join(f"{value!r}: {count}" for value, count in unseen.value_counts().items())
            raise DataError(
                f"{self.name}: class(es) in the val/test sets but not in train ({counts} image(s)); the model "
                "could never predict them. Add training images of them, raise data.split.min_subjects_per_bin "
                "so that the split refuses them, or drop those rows."
            )

    def state(self) -> dict[str, Any]:
        return {"classes": self.classes}

    def restore(self, state: Mapping[str, Any], source: Any = None) -> None:
        self.classes = list(state["classes"])
        self.loss.fit_counts(torch.ones(len(self.classes)))  # the right shape; the state dict holds the counts

    def targets(self, values: pd.Series) -> np.ndarray:
        index = {value: position for position, value in enumerate(self.classes)}
        return values.map(index).fillna(-1).to_numpy(np.int64)

    def subject_strata(self, values: pd.Series, subjects: pd.Series, width: float) -> pd.Series:
        """Each subject's stratum: its most frequent class."""
        return values.groupby(subjects).agg(lambda labels: labels.mode().iloc[0] if labels.notna().any() else None)

    def stratum_name(self, stratum: Any, width: float) -> str:
        return f"{self.name} {stratum!r}"

    def thin_strata_remedy(self, width: float) -> str:
        """What to change when a class has too few subjects to split."""
        return "Add subjects of these classes, merge them with a neighbour, or drop their rows"

    def balance_weights(self, values: pd.Series, balance: Mapping[str, Any]) -> np.ndarray | None:
        """data.balance.method=sampler: each image drawn with weight count(class)^-power."""
        if balance.get("method") == "lds":
            raise ConfigError(
                "data.balance.method=lds smooths the density over neighbouring values, which classes do not "
                "have: use data.balance.method=sampler, or class weights in the loss (loss.class_weights)."
            )
        return balance_weights(
            self.targets(values).astype(float), balance.get("method"), 1.0, balance.get("power", 1.0)
        )

    def describe(self, values: pd.Series) -> dict[str, int]:
        return {str(value): int(count) for value, count in values.value_counts().sort_index().items()}

    def trivial(self, train: pd.Series, evaluated: pd.Series) -> dict[str, Any]:
        """What always answering the training set's most common class scores; and which classes the
        evaluated set holds: balanced accuracy and macro-F1 are means over those alone."""
        majority = train.mode().iloc[0]
        present = evaluated.dropna()
        return {
            "majority_class": majority,
            "majority_class_acc": round(float((present == majority).mean()), 4) if len(present) else None,
            "chance_balanced_acc": round(1 / len(self.classes), 4),
            **self.class_coverage(present),
        }

    def class_coverage(self, present: pd.Series) -> dict[str, Any]:
        """How many of the classes `present` holds ("classes present", shown beside the balanced
        accuracy it is a mean over), and the names of those it lacks."""
        held = set(present)
        return {
            "classes_present": sum(value in held for value in self.classes),
            "classes_missing": [value for value in self.classes if value not in held],
        }

    # --- the network's outputs -------------------------------------------------------------
    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities, one column per class."""
        return outputs.float().softmax(dim=1)

    def blendable(self, targets: torch.Tensor) -> torch.Tensor:
        """The targets as mixup blends them: class probabilities."""
        return self.soft_targets(targets)

    def soft_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Class indices (-1: missing) as one-hot rows; mixed (soft) rows pass as they are."""
        if targets.is_floating_point():
            return targets
        return F.one_hot(targets.clamp_min(0), len(self.classes)).float() * (targets >= 0)[:, None]

    def losses(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        soft = self.soft_targets(targets)
        return self.loss(outputs, soft), soft.sum(dim=1) > 0

    @property
    def metric_names(self) -> list[str]:
        top_k = [f"top{self.top_k}_acc"] if len(self.classes) >= TOP_K_FROM else []
        return ["acc", "balanced_acc", "macro_f1", *top_k]

    def metric_collection(self, prefix: str) -> MetricCollection:
        n = len(self.classes)
        metrics = {
            "acc": MulticlassAccuracy(n, average="micro"),
            "balanced_acc": MulticlassAccuracy(n, average="macro"),  # the mean recall over classes
            "macro_f1": MulticlassF1Score(n, average="macro"),
        }
        if n >= TOP_K_FROM:
            metrics[f"top{self.top_k}_acc"] = MulticlassAccuracy(n, top_k=min(self.top_k, n), average="micro")
        return MetricCollection(metrics, prefix=prefix)

    def update(self, metrics: MetricCollection, decoded: torch.Tensor, targets: torch.Tensor) -> None:
        soft = self.soft_targets(targets)
        present = soft.sum(dim=1) > 0
        if present.any():
            metrics.update(decoded[present], soft[present].argmax(dim=1))

    def explained(self, decoded: torch.Tensor) -> torch.Tensor:
        """The column a heat map explains: the predicted class's probability."""
        return decoded.argmax(dim=1)

    def summary_columns(self) -> list[tuple[str, str]]:
        return [(name, name) for name in self.metric_names]

    def trivial_columns(self, trivial: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict]]:
        """(title, value per stage) of the majority-class predictor's accuracy and the classes present."""
        return [
            (figure.replace("_", " "), {stage: figures[figure] for stage, figures in trivial.items()})
            for figure in ("majority_class_acc", "chance_balanced_acc", "classes_present")
        ]

    def summary_notes(self, trivial: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """What the trivial predictor answers, and a line for each set that lacks some of the
        classes: its class-averaged figures are means over the classes it holds."""
        notes = [f"(the majority predictor always answers the training set's most common {self.name})"]
        for stage, figures in trivial.items():
            if missing := figures.get("classes_missing"):
                held = figures["classes_present"]
                notes.append(
                    f"{stage} has no image of {self.name} class(es) {', '.join(map(repr, missing))}: its balanced_acc "
                    f"and macro_f1 are means over the {held} of {held + len(missing)} classes it holds"
                )
        return notes

    # --- answers ---------------------------------------------------------------------------
    def columns(self) -> list[str]:
        return [f"p_{value}" for value in self.classes]

    def clipped(self, values: np.ndarray) -> np.ndarray:
        """Probabilities are always in range."""
        return values

    def description(self) -> dict[str, Any]:
        """What an export's sidecar says of the head: its kind, classes in order, output columns."""
        return {"kind": self.kind, "classes": self.classes, "columns": self.columns()}

    def answer(self, probabilities: np.ndarray) -> dict[str, Any]:
        """serve's answer for one image: the class, its probability, and every class's."""
        best = int(probabilities.argmax())
        return {
            "class": self.classes[best],
            "probability": float(probabilities[best]),
            "probabilities": {str(value): float(p) for value, p in zip(self.classes, probabilities, strict=True)},
        }

    def prediction_columns(self, decoded: np.ndarray) -> pd.DataFrame:
        """The predicted class, its probability and every class's probability."""
        best = decoded.argmax(axis=1)
        table = pd.DataFrame(
            {f"predicted_{self.name}": [self.classes[i] for i in best], f"{self.name}_probability": decoded.max(1)}
        )
        return pd.concat([table, pd.DataFrame(decoded, columns=self.columns())], axis=1)

    # --- trust and evaluation --------------------------------------------------------------
    def group_of(self, rows: pd.DataFrame, values: np.ndarray, by: str, width: float) -> np.ndarray:
        raise ConfigError(f"The {self.name} head's prediction sets take no groups (intervals_by={by}).")

    def evaluation(
        self, true: pd.Series, decoded: np.ndarray, train: pd.Series, rows: pd.DataFrame, settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Accuracy, balanced accuracy, macro-F1, top-k and per-class recall against the
        majority-class predictor, and the confusion matrix (true classes by row, as a table)."""
        present = true.notna().to_numpy()
        truth = self.targets(true[present])
        if (truth < 0).any():
            unknown = sorted({str(value) for value in true[present][truth < 0]})
            raise DataError(f"{self.name}: class(es) {unknown} are not among the model's classes {self.classes}.")
        probabilities = decoded[present]
        predicted = probabilities.argmax(axis=1)
        n = len(self.classes)
        confusion = np.zeros((n, n), dtype=int)
        np.add.at(confusion, (truth, predicted), 1)
        support = confusion.sum(axis=1)
        recall = np.divide(confusion.diagonal(), support, out=np.full(n, np.nan), where=support > 0)
        precision_base = confusion.sum(axis=0)
        precision = np.divide(confusion.diagonal(), precision_base, out=np.zeros(n), where=precision_base > 0)
        f1 = np.divide(2 * precision * np.nan_to_num(recall), precision + np.nan_to_num(recall),
                       out=np.zeros(n), where=(precision + np.nan_to_num(recall)) > 0)  # fmt: skip
        labels = [str(value) for value in self.classes]
        figures = {
            "n": int(present.sum()),
            "acc": float((predicted == truth).mean()),
            "balanced_acc": float(np.nanmean(recall)),
            "macro_f1": float(f1[support > 0].mean()),
            **self.trivial(train, true),  # with classes_present: what balanced_acc and macro_f1 are means over
            "per_class": {
                label: {"n": int(support[i]), "recall": None if np.isnan(recall[i]) else float(recall[i])}
                for i, label in enumerate(labels)
            },
            "confusion": pd.DataFrame(confusion, index=pd.Index(labels, name="true"), columns=labels),
        }
        if n >= TOP_K_FROM:
            top = np.argsort(-probabilities, axis=1)[:, : self.top_k]
            figures[f"top{self.top_k}_acc"] = float((top == truth[:, None]).any(axis=1).mean())
        return figures

    def report_lines(self, figures: Mapping[str, Any], level: int) -> list[str]:
        """Its figures, recall per class, the temperature's effect and its prediction sets."""
        lines = figure_table(figures)
        if missing := figures.get("classes_missing"):
            lines += ["", f"No image of class(es) {', '.join(map(repr, missing))} here: balanced acc and macro F1 "
                          f"are means over the {figures['classes_present']} classes present."]  # fmt: skip
        if per_class := figures.get("per_class"):
            lines += ["", "| class | images | recall |", "|---|---|---|"]
            lines += [f"| {label} | {v['n']} | {fmt(v['recall'])} |" for label, v in per_class.items()]
        if calibration := figures.get("calibration"):
            lines += [
                "",
                f"Calibrated on the validation images, {temperature_sentence(calibration)} (before -> after).",
            ]
        if sets := figures.get("prediction_sets"):
            lines += heading(level, f"Prediction sets (conformal, calibrated on {sets['calibrated_on']})")
            lines += ["| level | coverage | mean classes per set | single-class share |", "|---|---|---|---|"]
            lines += [f"| {name} | {fmt(v['coverage'])} | {fmt(v['mean_size'])} | {fmt(v['single_class_share'])} |"
                      for name, v in sets.items() if name.endswith("%")]  # fmt: skip
        return lines


def temperature_sentence(figures: Mapping[str, float]) -> str:
    """A head's temperature and its effect on the calibration error, in words."""
    return (f"temperature {figures['temperature']:.3f}: ECE {figures['ece_before']:.3f} -> {figures['ece_after']:.3f}, "
            f"adaptive ECE {figures['adaptive_ece_before']:.3f} -> {figures['adaptive_ece_after']:.3f}")  # fmt: skip

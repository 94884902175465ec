"""A model's gate: fitted on its validation images (runs, ensembles), or as its export stored it;
and the evidence each image shows it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from boneage.config.errors import ConfigError
from boneage.evaluation.ensemble import MemberPredictions, predict_members, shared_rows
from boneage.selfcheck.gate import Gate
from boneage.selfcheck.methods import METHODS, NEIGHBOURS, Evidence, available


def evidence_of(members: Sequence[Any], predicted: MemberPredictions) -> Evidence:
    """The gate's evidence in the members' answers on some images: the first member's
    features, the class heads' probabilities and, with several members or views, the spread of
    the first value head's answers."""
    task = members[0].task
    per_head = task.per_head(predicted.combined)
    probabilities = {name: per_head[name] for name, head in task.heads.items() if head.answers_classes}
    if predicted.features is None:
        raise ConfigError(f"{members[0].name} gives no features to validate images by: give ood_quantile=null.")
    return Evidence(predicted.features, probabilities, _disagreement(task, predicted))


def _disagreement(task: Any, predicted: MemberPredictions) -> np.ndarray | None:
    views = np.concatenate([np.asarray(member_views) for member_views in predicted.views.values()])
    values = [index for index, head in enumerate(task.heads.values()) if not head.answers_classes]
    if len(views) < 2 or not values:
        return None
    first = task.names[values[0]]
    answers = np.stack([task.per_head(view)[first][:, 0] for view in views])
    return answers.std(axis=0)


def fit_gate(
    members: Sequence[Any], tta: Sequence[str] | str, weights: Sequence[float] | None, method: str, quantile: float,
    neighbours: int = NEIGHBOURS,
) -> Gate:  # fmt: skip
    """Every method fitted on the members' shared validation images (strata: the first head's
    age bins, data.split.stratum_width wide, or classes)."""
    rows = shared_rows(members, "val")
    evidence = evidence_of(members, predict_members(members, rows, tta, weights))
    strata = _strata(members[0], rows)
    fitted, validation = {}, {}
    for name in available(evidence):
        fitted[name], validation[name] = METHODS[name].fitted(evidence, strata, neighbours)
    return Gate(fitted, validation, method, quantile)


def _strata(member: Any, rows: pd.DataFrame) -> np.ndarray:
    """Each validation image's stratum by the first head's truth (images without one: their own)."""
    name, head = next(iter(member.task.heads.items()))
    truth = head.read(rows[name]) if name in rows else pd.Series(np.nan, index=rows.index)
    width = member.config.data.split.get("stratum_width", 1)
    known = truth.notna()
    strata = pd.Series(-1, index=rows.index, dtype=object)
    strata[known] = head.subject_strata(truth[known], truth[known].index.to_series(), width).to_numpy()
    return pd.factorize(strata.astype(str))[0]


def gate_of(
    members: Sequence[Any], tta: Sequence[str] | str, weights: Sequence[float] | None, method: str,
    quantile: float | None, neighbours: int = NEIGHBOURS,
) -> Gate | None:  # fmt: skip
    """The gate of a run or ensemble (fitted on its validation images), or the one an export
    carries; None with ood_quantile=null."""
    if quantile is None:
        return None
    stored = getattr(members[0], "gate", None)
    if not hasattr(members[0], "gate"):
        return fit_gate(members, tta, weights, method, quantile, neighbours)
    if stored is None:
        raise ConfigError(
            f"{members[0].file.parent} was exported by an earlier boneage, without self-validation: export its run "
            "again, or give ood_quantile=null to answer every image unchecked."
        )
    if tta not in ("none", ["none"]) and "disagreement" in stored.fitted:  # fitted on the export's own views
        fitted = {name: fitted for name, fitted in stored.fitted.items() if name != "disagreement"}
        stored = Gate(fitted, stored.validation, method, quantile)
    return stored.with_choice(method, quantile)

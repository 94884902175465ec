"""Each self-validation method measured: how many real hands it wrongly refuses, and how well it
tells them from images the model was not made for (AUROC, and the share of hands refused at the
threshold that catches 95% of those images: FPR at 95% TPR)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from boneage.selfcheck.gate import Gate
from boneage.selfcheck.methods import Evidence

CAUGHT = 0.95  # the share of foreign images caught at which the hands' refusal rate is read


def methods_table(gate: Gate, hands: Evidence, foreign: Evidence) -> dict[str, dict[str, float]]:
    """Per method: false_refusal (hands over its threshold), refused (foreign images over it),
    auroc and fpr_at_95_tpr (foreign images the positives)."""
    table = {}
    for name in gate.names:
        on_hands, on_foreign, threshold = gate.scores(hands, name), gate.scores(foreign, name), gate.threshold(name)
        labels = np.r_[np.zeros(len(on_hands)), np.ones(len(on_foreign))]
        table[name] = {
            "false_refusal": float(np.mean(on_hands > threshold)),
            "refused": float(np.mean(on_foreign > threshold)),
            "auroc": float(roc_auc_score(labels, np.r_[on_hands, on_foreign])),
            "fpr_at_95_tpr": float(np.mean(on_hands >= np.quantile(on_foreign, 1 - CAUGHT))),
        }
    return table


def best_method(table: dict[str, dict[str, Any]]) -> str:
    """The method that separates best (AUROC), then refuses fewest hands."""
    return max(table, key=lambda name: (round(table[name]["auroc"], 3), -table[name]["false_refusal"]))

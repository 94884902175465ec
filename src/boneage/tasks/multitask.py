"""Several heads on one backbone: each a regression or a classification, each with its weight.

A row may lack some labels: it trains the heads it has, and is left out of the others'
losses and metrics (a head's `required: false`). Metrics are logged per head
(`val/<head>/acc`); `monitor` names the one that chooses checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping

from boneage.tasks.base import Head, Task


class MultiTask(Task):
    """`heads`: name -> head (boneage.tasks.ClassificationHead or RegressionHead), each name the
    role of a column in data.source.columns; `stratify`: the head the split is stratified by."""

    def __init__(self, heads: Mapping[str, Head], monitor: str, mode: str, stratify: str | None = None) -> None:
        super().__init__(dict(heads), monitor, mode, stratify)

"""What a run is worth to a search: `optimized_metric`, one metric name or a list of them (a
multi-objective search), looked up among the run's final metrics and its measured speed. The
search's trials and the runs table read objectives by this one rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def measured(metrics: Mapping[str, Any], speed: Mapping | None) -> dict[str, Any]:
    """Every value an objective may name: the measured speeds and the metrics (a metric wins a
    shared name)."""
    return {**(speed or {}), **metrics}


def objective_values(names: str | Sequence[str] | None, metrics: Mapping[str, Any], speed: Mapping | None):
    """The value (one name) or values (a list) of `names`; None where any is missing."""
    values = measured(metrics, speed)
    if names is None or isinstance(names, str):
        return values.get(names)
    found = [values.get(name) for name in names]
    return None if any(value is None for value in found) else found

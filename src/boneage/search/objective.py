"""What a trial is worth to its study: `optimized_metric`, one metric name or a list of them (a
multi-objective search), looked up among the run's final metrics and its measured speed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def objective_values(names: str | Sequence[str] | None, metrics: Mapping[str, Any], speed: Mapping | None):
    """The value (one name) or values (a list) of `names`; None where any is missing."""
    measured = {**(speed or {}), **metrics}
    if names is None or isinstance(names, str):
        return measured.get(names)
    values = [measured.get(name) for name in names]
    return None if any(value is None for value in values) else values


def as_values(returned: Any) -> list[float]:
    """One objective value or several, as the list of floats Optuna's `tell` takes."""
    return [float(value) for value in (returned if isinstance(returned, list | tuple) else [returned])]

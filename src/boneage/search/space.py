"""A search space in Hydra's override syntax, as Optuna distributions.

`hydra.sweeper.params` and the command line's sweep overrides say what each trial samples:
`interval(0.0, 0.7)` is a float range, `tag(log, interval(1e-5, 1e-3))` a log-scaled one,
`range(16, 64, 16)` a stepped integer one and `choice(mae, huber)` a
categorical. A plain `key=value` is fixed: every trial gets it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, Override, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from boneage.config.errors import ConfigError


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> value as written, for every trial

    @classmethod
    def from_overrides(cls, overrides: Iterable[str]) -> SearchSpace:
        space = cls()
        for override in OverridesParser.create().parse_overrides(list(overrides)):
            key = override.get_key_element()
            if override.is_sweep_override():
                space.distributions[key] = distribution(override)
                space.fixed.pop(key, None)
            else:
                space.fixed[key] = override.get_value_element_as_str()
                space.distributions.pop(key, None)
        return space

    def overrides(self, trial: optuna.Trial) -> list[str]:
        """The trial's command-line overrides: its sampled values (the trial was asked for
        `distributions`), then the fixed ones."""
        return [f"{key}={value}" for key, value in (trial.params | self.fixed).items()]


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override (`choice`, `range`, `interval`, `tag(log, ...)`)."""
    value = override.value()
    if isinstance(value, Glob):
        raise ConfigError(f"{override.input_line}: a search takes choice(...), range(...) or interval(...), not glob")
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    log = "log" in getattr(value, "tags", set())
    if override.is_range_sweep():
        if any(isinstance(bound, float) for bound in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop - value.step, step=value.step)
        return IntDistribution(int(value.start), int(value.stop) - int(value.step), step=int(value.step))
    if override.is_interval_sweep():  # Hydra's intervals are of floats; integers come from range(...)
        return FloatDistribution(value.start, value.end, log=log)
    raise ConfigError(f"{override.input_line}: a search takes choice(...), range(...) or interval(...)")

"""`python -m boneage.train`: train, test and record one run, or a sweep of them (`-m`).

The command lives in `boneage.train.command`, the job it runs in `boneage.train.run`; their
names (`main`, `train`) are imported from there when first asked for (PEP 562), so that
importing this package (as `python -m boneage.train` does first) imports neither.
"""

from importlib import import_module
from typing import Any

_HOMES = {"main": "boneage.train.command", "train": "boneage.train.run"}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)

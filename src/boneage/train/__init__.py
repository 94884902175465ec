"""`python -m boneage.train`: train, test and record one run, or a sweep of them (`-m`).

The command lives in `boneage.train.command`; its names (`main`, `train`) are imported from
there when first asked for (PEP 562), so that `python -m boneage.train`, which imports this
package before it runs `__main__`, can start the loader workers' fork server first.
"""

from importlib import import_module
from typing import Any

__all__ = ["main", "train"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module("boneage.train.command"), name)

"""Data: label tables, the demo data set, subject-level splits, transforms, loaders.

The package's names are imported when first asked for (PEP 562), not with the package: the
loader workers' fork server imports `datamodules.dataset` alone, not Lightning with the data
module, and is ready to start workers in a second rather than four.
"""

from importlib import import_module
from typing import Any

_MODULE_OF = {
    "ImageDataModule": "image_datamodule",
    "SubjectSplit": "splits",
    "SyntheticHands": "synthetic",
    "TableSource": "table",
}
__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULE_OF[name]}"), name)

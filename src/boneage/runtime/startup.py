"""A command's start-up: its imports run with Python's garbage collector paused.

Importing torch, Lightning and timm creates millions of objects that live as long as the
process, and the collector, which runs after every few hundred allocations, walks them over and
over while they are made: about a fifth of a command's import time. Once imported they are
frozen, so later collections (every training step allocates) skip them, and processes forked
from the process share their memory pages rather than copy them: the recipe of Python's
`gc.freeze` documentation (disable early, freeze before forking, collect as usual afterwards).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection inside; what exists on leaving is frozen, then collection is as it was
    (a pause inside another, or in a process that had collection off, leaves it off)."""
    was_collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_collecting:
            gc.enable()

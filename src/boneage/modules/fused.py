"""When an optimizer may run fused: one rule for the module and the config check.

A fused Adam/AdamW/SGD unscales mixed-precision gradients inside its own step. Lightning clips
gradients before that step, so it refuses to clip for such an optimizer under 16-mixed and
bf16-mixed alike. Gradient clipping is on by default, so there the optimizer runs unfused.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


def clips_under_mixed_precision(precision: Any, gradient_clip_val: Any) -> bool:
    """Whether Lightning clips gradients in a mixed-precision run (then nothing may be fused)."""
    return bool(gradient_clip_val) and "mixed" in str(precision)


def fused_flag(optimizer: functools.partial, wanted: bool, precision: Any, gradient_clip_val: Any) -> dict[str, bool]:
    """`{"fused": True}` for a GPU run's optimizer where it works: one that takes the flag and was
    not given it by the user, in a run whose gradients Lightning does not clip under mixed precision."""
    takes_flag = "fused" in inspect.signature(optimizer.func).parameters
    works = takes_flag and not clips_under_mixed_precision(precision, gradient_clip_val)
    return {"fused": True} if wanted and works and "fused" not in optimizer.keywords else {}

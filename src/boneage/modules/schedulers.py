"""Learning-rate schedules that need the run's length, which is only known at fit time.

Each builder takes the optimizer and, by keyword, `total_steps` (optimizer steps in the
whole run) and/or `max_epochs`; `configure_optimizers` passes whichever a builder names.
"""

from __future__ import annotations

import logging

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, OneCycleLR, SequentialLR

log = logging.getLogger(__name__)

DEFAULT_WARMUP_EPOCHS = 5  # warmup_epochs=null: this many epochs of a long run...
DEFAULT_WARMUP_SHARE = 0.1  # ...but never more than this share of the run's optimizer steps


def warmup_cosine(
    optimizer: Optimizer,
    *,
    total_steps: int,
    max_epochs: int,
    warmup_epochs: float | None = None,
    warmup_start_factor: float = 0.01,
    eta_min: float = 1e-7,
) -> LRScheduler:
    """Linear warmup over `warmup_epochs`, then cosine decay to `eta_min`; stepped per batch.

    Without `warmup_epochs` the warmup fits the run: 5 epochs, at most a tenth of its steps (a
    fixed 5 epochs made 5 of a 6-epoch run's epochs warmup, its lr never at full strength). A
    warmup set to half the run or more is kept, with a warning naming the key.
    """
    steps_per_epoch = max(1, total_steps // max(1, max_epochs))
    if warmup_epochs is None:
        warmup_steps = min(round(DEFAULT_WARMUP_EPOCHS * steps_per_epoch), int(DEFAULT_WARMUP_SHARE * total_steps))
    else:
        warmup_steps = min(round(warmup_epochs * steps_per_epoch), total_steps - 1)
        if warmup_steps >= total_steps / 2:
            log.warning(
                "scheduler.scheduler.warmup_epochs=%g warms up for %d of the run's %d optimizer steps: the lr reaches "
                "its value only in the second half. Lower it, or set it to null (at most a tenth of the steps).",
                warmup_epochs, warmup_steps, total_steps,
            )  # fmt: skip
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=eta_min)
    if warmup_steps <= 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=warmup_start_factor, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def one_cycle(
    optimizer: Optimizer,
    *,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> LRScheduler:
    """OneCycle peaking at the optimizer's configured lr; stepped per batch."""
    return OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )

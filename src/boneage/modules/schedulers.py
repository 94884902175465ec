"""Learning-rate schedules that need the run's length, which is only known at fit time.

Each builder takes the optimizer and, by keyword, `total_steps` (optimizer steps in the
whole run) and/or `max_epochs`; `configure_optimizers` passes whichever a builder names.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, OneCycleLR, SequentialLR


def warmup_cosine(
    optimizer: Optimizer,
    *,
    total_steps: int,
    max_epochs: int,
    warmup_epochs: float = 5,
    warmup_start_factor: float = 0.01,
    eta_min: float = 1e-7,
) -> LRScheduler:
    """Linear warmup over `warmup_epochs`, then cosine decay to `eta_min`; stepped per batch."""
    steps_per_epoch = max(1, total_steps // max(1, max_epochs))
    warmup_steps = min(round(warmup_epochs * steps_per_epoch), total_steps - 1)
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

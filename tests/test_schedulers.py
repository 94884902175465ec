"""Learning-rate schedules: warmup then cosine, one cycle."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from boneage.modules.schedulers import one_cycle, warmup_cosine


def lrs(build, steps: int, lr: float = 1e-3) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build(optimizer)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_warmup_rises_linearly_to_the_lr_then_cosine_falls_to_eta_min():
    # 10 epochs of 10 steps, 2 warmup epochs
    seen = lrs(lambda opt: warmup_cosine(opt, total_steps=100, max_epochs=10, warmup_epochs=2, eta_min=1e-6), 100)
    assert seen[0] == pytest.approx(1e-5)  # warmup_start_factor 0.01 x lr
    assert all(a < b for a, b in pairwise(seen[:20]))
    assert max(seen) == pytest.approx(1e-3, rel=1e-6)
    assert seen.index(max(seen)) == 20
    assert all(a >= b for a, b in pairwise(seen[20:]))
    assert seen[-1] == pytest.approx(1e-6, abs=1e-6)


def test_one_cycle_peaks_at_the_configured_lr():
    seen = lrs(lambda opt: one_cycle(opt, total_steps=100, pct_start=0.3), 100)
    assert max(seen) == pytest.approx(1e-3, rel=1e-3)
    assert 25 <= seen.index(max(seen)) <= 31
    assert seen[-1] < 1e-6

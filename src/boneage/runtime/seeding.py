"""Randomness as a function of (seed, epoch[, sample]), so a resumed run repeats the original.

Lightning restores weights, optimizer and loop state from a checkpoint but not the random
generators; if each epoch drew from wherever the generators had got to, an epoch redone
after a resume would see another shuffle, other augmentations and other dropout masks.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def derived_seed(*keys: int) -> int:
    """A well-mixed 32-bit seed from several integers (seed, epoch, sample index...)."""
    return int(np.random.SeedSequence([int(key) for key in keys]).generate_state(1)[0])


def seed_generators(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (dropout, anything else global)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

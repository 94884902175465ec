"""Regression mixup: two images and their ages blended by one and the same lambda."""

from __future__ import annotations

import torch

MIXED_KEYS = ("image", "age", "inputs", "weight")  # what a training batch may carry that mixes


def mix_batch(batch: dict[str, torch.Tensor], lam: float, partners: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each sample blended with sample `partners[i]`: lam x own + (1 - lam) x partner's.

    Images, ages, table inputs and loss weights all use the same lambda, so a mixed image
    is labelled with the age it is a blend of.
    """
    mixed = dict(batch)
    for key in MIXED_KEYS:
        if key in batch:
            value = batch[key]
            mixed[key] = lam * value + (1 - lam) * value[partners].to(value.dtype)
    return mixed


class Mixup:
    """Draws lambda ~ Beta(alpha, alpha) and a random pairing for a share `prob` of batches."""

    def __init__(self, alpha: float, prob: float = 1.0) -> None:
        self.alpha = alpha
        self.prob = prob

    @property
    def enabled(self) -> bool:
        return self.alpha > 0 and self.prob > 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.enabled or torch.rand(()) >= self.prob:
            return batch
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        partners = torch.randperm(len(batch["age"]), device=batch["age"].device)
        return mix_batch(batch, lam, partners)

"""Mixup and CutMix: two images and their targets blended by one and the same lambda.

Regression targets (ages, scores) blend as numbers; class targets as one-hot rows, so the
loss sees soft targets (lam of one class, 1 - lam of the other).
"""

from __future__ import annotations

from typing import Any

import torch

BLENDED_KEYS = ("inputs", "weight")  # what a training batch may carry beside the image and targets that mixes


def mix_batch(
    batch: dict[str, torch.Tensor], lam: float, partners: torch.Tensor, task: Any, box: tuple | None = None
) -> dict[str, torch.Tensor]:
    """Each sample blended with sample `partners[i]`: lam x own + (1 - lam) x partner's.

    Images (or, with `box` (top, bottom, left, right), the partner's patch pasted in: CutMix),
    table inputs, loss weights and every head's target all use the same lambda, so a mixed
    image is labelled with what it is a blend of (each head's `blendable` targets).
    """
    mixed = dict(batch)
    image = batch["image"]
    if box is None:
        mixed["image"] = lam * image + (1 - lam) * image[partners]
    else:
        top, bottom, left, right = box
        mixed["image"] = image.clone()
        mixed["image"][..., top:bottom, left:right] = image[partners][..., top:bottom, left:right]
    for key in (*task.heads, *BLENDED_KEYS):
        if key in batch:
            value = task.heads[key].blendable(batch[key]) if key in task.heads else batch[key]
            mixed[key] = lam * value + (1 - lam) * value[partners].to(value.dtype)
    return mixed


class Mixup:
    """For a share `prob` of batches, draws lambda ~ Beta(alpha, alpha) and a random pairing.
    With both `alpha` (mixup) and `cutmix_alpha` set, each mixed batch is one or the other."""

    def __init__(self, alpha: float, prob: float, cutmix_alpha: float, task: Any) -> None:
        self.alpha = alpha
        self.prob = prob
        self.cutmix_alpha = cutmix_alpha
        self.task = task

    @property
    def enabled(self) -> bool:
        return (self.alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.enabled or torch.rand(()) >= self.prob:
            return batch
        image = batch["image"]
        partners = torch.randperm(len(image), device=image.device)
        cutmix = self.cutmix_alpha > 0 and (self.alpha <= 0 or torch.rand(()) < 0.5)
        alpha = self.cutmix_alpha if cutmix else self.alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        if not cutmix:
            return mix_batch(batch, lam, partners, self.task)
        box = _box(image.shape[-2:], lam)
        top, bottom, left, right = box
        pasted = (bottom - top) * (right - left) / (image.shape[-2] * image.shape[-1])
        return mix_batch(batch, 1 - pasted, partners, self.task, box)


def _box(size: torch.Size, lam: float) -> tuple[int, int, int, int]:
    """A random box covering about 1 - lam of the image (clipped at its edges)."""
    height, width = size
    cut = (1 - lam) ** 0.5
    centre_y, centre_x = int(torch.randint(height, ())), int(torch.randint(width, ()))
    half_h, half_w = int(height * cut / 2), int(width * cut / 2)
    return (
        max(centre_y - half_h, 0), min(centre_y + half_h, height),
        max(centre_x - half_w, 0), min(centre_x + half_w, width),
    )  # fmt: skip

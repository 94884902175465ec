"""Test-time augmentation drawn from the run's own training augmentations.

A view is a fixed setting of a transform the network was trained with, applied within the
same canvas as training applied it: zoom and shift are the training `Affine` at half its
largest scale change or shift; a flip is offered only where training flipped. (Resizing the
input to another resolution would show the network bones of a size it never saw, a
systematic bias for an age model.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import torch
from hydra.utils import instantiate

from boneage.config.errors import ConfigError

TTA_CHOICES = ("none", "hflip", "zoom", "shift", "multiscale")  # multiscale: the former name of zoom
View = list[A.BasicTransform]


def tta_views(tta: Sequence[str] | str, augment: Mapping[str, Any] | None) -> dict[str, View]:
    """The views to average, by name, the plain image first; `augment` is the run's data.augment."""
    names = [tta] if isinstance(tta, str) else list(tta)
    unknown = [name for name in names if name not in TTA_CHOICES]
    if unknown:
        raise ConfigError(f"tta={unknown} is not one of {list(TTA_CHOICES)}.")
    views: dict[str, View] = {"plain": []}
    for name in names:
        views |= _views(name, augment or {})
    return views


def uses_tta(tta: Sequence[str] | str) -> bool:
    return any(name != "none" for name in ([tta] if isinstance(tta, str) else tta))


def _views(name: str, augment: Mapping[str, Any]) -> dict[str, View]:
    if name == "none":
        return {}
    if name == "hflip":
        if not _find(augment, "HorizontalFlip"):
            raise ConfigError(
                "tta=hflip: this run was not trained with horizontal flips (data.augment has no HorizontalFlip), "
                "so a mirrored hand is unlike every image it saw; use tta=zoom or tta=shift."
            )
        return {"hflip": [A.HorizontalFlip(p=1.0)]}
    affine = _find(augment, "Affine")
    if affine is None:
        raise ConfigError(f"tta={name}: this run was trained without an Affine augmentation (data.augment.affine).")
    if name in ("zoom", "multiscale"):
        low, high = _range(affine.get("scale", 1.0))
        return {f"zoom{scale:g}": [_fixed(affine, scale=scale)] for scale in ((1 + low) / 2, (1 + high) / 2)}
    low, high = _range(affine.get("translate_percent", 0.0))
    shift = max(abs(low), abs(high)) / 2
    return {f"shift{sign}": [_fixed(affine, translate=sign * shift)] for sign in (-1, 1)}


def _find(augment: Mapping[str, Any], transform: str) -> Mapping[str, Any] | None:
    return next((node for node in augment.values() if str(node.get("_target_", "")).endswith(f".{transform}")), None)


def _range(value: Any) -> tuple[float, float]:
    if isinstance(value, int | float):
        return float(value), float(value)
    low, high = value
    return float(low), float(high)


def _fixed(affine: Mapping[str, Any], scale: float = 1.0, translate: float = 0.0) -> A.BasicTransform:
    """The training Affine (its border and fill) with one fixed scale and shift, no rotation."""
    return instantiate(affine, scale=(scale, scale), translate_percent=(translate, translate), rotate=(0.0, 0.0), p=1.0)


class Views:
    """An albumentations-like callable: image -> {"image": the views stacked (V, C, H, W)}."""

    def __init__(self, pipelines: Sequence[A.Compose]) -> None:
        self.pipelines = list(pipelines)

    def __call__(self, image: Any) -> dict[str, torch.Tensor]:
        return {"image": torch.stack([pipeline(image=image)["image"] for pipeline in self.pipelines])}

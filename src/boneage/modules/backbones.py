"""timm backbones by name, with pretrained weights from the hub or a local file."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

import timm
from torch import nn

from boneage.config.errors import ConfigError

log = logging.getLogger(__name__)


def create_backbone(name: str, pretrained: bool = False, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """A timm model without its classifier: images in, pooled features out (`feature_width`).

    `weights` is a local checkpoint (.safetensors, .pth, .bin) of the same architecture;
    it replaces the hub download, so machines without internet can still start pretrained.
    `kwargs` go to the model's constructor (model.kwargs, e.g. img_size for ViT and Swin).
    """
    check_model_name(name)
    overlay = None
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.weights={weights!r}: no such file.")
        overlay = {"file": str(path)}
    if pretrained and overlay is None:
        log.info("Loading pretrained weights for %s from the hub (or its local cache)", name)
    try:
        return timm.create_model(
            name, pretrained=pretrained or overlay is not None, num_classes=0, pretrained_cfg_overlay=overlay, **kwargs
        )
    except TypeError as error:
        raise ConfigError(f"model.kwargs={kwargs} do not fit {name!r}: {error}") from error
    except OSError as error:
        raise ConfigError(
            f"Could not download pretrained weights for {name!r} ({error.__class__.__name__}). "
            "Train from scratch with model.pretrained=false, or point model.weights at a local "
            "copy of the weights (e.g. the model.safetensors file from the model's hub page)."
        ) from error


def feature_width(backbone: nn.Module) -> int:
    """Width of what the backbone returns: some models (MobileNetV3...) widen their pooled
    features in a pre-logits layer, so `num_features` alone would be wrong."""
    return getattr(backbone, "head_hidden_size", None) or backbone.num_features


def check_model_name(name: str) -> None:
    if not timm.is_model(name):
        raise ConfigError(f"model.name={name!r} is not a timm model.{_suggestions(name)}")


def _suggestions(name: str) -> str:
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else " See timm.list_models()."

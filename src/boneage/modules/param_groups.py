"""Optimizer parameter groups: the head at the configured lr, the backbone at its own.

Fine-tuning a pretrained backbone usually wants a smaller lr than the freshly initialised
head (`backbone_lr_scale`), and often smaller still for the layers nearest the input
(`layer_decay`, timm's layer-wise lr decay as used for ViT and ConvNeXt fine-tuning).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from timm.optim import param_groups_layer_decay
from torch import nn


def parameter_groups(
    backbone: nn.Module,
    head_parameters: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float,
    backbone_lr_scale: float = 1.0,
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Groups named `head` and `backbone` (or `backbone.layer<i>` with layer decay), each with its lr."""
    head = {"name": "head", "params": list(head_parameters), "lr": lr}
    backbone_lr = lr * backbone_lr_scale
    if not layer_decay:
        return [head, {"name": "backbone", "params": list(backbone.parameters()), "lr": backbone_lr}]
    groups = param_groups_layer_decay(backbone, weight_decay=weight_decay, layer_decay=layer_decay)
    for group in groups:
        group["lr"] = backbone_lr * group.pop("lr_scale")
    return [head, *_named_by_depth(groups)]


def _named_by_depth(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """timm's groups named by depth (layer0 nearest the input), for the lr monitor's curves.

    Layers that end up with the same lr and weight decay (all of them with layer_decay=1)
    share one group: the optimizer treats them alike, and group names must be unique.
    """
    depths = sorted({group["lr"] for group in groups})
    named: dict[str, dict[str, Any]] = {}
    for group in groups:
        decay = "decay" if group["weight_decay"] else "no_decay"
        name = f"backbone.layer{depths.index(group['lr'])}.{decay}"
        if name in named:
            named[name]["params"] += group["params"]
        else:
            named[name] = group | {"name": name, "params": list(group["params"])}
    return list(named.values())

"""The training techniques a run used, in a few words: for its record and the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def active_techniques(config: Mapping[str, Any]) -> list[str]:
    """Every technique switched on in a resolved run config, e.g. ['ema 0.999', 'mixup 0.4']."""
    training = config.get("training") or {}
    model, data = config.get("model") or {}, config.get("data") or {}
    averaging = (config.get("callbacks") or {}).get("averaging") or {}
    kind = str(averaging.get("_target_", "")).rsplit(".", 1)[-1].lower()
    switches = {
        f"ema {averaging.get('decay')}": kind == "ema",
        f"swa from {averaging.get('swa_epoch_start')} lr {averaging.get('swa_lr')}": kind == "swa",
        f"freeze backbone {training.get('freeze_backbone_epochs')} epochs": training.get("freeze_backbone_epochs"),
        f"backbone lr x{training.get('backbone_lr_scale')}": training.get("backbone_lr_scale", 1.0) != 1.0,
        f"layer decay {training.get('layer_decay')}": training.get("layer_decay"),
        f"mixup {training.get('mixup_alpha')}": training.get("mixup_alpha"),
        f"balance {(data.get('balance') or {}).get('method')}": (data.get("balance") or {}).get("method"),
        f"inputs {'+'.join(data.get('extra_inputs') or [])}": data.get("extra_inputs"),
        "grad checkpointing": model.get("grad_checkpointing"),
        "channels_last": training.get("channels_last"),
        "compile": training.get("compile"),
    }
    return [name for name, active in switches.items() if active]

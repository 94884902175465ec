"""Inference speed of a trained model, recorded so runs can be compared on cost too."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader


@torch.inference_mode()
def measure_inference(model: nn.Module, loader: DataLoader, device: torch.device, batches: int = 5) -> dict[str, Any]:
    """Milliseconds per image of the model alone (float32, data already on the device)."""
    model = model.eval().to(device)
    images = [batch["image"].to(device) for _, batch in zip(range(batches + 1), loader, strict=False)]
    if not images:
        return {}
    model(images[0])  # warm-up: allocation, cudnn autotuning
    _synchronize(device)
    started = time.perf_counter()
    for batch in images[1:] or images:
        model(batch)
    _synchronize(device)
    counted = sum(len(batch) for batch in images[1:] or images)
    return {
        "inference_ms_per_image": round(1000 * (time.perf_counter() - started) / counted, 4),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch_size": len(images[0]),
        "precision": "32-true",
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

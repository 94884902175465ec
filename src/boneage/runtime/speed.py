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
    batches = [_to(batch, device) for _, batch in zip(range(batches + 1), loader, strict=False)]
    if not batches:
        return {}
    with torch.inference_mode():  # as served: no autograd graph
        model(batches[0]["image"], batches[0].get("inputs"))  # warm-up: allocation, cudnn autotuning
        synchronize(device)
        started = time.perf_counter()
        for batch in batches[1:] or batches:
            model(batch["image"], batch.get("inputs"))
        synchronize(device)
    counted = sum(len(batch["image"]) for batch in batches[1:] or batches)
    return {
        "inference_ms_per_image": round(1000 * (time.perf_counter() - started) / counted, 4),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch_size": len(batches[0]["image"]),
        "precision": "32-true",
    }


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: batch[key].to(device) for key in ("image", "inputs") if key in batch}


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a timer measures it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

"""Each backbone sees its input normalised as its pretrained weights were trained (timm's
`pretrained_cfg`), in training, in the checkpoint, in the exported file; a checkpoint of an
earlier version, which records none, keeps ImageNet's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from boneage.evaluation.exported import SIDECAR
from boneage.evaluation.inference import load_run
from boneage.export import export
from boneage.modules.pixels import IMAGENET
from tests.helpers import compose_app, write_run

HALF = {"mean": [0.5] * 3, "std": [0.5] * 3}
BACKBONES = [("efficientnet_b1", HALF), ("vit_small_patch16_224", HALF), ("convnext_tiny", IMAGENET)]


def normalised_by_hand(images: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
    mean, std = (torch.tensor(stats[key]).view(1, 3, 1, 1) for key in ("mean", "std"))
    return (images.float().expand(-1, 3, -1, -1) / 255 - mean) / std


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "stats"), BACKBONES, ids=[name for name, _ in BACKBONES])
def test_a_backbone_is_normalised_with_its_weights_statistics_in_training_and_in_its_export(
    backbone, stats, tmp_path, data_dir
):
    size = ["+model.kwargs.img_size=32"] if backbone.startswith("vit") else []
    run = write_run(
        tmp_path / "run", [f"model.name={backbone}", "model.pretrained=false", "model.pixel_stats=null", *size]
    )
    trained = load_run(run)
    checkpoint = torch.load(trained.checkpoint, weights_only=False)
    assert checkpoint["hyper_parameters"]["pixel_stats"] == stats
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 1, 32, 32), dtype=np.uint8))
    module = trained.module
    with torch.no_grad():
        expected = module.task.decode(module.head(module.backbone(normalised_by_hand(images, stats))))
        assert torch.allclose(module(images), expected, atol=1e-5)  # the network as trained and evaluated
        exported = export(compose_app("export", [f"run={run}", "format=torchscript", f"output_dir={tmp_path / 'ts'}"]))
        member = json.loads((exported / SIDECAR).read_text())["members"][0]
        assert member["pixel_stats"] == stats
        answers, _features = torch.jit.load(str(exported / member["file"]))(images)  # features feed its gate
        assert torch.allclose(answers, expected, atol=1e-4)


def test_a_config_that_leaves_the_size_to_the_backbone_gets_its_weights_input_size():
    for model, size in (("efficientnet_b1", 240), ("vit_small", 224)):
        cfg = compose_app("train", [f"model={model}", "model.image_size=null"])
        assert cfg.data.image_size == size, model

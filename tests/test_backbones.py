"""Backbones by name: clear errors for unknown names and unreachable weights, local weights load."""

from __future__ import annotations

import huggingface_hub
import pytest
import timm
import torch

from boneage.config.errors import ConfigError
from boneage.modules.backbones import create_backbone
from boneage.modules.model import ImageModel
from boneage.tasks import AgeTask


def test_unknown_model_name_suggests_the_nearest_timm_names():
    with pytest.raises(ConfigError, match=r"model.name='efficientnet_b9'.*Did you mean: .*efficientnet_b"):
        create_backbone("efficientnet_b9")


def test_failed_weight_download_names_the_ways_out(monkeypatch):
    # No internet here: make the hub fail at once instead of after a minute of retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"model.pretrained=false.*model.weights"):
        create_backbone("test_resnet", pretrained=True)


def test_local_weights_file_replaces_the_download(tmp_path):
    source = timm.create_model("test_resnet")  # with its classifier, as weights files come
    torch.save(source.state_dict(), tmp_path / "test_resnet.pth")
    backbone = create_backbone("test_resnet", weights=str(tmp_path / "test_resnet.pth"))
    for name, parameter in backbone.state_dict().items():
        assert torch.equal(parameter, source.state_dict()[name]), name


def test_missing_weights_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model.weights=.*no such file"):
        create_backbone("test_resnet", weights=str(tmp_path / "absent.pth"))


def test_regressor_predicts_ages_on_the_training_scale():
    model = ImageModel("test_resnet", AgeTask(), dropout=0.0).eval()
    head = model.task.heads["age"]
    head.mean.fill_(120.0)  # months
    head.std.fill_(30.0)
    images = torch.randint(256, (4, 1, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        ages = model(images)
        standardised = model.head(model.features(images)).squeeze(1)
    assert ages.shape == (4,)
    assert standardised.std() > 0  # the head's outputs differ between images...
    torch.testing.assert_close(ages, standardised * 30.0 + 120.0)  # ...and forward() maps them to months

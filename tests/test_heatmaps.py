"""Grad-CAM heat maps for every backbone family boneage ships, and for models that take sex."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from boneage.evaluation.heatmaps import heat_maps
from boneage.evaluation.inference import load_run
from tests.helpers import write_run

FAMILIES = {  # a tiny timm model of each family (Swin: the smallest real one, at its own 224 px)
    "resnet": ["model.name=test_resnet"],
    "efficientnet": ["model.name=test_efficientnet"],
    "convnext": ["model.name=test_convnext"],
    "vit": ["model.name=test_vit", "model.image_size=160"],
    "swin": ["model.name=swin_tiny_patch4_window7_224", "model.image_size=224"],
    "resnet with sex": ["model.name=test_resnet", "data.extra_inputs=[sex]"],
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_heat_maps_are_made_for_every_backbone_family_at_the_input_size(tmp_path, family):
    """ViT tokens and Swin's channels-last maps are reshaped; a model that takes sex gets it."""
    run = load_run(write_run(tmp_path / "run", FAMILIES[family]))
    hand = np.zeros((96, 96), np.uint8)
    cv2.rectangle(hand, (10, 10), (50, 80), 255, -1)  # something to look at, left of centre
    cv2.imwrite(str(tmp_path / "hand.png"), hand)
    rows = pd.DataFrame({"image": [str(tmp_path / "hand.png")] * 2, "sex": ["F", "M"]})
    overlays = heat_maps(run, rows)
    size = run.settings["image_size"]
    assert [overlay.shape for overlay in overlays] == [(size, size, 3)] * 2
    assert all(overlay.dtype == np.uint8 for overlay in overlays)

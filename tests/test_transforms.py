"""Preprocessing: fit into the model's square, CLAHE, one gray byte a pixel; the model's normalisation."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from boneage.datamodules.transforms import build_pipeline, preprocessing
from boneage.modules.pixels import IMAGENET, GrayToNormalisedRGB


def radiograph(height: int = 120, width: int = 80) -> np.ndarray:
    rng = np.random.default_rng(0)
    low_contrast = 100 + 20 * np.sin(np.linspace(0, 12, width))[None, :] + rng.normal(0, 3, (height, width))
    return np.clip(low_contrast, 0, 255).astype(np.uint8)


def test_clahe_changes_the_pixels_and_off_leaves_them():
    image = radiograph()
    plain = build_pipeline(preprocessing(64, clahe=False))(image=image)["image"]
    equalised = build_pipeline(preprocessing(64, clahe=True, clahe_clip_limit=4.0))(image=image)["image"]
    assert not np.array_equal(plain.numpy(), equalised.numpy())
    assert equalised.float().std() > plain.float().std()  # CLAHE stretches local contrast


def test_any_aspect_ratio_fits_the_square_without_distortion():
    tall = build_pipeline(preprocessing(64))(image=radiograph(120, 60))["image"]
    assert tall.shape == (1, 64, 64)
    assert (tall[0, :, :15] == 0).all()  # side bands are black padding
    assert (tall[0, :, 24:40] > 0).all()


def test_loader_images_are_one_byte_gray_and_the_model_normalises_them_as_albumentations_did():
    gray = build_pipeline(preprocessing(32))(image=radiograph())["image"]
    assert gray.dtype == torch.uint8 and gray.shape == (1, 32, 32)
    on_the_device = GrayToNormalisedRGB(**IMAGENET)(gray[None])[0]
    in_the_loader = A.Compose(
        [A.ToRGB(num_output_channels=3), A.Normalize(IMAGENET["mean"], IMAGENET["std"]), ToTensorV2()]
    )
    assert torch.equal(on_the_device, in_the_loader(image=gray[0].numpy())["image"])  # bit for bit
    blended = GrayToNormalisedRGB(**IMAGENET)(gray[None].float())[0]  # Mixup hands over float pixels
    assert torch.equal(blended, on_the_device)

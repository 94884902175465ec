"""Preprocessing: fit into the model's square, CLAHE, gray to three channels."""

from __future__ import annotations

import numpy as np

from boneage.datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD, build_pipeline, preprocessing


def radiograph(height: int = 120, width: int = 80) -> np.ndarray:
    rng = np.random.default_rng(0)
    low_contrast = 100 + 20 * np.sin(np.linspace(0, 12, width))[None, :] + rng.normal(0, 3, (height, width))
    return np.clip(low_contrast, 0, 255).astype(np.uint8)


def test_clahe_changes_the_pixels_and_off_leaves_them():
    image = radiograph()
    plain = build_pipeline(preprocessing(64, clahe=False))(image=image)["image"]
    equalised = build_pipeline(preprocessing(64, clahe=True, clahe_clip_limit=4.0))(image=image)["image"]
    assert not np.allclose(plain.numpy(), equalised.numpy())
    assert equalised.std() > plain.std()  # CLAHE stretches local contrast


def test_any_aspect_ratio_fits_the_square_without_distortion():
    tall = build_pipeline(preprocessing(64))(image=radiograph(120, 60))["image"]
    assert tall.shape == (3, 64, 64)
    padding = (0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]  # black, normalised
    assert np.allclose(tall[0, :, :15].numpy(), padding, atol=1e-4)  # side bands are padding
    assert not np.allclose(tall[0, :, 24:40].numpy(), padding, atol=1e-4)


def test_gray_becomes_three_identical_channels_before_normalisation():
    tensor = build_pipeline(preprocessing(32))(image=radiograph())["image"]
    unnormalised = [tensor[c] * IMAGENET_STD[c] + IMAGENET_MEAN[c] for c in range(3)]
    assert np.allclose(unnormalised[0].numpy(), unnormalised[1].numpy(), atol=1e-5)
    assert np.allclose(unnormalised[0].numpy(), unnormalised[2].numpy(), atol=1e-5)

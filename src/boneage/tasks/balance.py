"""Counter target imbalance: per-image weights from how common each image's age (or class) is.

Bone-age tables crowd in mid-childhood; the youngest and oldest are rare and a plain loss
neglects them. Two remedies (data.balance.method), both from the same density estimate:
`sampler` draws images with these weights (rare age bins more often), `lds` keeps the
usual order and weights each image's loss instead, with the density first smoothed by a
Gaussian kernel over neighbouring bins (label distribution smoothing, Yang et al., ICML 2021).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from boneage.config.errors import ConfigError

METHODS = (None, "sampler", "lds")


def balance_weights(
    ages: np.ndarray, method: str | None, bin_width: float, power: float = 1.0, kernel_sigma: float = 2.0
) -> np.ndarray | None:
    """Weights (mean 1) proportional to density(age) ** -power; None when method is None.

    `power` 1 is full inverse frequency (with `sampler`: every age bin drawn equally
    often), 0 no re-balancing; 0.5 (inverse square root) is the usual compromise.
    """
    if method not in METHODS:
        raise ConfigError(f"data.balance.method must be one of {list(METHODS)}, not {method!r}.")
    if method is None:
        return None
    if bin_width <= 0:
        raise ConfigError(f"data.balance.bin_width must be positive, not {bin_width}.")
    bins = np.floor((ages - ages.min()) / bin_width).astype(int)
    density = np.bincount(bins).astype(float)
    if method == "lds":
        density = gaussian_filter1d(density, sigma=kernel_sigma, mode="constant")
    weights = density[bins] ** -power
    return (weights / weights.mean()).astype(np.float32)

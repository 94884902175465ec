"""Losses beyond torch's own: the mean-variance loss over an age distribution, and the
classification losses (soft-target cross-entropy, class weights, focal, logit adjustment).

Every loss boneage uses returns one value per image (`reduction="none"`): the module takes
their mean, weighted when the data re-weights rare ages (data.balance.method=lds).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MeanVarianceLoss(nn.Module):
    """Mean-variance loss (Pan et al., CVPR 2018) on a softmax over age bins.

    The head predicts a distribution over `bins` evenly spaced standardised ages in
    [-span, span]; the age is its mean. The loss is a soft cross-entropy to the true age
    (split between its two nearest bins) plus `mean_weight` x the squared error of the mean
    plus `variance_weight` x the distribution's variance, which rewards confident predictions.
    """

    def __init__(
        self, bins: int = 61, span: float = 3.5, mean_weight: float = 0.2, variance_weight: float = 0.05
    ) -> None:
        super().__init__()
        self.head_outputs = bins
        self.mean_weight = mean_weight
        self.variance_weight = variance_weight
        self.register_buffer("centres", torch.linspace(-span, span, bins), persistent=False)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """The expected standardised age of each row of logits."""
        return logits.float().softmax(dim=1) @ self.centres

    def variance(self, logits: torch.Tensor) -> torch.Tensor:
        """The variance of each row's age distribution (standardised units): the model's own spread."""
        probabilities = logits.float().softmax(dim=1)
        mean = probabilities @ self.centres
        return (probabilities * (self.centres - mean[:, None]) ** 2).sum(dim=1)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        mean, variance = self.decode(logits), self.variance(logits)
        cross_entropy = -(self.soft_labels(targets) * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
        return cross_entropy + self.mean_weight * (mean - targets) ** 2 / 2 + self.variance_weight * variance

    def soft_labels(self, targets: torch.Tensor) -> torch.Tensor:
        """Each target as weights on its two nearest bins, so that their mean is the target."""
        step = self.centres[1] - self.centres[0]
        position = ((targets - self.centres[0]) / step).clamp(0, len(self.centres) - 1)
        lower = position.floor().long().clamp(max=len(self.centres) - 2)
        upper_share = position - lower
        labels = torch.zeros(len(targets), len(self.centres), device=targets.device)
        labels.scatter_(1, lower[:, None], (1 - upper_share)[:, None])
        labels.scatter_add_(1, (lower + 1)[:, None], upper_share[:, None])
        return labels


CLASS_WEIGHTINGS = (None, "inverse", "effective")


def class_weights(counts: torch.Tensor, weighting: str | None, beta: float = 0.9999) -> torch.Tensor:
    """Per-class loss weights (mean 1) from the training counts: `inverse` is 1/n, `effective`
    the class-balanced (1 - beta) / (1 - beta^n) of Cui et al. (CVPR 2019), None all ones."""
    if weighting not in CLASS_WEIGHTINGS:
        raise ValueError(f"loss.class_weights must be one of {list(CLASS_WEIGHTINGS)}, not {weighting!r}.")
    counts = counts.float().clamp_min(1)
    if weighting is None:
        return torch.ones_like(counts)
    weights = 1 / counts if weighting == "inverse" else (1 - beta) / (1 - beta**counts)
    return weights / weights.mean()


class ClassificationLoss(nn.Module):
    """Cross-entropy on soft targets (one-hot rows, or mixup/cutmix blends), one loss per image.

    `label_smoothing` spreads that share of each target over all classes; `class_weights`
    (inverse | effective) weighs each image by its class's weight. The training counts come
    from `fit_counts` (boneage calls it with the training labels) and stay in the checkpoint.
    Subclasses change the logits the loss sees (`adjust`) or the per-class terms (`modulate`).
    """

    def __init__(self, label_smoothing: float = 0.0, class_weights: str | None = None, beta: float = 0.9999) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), not {label_smoothing}.")
        self.label_smoothing = label_smoothing
        self.weighting = class_weights
        self.beta = beta
        self.register_buffer("counts", torch.ones(0))
        self.register_buffer("class_weight", torch.ones(0))

    def fit_counts(self, counts: torch.Tensor) -> None:
        """The training images per class: the class weights and priors follow from them."""
        self.counts = counts.float()
        self.class_weight = class_weights(self.counts, self.weighting, self.beta)

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def modulate(self, log_probabilities: torch.Tensor) -> torch.Tensor:
        return log_probabilities

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        classes = logits.shape[1]
        targets = targets * (1 - self.label_smoothing) + self.label_smoothing / classes
        log_probabilities = F.log_softmax(self.adjust(logits.float()), dim=1)
        per_image = -(targets * self.modulate(log_probabilities)).sum(dim=1)
        return per_image * (targets @ self.class_weight)


class FocalLoss(ClassificationLoss):
    """Focal loss (Lin et al., ICCV 2017): each class term scaled by (1 - p)^gamma, so that
    images the model already gets right count less and the hard (often rare) ones more."""

    def __init__(self, gamma: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gamma = gamma

    def modulate(self, log_probabilities: torch.Tensor) -> torch.Tensor:
        return (1 - log_probabilities.exp()) ** self.gamma * log_probabilities


class LogitAdjustedLoss(ClassificationLoss):
    """Logit-adjusted cross-entropy (Menon et al., ICLR 2021): trained on logits + tau x log
    prior, predicted on the plain logits, which removes the prior's pull towards common
    classes. tau = 1 is the balanced softmax (Ren et al., NeurIPS 2020)."""

    def __init__(self, tau: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tau = tau

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        prior = self.counts / self.counts.sum()
        return logits + self.tau * prior.clamp_min(1e-12).log()

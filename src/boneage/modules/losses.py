"""Age losses beyond torch's pointwise ones: the mean-variance loss over an age distribution.

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

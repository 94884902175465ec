"""The losses' former home: runs trained before they moved into boneage.tasks.losses name
them `boneage.modules.losses.<Loss>` in their saved config, and still load."""

from boneage.tasks.losses import ClassificationLoss, FocalLoss, LogitAdjustedLoss, MeanVarianceLoss, class_weights

__all__ = ["ClassificationLoss", "FocalLoss", "LogitAdjustedLoss", "MeanVarianceLoss", "class_weights"]

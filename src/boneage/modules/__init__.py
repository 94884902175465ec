"""Models: timm backbones, the age regressor LightningModule, lr schedules."""

from boneage.modules.backbones import create_backbone
from boneage.modules.regressor import AgeRegressor

__all__ = ["AgeRegressor", "create_backbone"]

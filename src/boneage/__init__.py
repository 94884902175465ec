"""boneage: age regression from medical images with Hydra, Lightning and timm."""

__version__ = "0.1.0"

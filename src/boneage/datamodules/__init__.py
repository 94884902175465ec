"""Data: label tables, the demo data set, subject-level splits, transforms, loaders."""

from boneage.datamodules.image_datamodule import ImageDataModule
from boneage.datamodules.splits import SubjectSplit
from boneage.datamodules.synthetic import SyntheticHands
from boneage.datamodules.table import TableSource

__all__ = ["ImageDataModule", "SubjectSplit", "SyntheticHands", "TableSource"]

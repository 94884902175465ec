"""Data: label tables, the demo data set, subject-level splits, transforms, loaders."""

from boneage.datamodules.age_datamodule import AgeDataModule
from boneage.datamodules.splits import SubjectSplit
from boneage.datamodules.synthetic import SyntheticHands
from boneage.datamodules.table import TableSource

__all__ = ["AgeDataModule", "SubjectSplit", "SyntheticHands", "TableSource"]
